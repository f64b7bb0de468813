"""The vocabulary every kind of run speaks: events, the stage clock, and the teacher phase they all start with."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generator

from core.config import DataConfig, TrainConfig

if TYPE_CHECKING:  # annotations only: the pages read Stage without loading torch
    import pandas as pd
    import torch


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


def prepare_and_teach(model: str, dataset_key: str, dataset: Any, data: DataConfig, teacher_cfg: TrainConfig | None,
                      device: torch.device, clock: StageClock, *, allow_weak_teacher: bool = False,
                      precision: str | None = None) -> Generator[Event, None, tuple[Any, Any, TrainConfig, bool]]:
    """The first stages of every kind of run: load and tokenise the data, then fine-tune the teacher (or
    load it from the cache), yielding ``prepare`` and ``teacher`` events. ``dataset`` may be a loaded upload
    (else ``dataset_key`` is loaded); ``teacher_cfg=None`` is the model's default. Returns the task, the
    teacher (eval mode, on ``device``), the teacher's config and whether it came from the cache.

    The guard: a ``teacher_check`` event compares the teacher with the majority-class baseline on the test
    split (:func:`core.teacher.check_teacher`); a weak teacher raises :class:`core.teacher.WeakTeacherError`
    before anything is pruned, unless ``allow_weak_teacher`` (then the event's payload says ``weak: true``).
    ``precision`` (the run's setting) replaces the teacher config's own when given."""
    from core.data.task import prepare_task
    from core.teacher import TeacherResult, WeakTeacherError, check_teacher, default_train_config, train_teacher

    yield Event(Stage.PREPARE, message=f"Loading {dataset_key} and tokenising for {model}")
    task = prepare_task(model, dataset if dataset is not None else dataset_key, data)
    yield Event(Stage.PREPARE, progress=1.0, message="Data ready", payload={"task": task.describe()})
    clock.tick(Stage.PREPARE)
    teacher_cfg = teacher_cfg or default_train_config(task.model.key, task.num_labels)
    if precision is not None and teacher_cfg.precision != precision:
        teacher_cfg = dataclasses.replace(teacher_cfg, precision=precision)
    result = None
    for ev in train_teacher(task, teacher_cfg, device):
        if isinstance(ev, TeacherResult):
            result = ev
        else:
            yield Event(Stage.TEACHER, progress=ev.fraction, message=f"Fine-tuning the teacher: step {ev.step}/"
                        f"{ev.total_steps}, loss {ev.loss:.3f}", payload={"loss": ev.loss})
    assert result is not None
    check = check_teacher(result.metrics["test"], task.encoded["train"]["labels"], task.encoded["test"]["labels"],
                          task.label_names, task.data_cfg.max_length)
    message = check.message(stopped=not allow_weak_teacher)
    if check.weak and allow_weak_teacher:
        message += " Going on as asked (prune anyway): this run is flagged weak_teacher."
    yield Event(Stage.TEACHER_CHECK, progress=1.0, message=message,
                payload={**check.to_dict(), "message": message, "allowed": bool(allow_weak_teacher)})
    if check.weak and not allow_weak_teacher:
        raise WeakTeacherError(check)
    teacher = result.load().to(device).eval()
    teacher.config.teacher_key = result.path.name  # provenance: which cached teacher (saved with exported models)
    clock.tick(Stage.TEACHER)
    return task, teacher, teacher_cfg, result.cached
