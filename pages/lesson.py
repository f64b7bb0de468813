"""Lesson: a guided path through the app in ten short chapters, three of them predict-then-reveal (issue 31).

Thin: the chapters are :mod:`ui.lesson` (and its chapter modules); they read the store, the recorded pack and the
shipped reference files, and set the app's state (dataset, run, step, layers switched off) as they go."""

from __future__ import annotations

from ui import lesson, router, state, widgets

router.ensure_routed()  # a cold server's first deep link runs this file without app.py

state.init()
widgets.page_header("Lesson", "Ten short chapters on layer pruning, each beside the live view it is about. Read, "
                              "press Next, try it; in three of them, guess before the answer appears.")
lesson.draw()
