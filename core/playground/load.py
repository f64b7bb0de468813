"""What the playground opens: a finished run's compressed model beside its teacher, or a cached teacher alone.

A run's model is the folder the runner saved at its ``done`` event (:data:`core.runs.artifacts.MODEL_DIR`); its
teacher is the fine-tuned model in the teacher cache (:mod:`core.teacher`), named by the ``teacher_key`` every
pruned or merged model carries in its config (older models without it: the key is computed from the run's
configuration, as the run computed it). The task (splits, tokenizer) is rebuilt from the run's configuration, so
the test split is the one the run scored. Everything that goes wrong says why, in a :class:`PlaygroundError`.

A cached teacher is offered alone only when its splits are today's: one whose ``teacher.json`` records an older
split version is not offered, and one without that record (fine-tuned before it was kept) is opened only when its
cache key, recomputed on the rebuilt task, is still its key. A teacher that opens is checked against the
majority-class baseline (:func:`core.teacher.check_teacher`) and a weak one is flagged (:attr:`Loaded.weak_note`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from core.config import PRECISIONS, DataConfig, Resolved, TrainConfig, as_resolved, from_dict
from core.data.batches import default_device
from core.data.ref import load_dataset_ref
from core.data.splits import SPLIT_VERSION
from core.data.task import prepare_task
from core.merging.config import MergeConfig
from core.merging.ffn import load_merged
from core.models.registry import load_pretrained, original_layer_indices
from core.models.surgery import load_model, quiet_hf
from core.precision import resolve
from core.pruning.config import PruneConfig
from core.runs import artifacts
from core.runs.record import MergeSummary, PruneSummary, Run, RunStatus, summary_of
from core.runs.store import RunStore
from core.teacher import (
    TEACHER_VERSION,
    TeacherCheck,
    check_task_teacher,
    default_train_config,
    teacher_dir,
    teacher_key,
)

#: the kinds of run whose saved model the playground compares with its teacher
PLAYABLE_KINDS = ("prune", "merge")


class PlaygroundError(ValueError):
    """A run, a teacher or a text the playground cannot use; the message says why and what to do."""


@dataclass(frozen=True)
class TeacherInfo:
    """One fine-tuned teacher in the cache (``<cache>/teachers/<key>/teacher.json``)."""

    key: str
    path: Path
    model: str
    dataset: str
    data: DataConfig
    test_accuracy: float | None
    precision: Resolved
    #: the split version its ``teacher.json`` records (:data:`core.data.splits.SPLIT_VERSION` when it was fine-tuned);
    #: None for a teacher fine-tuned before it was recorded
    split_version: int | None = None

    @property
    def stale(self) -> bool:
        """Fine-tuned on splits drawn by older rules: today's test split may hold rows it trained on."""
        return self.split_version is not None and self.split_version != SPLIT_VERSION

    @property
    def label(self) -> str:
        acc = "" if self.test_accuracy is None else f", test accuracy {self.test_accuracy:.3f}"
        return f"teacher · {self.model} · {self.dataset} ({self.data.max_length} tokens{acc})"


