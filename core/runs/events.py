"""The vocabulary every kind of run speaks: the stages, events and the stage clock (records only: the teacher
phase every run starts with is :mod:`core.teacher_phase`)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from core.jsontypes import JSONObject

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


def _gap(value: Any) -> bool:
    """None, or NaN (a gap in a table column)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class StoredEvent:
    """One row of a run's event log as the store hands it back (:meth:`core.runs.store.RunStore.events`): the run,
    its sequence number, when it was recorded, the stage (a plain string: a stage of an older run may be one this
    code does not know, :func:`stage_label`), step, progress, message and the JSON payload the event carried."""

    run_id: str
    seq: int
    ts: float
    stage: str
    step: int | None = None
    progress: float | None = None
    message: str = ""
    payload: JSONObject = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StoredEvent:
        """A row of the ``events`` table (the store's, or the recorded pack's): the payload as JSON text, a dict,
        or empty."""
        step: Any = row.get("step")
        progress: Any = row.get("progress")
        payload: Any = row.get("payload")
        if isinstance(payload, (str, bytes)):
            payload = json.loads(payload) if payload else {}
        return cls(run_id=str(row["run_id"]), seq=int(row["seq"]), ts=float(row["ts"]), stage=str(row["stage"]),
                   step=None if _gap(step) else int(step), progress=None if _gap(progress) else float(progress),
                   message=str(row.get("message") or ""), payload=dict(payload) if isinstance(payload, dict) else {})

    def to_dict(self) -> JSONObject:
        """The event as a JSON object (the table's columns, the payload parsed)."""
        return {"run_id": self.run_id, "seq": self.seq, "ts": self.ts, "stage": self.stage, "step": self.step,
                "progress": self.progress, "message": self.message, "payload": dict(self.payload)}
