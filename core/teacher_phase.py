"""The teacher phase every kind of run starts with (pruning, merging, a study's tree): load and tokenise the data,
fine-tune the teacher or load it from the cache, check it against the majority-class baseline, as
:class:`core.runs.events.Event` objects. It sits above the records (:mod:`core.runs`) and below the kinds of
work that call it (:mod:`core.pruning`, :mod:`core.merging`); the job layer (:mod:`core.jobs`) runs those."""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from core.config import DataConfig, TrainConfig
from core.data.ref import DatasetRef, load_dataset_ref
from core.data.task import prepare_task
from core.models.registry import config_of
from core.runs.events import Event, Stage, StageClock
from core.teacher import TeacherResult, WeakTeacherError, check_task_teacher, default_train_config, train_teacher

if TYPE_CHECKING:
    import torch

    from core.data.registry import LoadedDataset
    from core.data.upload_store import StoreLike


def stored_dataset(store: StoreLike, dataset: str) -> LoadedDataset | None:
    """What a run passes as ``dataset`` to :func:`prepare_and_teach`: an uploaded dataset (``upload:<id>``) read
    from the run store ``store``; ``None`` for a key or hub id (the teacher phase loads those itself)."""
    ref = DatasetRef.parse(dataset)
    return load_dataset_ref(ref, store) if ref.is_upload else None


@dataclasses.dataclass(frozen=True)
class TeacherSpec:
    """What the teacher phase prepares and fine-tunes: ``model`` on ``dataset_key`` with ``data``. ``dataset`` is
    a loaded upload (:func:`stored_dataset`; ``None``: ``dataset_key`` is loaded); ``teacher_cfg=None`` is the
    model's default recipe; ``precision`` (the run's setting) replaces the teacher config's own when given;
    ``allow_weak_teacher`` goes on past a weak teacher ("prune anyway")."""

    model: str
    dataset_key: str
    dataset: Any
    data: DataConfig
    teacher_cfg: TrainConfig | None = None
    allow_weak_teacher: bool = False
    precision: str | None = None


def prepare_and_teach(spec: TeacherSpec, device: torch.device, clock: StageClock
                      ) -> Generator[Event, None, tuple[Any, Any, TrainConfig, bool]]:
    """The first stages of every kind of run: load and tokenise the data, then fine-tune the teacher (or
    load it from the cache), yielding ``prepare`` and ``teacher`` events (:class:`TeacherSpec`). Returns the task,
    the teacher (eval mode, on ``device``), the teacher's config and whether it came from the cache.

    The guard: a ``teacher_check`` event compares the teacher with the majority-class baseline on the test
    split (:func:`core.teacher.check_teacher`); a weak teacher raises :class:`core.teacher.WeakTeacherError`
    before anything is pruned, unless ``spec.allow_weak_teacher`` (then the event's payload says ``weak: true``)."""
    model, dataset_key, dataset, data = spec.model, spec.dataset_key, spec.dataset, spec.data
    teacher_cfg, precision, allow_weak_teacher = spec.teacher_cfg, spec.precision, spec.allow_weak_teacher
    yield Event(Stage.PREPARE, message=f"Loading {dataset_key} and tokenising for {model}")
    task = prepare_task(model, dataset if dataset is not None else dataset_key, data)
    yield Event(Stage.PREPARE, progress=1.0, message="Data ready" + (f": {task.length.line()}" if task.length else ""),
                payload={"task": task.describe()})
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
    check = check_task_teacher(task, result.metrics["test"], result.seconds)
    message = check.message(stopped=not allow_weak_teacher)
    if check.weak and allow_weak_teacher:
        message += " Going on as asked (prune anyway): this run is flagged weak_teacher."
    yield Event(Stage.TEACHER_CHECK, progress=1.0, message=message,
                payload={**check.to_dict(), "message": message, "allowed": bool(allow_weak_teacher)})
    if check.weak and not allow_weak_teacher:
        raise WeakTeacherError(check)
    teacher = result.load().to(device).eval()
    config_of(teacher).teacher_key = result.path.name  # provenance: which cached teacher (saved with exported models)
    clock.tick(Stage.TEACHER)
    return task, teacher, teacher_cfg, result.cached
