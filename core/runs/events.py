"""The vocabulary every kind of run speaks: events, the stage clock, and the teacher phase they all start with."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Generator

import pandas as pd
import torch

from core.config import DataConfig, TrainConfig

@dataclass(frozen=True)
class Event:
    """One thing that happened. ``stage`` is one of: prepare, teacher, signals, oracle, choice, finetune,
    evaluate, step_done, distill, done. ``payload`` holds JSON-ready data; ``tables`` holds DataFrames the
    recorder stores as artifacts; ``model`` carries a model to export (final stage only)."""

    stage: str
    step: int | None = None
    progress: float | None = None
    message: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)


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
                      device: torch.device, clock: StageClock) -> Generator[Event, None, tuple[Any, Any, TrainConfig, bool]]:
    """The first stages of every kind of run: load and tokenise the data, then fine-tune the teacher (or
    load it from the cache), yielding ``prepare`` and ``teacher`` events. ``dataset`` may be a loaded upload
    (else ``dataset_key`` is loaded); ``teacher_cfg=None`` is the model's default. Returns the task, the
    teacher (eval mode, on ``device``), the teacher's config and whether it came from the cache."""
    from core.data.task import prepare_task
    from core.teacher import TeacherResult, default_train_config, train_teacher

    yield Event("prepare", message=f"Loading {dataset_key} and tokenising for {model}")
    task = prepare_task(model, dataset if dataset is not None else dataset_key, data)
    yield Event("prepare", progress=1.0, message="Data ready", payload={"task": task.describe()})
    clock.tick("prepare")
    teacher_cfg = teacher_cfg or default_train_config(task.model.key, task.num_labels)
    result = None
    for ev in train_teacher(task, teacher_cfg, device):
        if isinstance(ev, TeacherResult):
            result = ev
        else:
            yield Event("teacher", progress=ev.fraction, message=f"Fine-tuning the teacher: step {ev.step}/"
                        f"{ev.total_steps}, loss {ev.loss:.3f}", payload={"loss": ev.loss})
    assert result is not None
    teacher = result.load().to(device).eval()
    clock.tick("teacher")
    return task, teacher, teacher_cfg, result.cached
