"""The playground: one text through a finished run's teacher and compressed model, layers switched off by hand,
the prediction read layer by layer, and what the compressed model gets wrong on the run's test split.

- :mod:`core.playground.load`: open a run (or a cached teacher alone: only one of today's splits, flagged when
  weak), with clear errors for what cannot open
- :mod:`core.playground.predict`: predictions on one text, layers skipped in the forward pass, the layer-by-layer
  reading ("our definition") and each layer's change on the text (per-example Block Influence)
- :mod:`core.playground.errors`: confusion matrices, per-class accuracy with intervals, flipped examples and
  accuracy by text length, computed once per run and kept in the run's folder
"""

from core.playground.errors import ErrorAnalysis, cached_error_analysis, error_analysis
from core.playground.load import (
    PLAYABLE_KINDS,
    Loaded,
    PlaygroundError,
    TeacherInfo,
    cached_teachers,
    check_run,
    load_run,
    load_teacher,
    playable_runs,
    stale_note,
    stale_teachers,
    teachers_offered,
)
from core.playground.predict import (
    CHANGE_DEFINITION,
    LENS_DEFINITION,
    Comparison,
    LayerTrace,
    Prediction,
    compare,
    skip_logits,
    trace,
)

__all__ = ["CHANGE_DEFINITION", "LENS_DEFINITION", "PLAYABLE_KINDS", "Comparison", "ErrorAnalysis", "LayerTrace",
           "Loaded", "PlaygroundError", "Prediction", "TeacherInfo", "cached_error_analysis", "cached_teachers",
           "check_run", "compare", "error_analysis", "load_run", "load_teacher", "playable_runs", "skip_logits",
           "stale_note", "stale_teachers", "teachers_offered", "trace"]