@dataclass(frozen=True, eq=False)
class Loaded:
    """A teacher and (for a run) its compressed model, with the task they were trained on.

    ``precision`` is the resolved precision the run scored in (``fp32``/``bf16``): every prediction here runs in
    it, so the playground's numbers are the run's numbers."""

    task: Any  # core.data.task.Task
    teacher: nn.Module
    compressed: nn.Module | None
    precision: Resolved
    teacher_key: str
    run: Run | None = None
    #: a teacher opened alone: its stored test scores beside the majority-class baseline on the rebuilt task
    teacher_check: TeacherCheck | None = None

    @property
    def weak_note(self) -> str:
        """What to tell the user about a weak teacher (one the project would refuse to prune); '' otherwise."""
        check = self.teacher_check
        if check is None or not check.weak:
            return ""
        return ("Weak teacher: its predictions here say little beyond always answering "
                f"{check.majority_class!r}. {check.message(stopped=False)}")

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(self.task.label_names)

    @property
    def max_length(self) -> int:
        return int(self.task.data_cfg.max_length)

    @property
    def truncation(self) -> str:
        """How a text longer than :attr:`max_length` is cut: ``head`` or ``head+tail``."""
        return str(getattr(self.task.data_cfg, "truncation", "head"))

    @property
    def teacher_layers(self) -> list[int]:
        return original_layer_indices(self.teacher)

    @property
    def compressed_layers(self) -> list[int]:
        return original_layer_indices(self.compressed) if self.compressed is not None else []

    @property
    def removed_layers(self) -> list[int]:
        """The teacher's layers the compressed model no longer has (none for a merge: it keeps every layer)."""
        if self.compressed is None:
            return []
        kept = set(self.compressed_layers)
        return [i for i in self.teacher_layers if i not in kept]

    @property
    def compressed_name(self) -> str:
        if self.run is None:
            return ""
        return "merged model" if self.run.kind == "merge" else "pruned model"

    @property
    def title(self) -> str:
        if self.run is None:
            return f"teacher of {self.task.model.key} on {self.task.dataset_key}"
        return f"{self.run.name} ({self.run.id})"

    def stored_accuracies(self) -> dict[str, float | None]:
        """The test accuracies the run recorded: its teacher's and its final model's."""
        if self.run is None:
            return {"teacher": None, "compressed": None}
        summary = (MergeSummary if self.run.kind == "merge" else PruneSummary).of(self.run.summary)
        return {"teacher": summary.teacher_accuracy, "compressed": summary.final_accuracy}

    def of_run(self) -> tuple[Run, nn.Module]:
        """The run and its compressed model; a :class:`PlaygroundError` for a teacher opened alone."""
        if self.run is None or self.compressed is None:
            raise PlaygroundError("This needs a finished run (a teacher and its compressed model); a teacher was "
                                  "opened alone.")
        return self.run, self.compressed


# ------------------------------------------------------------------------------------------------ runs
def check_run(store: RunStore, run_id: str) -> Run:
    """The run ``run_id`` when the playground can open it; else a :class:`PlaygroundError` saying why."""
    run_id = (run_id or "").strip()
    if not run_id:
        raise PlaygroundError("No run given: pass the id of a finished pruning or merging run "
                              "(the Runs & export page lists them).")
    run = store.get_run(run_id)
    if run is None:
        raise PlaygroundError(f"No run {run_id!r} in the run store at {store.root}. The Runs & export page lists "
                              "the stored runs.")
    if run.kind not in PLAYABLE_KINDS:
        raise PlaygroundError(f"Run {run_id} is a {run.kind!r} run: the playground opens the model of a pruning or "
                              f"merging run ({', '.join(PLAYABLE_KINDS)}).")
    if not (store.run_dir(run_id) / artifacts.MODEL_CONFIG).exists():
        why = ("it is still running" if run.active else
               "only a finished run saves its model" if run.status != RunStatus.DONE else
               "its model folder is missing")
        raise PlaygroundError(f"Run {run_id} has no saved model (status: {run.status}): {why}. Pick a finished run, "
                              "or open the teacher alone.")
    return run


def playable_runs(store: RunStore) -> list[Run]:
    """The store's finished pruning and merging runs that have a saved model, newest first."""
    return [r for r in store.list_runs(status="done") if r.kind in PLAYABLE_KINDS
            and (store.run_dir(r.id) / artifacts.MODEL_CONFIG).exists()]


def _run_config(run: Run) -> Any:
    if run.kind == "merge":
        return MergeConfig.from_dict(run.config)

    return PruneConfig.from_dict(run.config)


def _load_dataset(dataset: str, store: RunStore) -> Any:
    return load_dataset_ref(dataset, store)


def _task(model: str, dataset: str, data: Any, store: RunStore) -> Any:
    return prepare_task(model, _load_dataset(dataset, store), data)


def _teacher_key_of(cfg: Any, task: Any, compressed: nn.Module) -> str:
    """The cache key of the run's teacher: recorded in the model's config, else computed as the run did
    (:func:`core.teacher_phase.prepare_and_teach`)."""
    key = getattr(compressed.config, "teacher_key", None)
    if key:
        return str(key)

    teacher_cfg = cfg.teacher or default_train_config(task.model.key, task.num_labels)
    if teacher_cfg.precision != cfg.precision:
        teacher_cfg = dataclasses.replace(teacher_cfg, precision=cfg.precision)
    return teacher_key(task, teacher_cfg)


