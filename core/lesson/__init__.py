"""The guided lesson's UI-free half (issue 31): which recorded runs it stands on, the shipped readings of preset
sentences for its first chapter, the reference figures it quotes, and the scoring of the learner's guesses.

- :mod:`core.lesson.course`: the lesson's model, dataset and runs, from whatever the store and the pack hold
- :mod:`core.lesson.readings`: precomputed layer-by-layer readings of preset sentences (``data/readings``)
- :mod:`core.lesson.reference`: the figures of ``data/reference`` it quotes (reliability, one-step check, KD)
- :mod:`core.lesson.guesses`: predict, then reveal: each guess scored against the measurements
"""
