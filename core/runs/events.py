"""The vocabulary every kind of run speaks: the stages, events and the stage clock (records only: the teacher
phase every run starts with is :mod:`core.teacher_phase`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: the pages read Stage without loading pandas
    import pandas as pd


class Stage(StrEnum):
    """Every stage a run passes through, the one vocabulary of events, the store and the pages. A member
    equals its string (``Stage.DONE == "done"``), so events read back from the store compare as before."""

    # every run starts with these
    PREPARE = "prepare"
    TEACHER = "teacher"
    TEACHER_CHECK = "teacher_check"
    # pruning, one layer per step
    SIGNALS = "signals"
    ORACLE = "oracle"
    CHOICE = "choice"  # pruning: the layer to remove; merging: the window to merge
    FINETUNE = "finetune"
    EVALUATE = "evaluate"
    STEP_DONE = "step_done"
    DISTILL = "distill"
    # merging
    SIMILARITY = "similarity"
    SELECT = "select"
    ALIGN = "align"
    MERGE = "merge"
    COMPARE = "compare"
    # how a run ends
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"
    WEAK_TEACHER = "weak_teacher"
    INTERRUPTED = "interrupted"

    @property
    def label(self) -> str:
        """What a person reads for this stage (the pages' progress bars)."""
        return STAGE_LABELS[self]


STAGE_LABELS: dict[Stage, str] = {
    Stage.PREPARE: "Preparing data", Stage.TEACHER: "Fine-tuning the teacher",
    Stage.TEACHER_CHECK: "Checking the teacher against the majority-class baseline", Stage.SIGNALS: "Computing signals",
    Stage.ORACLE: "Measuring the oracle", Stage.CHOICE: "Choosing what to compress", Stage.FINETUNE: "Fine-tuning",
    Stage.EVALUATE: "Evaluating", Stage.STEP_DONE: "Step finished", Stage.DISTILL: "Distilling",
    Stage.SIMILARITY: "Measuring FFN similarity", Stage.SELECT: "Scoring candidate windows",
    Stage.ALIGN: "Aligning neurons", Stage.MERGE: "Merging", Stage.COMPARE: "Pruning side (same budget)",
    Stage.DONE: "Finished", Stage.CANCELLED: "Cancelled", Stage.FAILED: "Failed",
    Stage.WEAK_TEACHER: "Stopped: weak teacher", Stage.INTERRUPTED: "Interrupted",
}


def stage_label(stage: str) -> str:
    """The label of a stage as stored (a plain string); a stage this code does not know shows as itself."""
    try:
        return Stage(stage).label
    except ValueError:
        return str(stage)


@dataclass(frozen=True)
class Event:
    """One thing that happened in a run, at ``stage`` (a :class:`Stage`; its string is accepted and
    converted). ``payload`` holds JSON-ready data; ``tables`` holds DataFrames the recorder stores as
    artifacts (:mod:`core.runs.artifacts` names the files); ``artifacts`` carries a model to export (final
    stage only)."""

    stage: Stage
    step: int | None = None
    progress: float | None = None
    message: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "stage", Stage(self.stage))
        except ValueError:
            raise ValueError(f"Event.stage must be one of {[s.value for s in Stage]}, got {self.stage!r}") from None


class StageClock:
    """Seconds spent per stage of a run (a stage may be entered several times); ``summary`` adds the total."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def tick(self, stage: str) -> None:
        """Charge the time since the last tick to ``stage``."""
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self.last
        self.last = now

    def summary(self) -> dict[str, float]:
        return {**{k: round(v, 2) for k, v in self.seconds.items()},
                "total": round(time.perf_counter() - self.start, 2)}