def _load_teacher(key: str, what: str) -> nn.Module:
    folder = teacher_dir(key)
    if not (folder / "teacher.json").exists():
        raise PlaygroundError(f"The teacher of {what} (key {key}) is not in the teacher cache ({folder.parent}): it "
                              "was trained on another machine or the cache was cleared. Start a run with the same "
                              "model, dataset and budgets (or `python -m core teach`) to train it again.")
    with quiet_hf():
        return load_pretrained(folder).eval()


def _check_run_splits(run_id: str, key: str, task: Any) -> None:
    """A :class:`PlaygroundError` when the run's teacher was fine-tuned on other splits than today's ``task`` (its
    ``teacher.json`` records another task fingerprint, which hashes the split version): the run pruned and tuned on
    those splits too, so today's test rows may hold rows both models trained on. A teacher without the record is
    let through (:func:`_load_teacher` says when it is missing)."""
    try:
        meta = json.loads((teacher_dir(key) / "teacher.json").read_text())
    except (OSError, ValueError):
        return
    recorded = (meta.get("task") or {}).get("fingerprint") if isinstance(meta, dict) else None
    if recorded and recorded != task.fingerprint:
        version = meta.get("split_version")
        splits = f"splits of version {version} (today's are version {SPLIT_VERSION})" if version is not None and \
            int(version) != SPLIT_VERSION else "a different split of the data (older split rules or a changed file)"
        raise PlaygroundError(f"Run {run_id} cannot be opened: it and its teacher were trained on {splits}, so "
                              "today's test rows may include rows they trained on. Start the run again with the same "
                              "settings to compare on today's splits.")


def _device() -> Any:
    return default_device()


def load_run(store: RunStore, run_id: str) -> Loaded:
    """A finished run's compressed model, its teacher and the task they were trained on (a few seconds for
    e5-small: the splits are rebuilt and tokenised, two models loaded)."""
    run = check_run(store, run_id)
    cfg = _run_config(run)
    task = _task(cfg.model, cfg.dataset, cfg.data, store)
    folder = store.run_dir(run.id) / artifacts.MODEL_DIR
    if run.kind == "merge":
        compressed = load_merged(folder).eval()
    else:
        compressed = load_model(folder).eval()
    key = _teacher_key_of(cfg, task, compressed)
    _check_run_splits(run.id, key, task)
    teacher = _load_teacher(key, f"run {run.id}")
    device = _device()
    # a page's preview is an entry: the precision the run recorded (resolved; re-resolved for this device), else
    # the run's setting
    recorded = summary_of(run.kind, run.summary).precision
    precision = resolve(recorded or cfg.precision, device, task.model.hidden_size)
    return Loaded(task=task, teacher=teacher.to(device), compressed=compressed.to(device), precision=precision,
                  teacher_key=key, run=run)


