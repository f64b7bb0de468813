"""What the playground opens: a finished run's compressed model beside its teacher, or a cached teacher alone.

A run's model is the folder the runner saved at its ``done`` event (:data:`core.runs.artifacts.MODEL_DIR`); its
teacher is the fine-tuned model in the teacher cache (:mod:`core.teacher`), named by the ``teacher_key`` every
pruned or merged model carries in its config (older models without it: the key is computed from the run's
configuration, as the run computed it). The task (splits, tokenizer) is rebuilt from the run's configuration, so
the test split is the one the run scored. Everything that goes wrong says why, in a :class:`PlaygroundError`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from core.config import DataConfig, Resolved, as_resolved, from_dict
from core.data.batches import default_device
from core.data.ref import load_dataset_ref
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
from core.teacher import default_train_config, teacher_dir, teacher_key

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
    teacher = _load_teacher(key, f"run {run.id}")
    device = _device()
    # a page's preview is an entry: the precision the run recorded (resolved; re-resolved for this device), else
    # the run's setting
    recorded = summary_of(run.kind, run.summary).precision
    precision = resolve(recorded or cfg.precision, device, task.model.hidden_size)
    return Loaded(task=task, teacher=teacher.to(device), compressed=compressed.to(device), precision=precision,
                  teacher_key=key, run=run)


# ------------------------------------------------------------------------------------------------ teachers
def cached_teachers() -> list[TeacherInfo]:
    """Every fine-tuned teacher in the cache, newest first."""
    root = teacher_dir("x").parent
    found = []
    for meta in sorted(root.glob("*/teacher.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            info = json.loads(meta.read_text())
            task = info["task"]
            found.append(TeacherInfo(key=meta.parent.name, path=meta.parent, model=str(task["model"]),
                                     dataset=str(task["dataset"]), data=from_dict(DataConfig, task.get("data") or {}),
                                     test_accuracy=(info.get("metrics") or {}).get("test", {}).get("accuracy"),
                                     precision=as_resolved(info.get("precision") or "fp32")))
        except (OSError, ValueError, KeyError, TypeError):  # a foreign or unreadable folder: not offered
            continue
    return found


def load_teacher(key: str, store: RunStore) -> Loaded:
    """A cached teacher alone (no compressed model), with the task it was fine-tuned on."""
    key = (key or "").strip()
    info = next((t for t in cached_teachers() if t.key == key), None)
    if info is None:
        raise PlaygroundError(f"No teacher {key!r} in the teacher cache ({teacher_dir('x').parent}). Start a run "
                              "(or `python -m core teach`) to fine-tune one.")
    task = _task(info.model, info.dataset, info.data, store)
    teacher = _load_teacher(key, f"{info.model} on {info.dataset}")
    return Loaded(task=task, teacher=teacher.to(_device()), compressed=None, precision=info.precision,
                  teacher_key=key, run=None)