# ------------------------------------------------------------------------------------------------ teachers
def _read_teachers() -> list[TeacherInfo]:
    """Every readable teacher in the cache, stale or not, newest first."""
    root = teacher_dir("x").parent
    found = []
    for meta in sorted(root.glob("*/teacher.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            info = json.loads(meta.read_text())
            task = info["task"]
            split_version = info.get("split_version")
            found.append(TeacherInfo(key=meta.parent.name, path=meta.parent, model=str(task["model"]),
                                     dataset=str(task["dataset"]), data=from_dict(DataConfig, task.get("data") or {}),
                                     test_accuracy=(info.get("metrics") or {}).get("test", {}).get("accuracy"),
                                     precision=as_resolved(info.get("precision") or "fp32"),
                                     split_version=None if split_version is None else int(split_version)))
        except (OSError, ValueError, KeyError, TypeError):  # a foreign or unreadable folder: not offered
            continue
    return found


def teachers_offered() -> tuple[list[TeacherInfo], list[TeacherInfo]]:
    """The cache read once: the teachers the playground offers (:func:`cached_teachers`) and those it leaves out
    (:func:`stale_teachers`), each newest first."""
    found = _read_teachers()
    return [t for t in found if not t.stale], [t for t in found if t.stale]


def cached_teachers() -> list[TeacherInfo]:
    """The fine-tuned teachers in the cache the playground offers, newest first: not those whose ``teacher.json``
    records an older split version (:func:`stale_teachers`); one without the record is checked when it is opened
    (:func:`load_teacher`)."""
    return teachers_offered()[0]


def stale_teachers() -> list[TeacherInfo]:
    """The cached teachers left out of :func:`cached_teachers`: fine-tuned on splits of an older split version."""
    return teachers_offered()[1]


def stale_note(stale: list[TeacherInfo]) -> str:
    """One line on the teachers not offered ('' when none)."""
    if not stale:
        return ""
    versions = ", ".join(str(v) for v in sorted({t.split_version for t in stale if t.split_version is not None}))
    return (f"{len(stale)} cached teacher{'s are' if len(stale) > 1 else ' is'} not offered: fine-tuned on splits of "
            f"an older version ({versions}; today's splits are version {SPLIT_VERSION}), so today's test rows may "
            f"include rows {'they' if len(stale) > 1 else 'it'} trained on. Start a run (or `python -m core teach`) "
            "to fine-tune a current one.")


def _stale_error(info: TeacherInfo, why: str) -> PlaygroundError:
    return PlaygroundError(f"The teacher {info.key} ({info.model} on {info.dataset}) cannot be opened: {why}. Start "
                           f"a run with this model and dataset (or `python -m core teach --model {info.model} "
                           f"--dataset {info.dataset}`) to fine-tune a current one.")


_OTHER_SPLIT = ("it was fine-tuned on a different split of the data (older split rules or a changed dataset file), "
                "so today's test rows may include rows it trained on, and the test accuracy it recorded is not what "
                "it scores on today's test split")


def _key_mismatch(info: TeacherInfo, meta: dict[str, Any], task: Any) -> PlaygroundError:
    """Why the key recomputed on today's task differs from the teacher's, as an error."""
    version = meta.get("version")
    if version is not None and version != TEACHER_VERSION:
        return _stale_error(info, f"it was fine-tuned by older training code (teacher version {version}; today's is "
                                  f"{TEACHER_VERSION}), so it is not the teacher a run would use today")
    if (meta.get("task") or {}).get("fingerprint") == task.fingerprint:  # same data: the settings hash differently
        return _stale_error(info, "its cache key no longer matches its recorded training settings, so it is not the "
                                  "teacher a run would use today")
    return _stale_error(info, _OTHER_SPLIT)


def _recorded_train(meta: dict[str, Any], precision: Resolved) -> TrainConfig:
    """The teacher's training config with the precision it resolved to when it was fine-tuned: its key hashes that
    (``auto`` resolves differently on another machine)."""
    cfg = from_dict(TrainConfig, meta.get("train") or {})
    return dataclasses.replace(cfg, precision=precision) if precision in PRECISIONS else cfg


def _check(task: Any, meta: dict[str, Any]) -> TeacherCheck | None:
    """The teacher's stored test scores beside the majority-class baseline on ``task`` (None without them)."""
    test = (meta.get("metrics") or {}).get("test") or {}
    if "accuracy" not in test or "macro_f1" not in test:
        return None
    return check_task_teacher(task, test, meta.get("seconds"))


def load_teacher(key: str, store: RunStore) -> Loaded:
    """A cached teacher alone (no compressed model), with the task it was fine-tuned on; a
    :class:`PlaygroundError` for a teacher of other splits, and :attr:`Loaded.teacher_check` says whether it beats
    the majority class."""
    key = (key or "").strip()
    info = next((t for t in _read_teachers() if t.key == key), None)
    if info is None:
        raise PlaygroundError(f"No teacher {key!r} in the teacher cache ({teacher_dir('x').parent}). Start a run "
                              "(or `python -m core teach`) to fine-tune one.")
    if info.stale:
        raise _stale_error(info, f"its splits are version {info.split_version} and today's are version "
                                 f"{SPLIT_VERSION}: {_OTHER_SPLIT}")
    meta = json.loads((info.path / "teacher.json").read_text())
    task = _task(info.model, info.dataset, info.data, store)
    if teacher_key(task, _recorded_train(meta, info.precision)) != key:
        raise _key_mismatch(info, meta, task)
    teacher = _load_teacher(key, f"{info.model} on {info.dataset}")
    return Loaded(task=task, teacher=teacher.to(_device()), compressed=None, precision=info.precision,
                  teacher_key=key, run=None, teacher_check=_check(task, meta))
