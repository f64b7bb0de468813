"""Teacher fine-tuning: the unpruned model fine-tuned once per (model, dataset, data config, train config).

The result is cached on disk under a key that hashes everything that determines it, so the second request
is instant, and it is written atomically (temporary folder, then rename) so a killed run never leaves a
half-written teacher that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from core.config import TrainConfig, from_dict, to_dict
from core.data.batches import default_device
from core.models.registry import load_classifier, load_pretrained
from core.paths import cache_dir
from core.data.task import Task
from core.train import TrainProgress, evaluate, fine_tune

#: bump when training code changes in a way that changes results (invalidates cached teachers)
TEACHER_VERSION = 1

#: default hyperparameters per model; chosen by measurement (see README: "Teacher defaults")
DEFAULT_TRAIN = {
    "tiny-bert": TrainConfig(epochs=15, lr=3e-3, batch_size=16, freeze_word_embeddings=False,
                             head_lr_multiplier=1.0),
}
#: tasks with more classes than this get :data:`MANY_CLASSES_EPOCHS` teacher epochs: with 2,000 rows,
#: 20 Newsgroups has 100 per class and 3 epochs underfit (e5-small test accuracy 0.614, validation 0.664;
#: 6 epochs: 0.694 and 0.758), while the 2-6 class sets are done after 3
MANY_CLASSES = 10
MANY_CLASSES_EPOCHS = 6.0


def default_train_config(model_key: str, num_labels: int | None = None) -> TrainConfig:
    """The teacher's default fine-tuning for ``model_key`` (and a task with ``num_labels`` classes)."""
    cfg = DEFAULT_TRAIN.get(model_key, TrainConfig())
    if num_labels is not None and num_labels > MANY_CLASSES and model_key not in DEFAULT_TRAIN:
        cfg = replace(cfg, epochs=max(cfg.epochs, MANY_CLASSES_EPOCHS))
    return cfg


@dataclass(frozen=True)
class TeacherResult:
    path: Path
    key: str
    metrics: dict[str, Any]
    train_cfg: TrainConfig
    seconds: float
    cached: bool

    def load(self) -> torch.nn.Module:
        return load_pretrained(self.path)


def teacher_key(task: Task, train_cfg: TrainConfig) -> str:
    payload = json.dumps({"task": task.fingerprint, "train": to_dict(train_cfg), "v": TEACHER_VERSION},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def teacher_dir(key: str) -> Path:
    return cache_dir() / "teachers" / key


def cached_teacher(task: Task, train_cfg: TrainConfig) -> TeacherResult | None:
    key = teacher_key(task, train_cfg)
    folder = teacher_dir(key)
    meta = folder / "teacher.json"
    if not meta.exists():
        return None
    info = json.loads(meta.read_text())
    return TeacherResult(path=folder, key=key, metrics=info["metrics"],
                         train_cfg=from_dict(TrainConfig, info["train"]), seconds=info["seconds"], cached=True)


def train_teacher(task: Task, train_cfg: TrainConfig | None = None, device: torch.device | None = None
                  ) -> Iterator[TrainProgress | TeacherResult]:
    """Fine-tune (or reuse) the teacher. Yields training progress, then the :class:`TeacherResult` last.

    Stopping the iteration early (or ``close()``) abandons the run; nothing is written.
    """
    train_cfg = train_cfg or default_train_config(task.model.key, task.num_labels)
    hit = cached_teacher(task, train_cfg)
    if hit is not None:
        yield hit
        return
    device = device or default_device()
    start = time.perf_counter()
    model = load_classifier(task.model, task.num_labels, dict(enumerate(task.label_names)), seed=train_cfg.seed)
    yield from fine_tune(model, task.encoded["train"], train_cfg, device=device)
    metrics = {split: evaluate(model, task.encoded[split], device=device) for split in ("val", "test")}
    seconds = time.perf_counter() - start
    key = teacher_key(task, train_cfg)
    final = teacher_dir(key)
    tmp = final.with_name(f"{final.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.to("cpu").save_pretrained(tmp, safe_serialization=True)
    task.tokenizer.save_pretrained(tmp)
    info = {"metrics": metrics, "train": to_dict(train_cfg), "task": task.describe(), "seconds": seconds,
            "key": key, "version": TEACHER_VERSION}
    (tmp / "teacher.json").write_text(json.dumps(info, indent=2))
    if final.exists():  # another process won the race: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(final)
    yield TeacherResult(path=final, key=key, metrics=metrics, train_cfg=train_cfg, seconds=seconds, cached=False)


def ensure_teacher(task: Task, train_cfg: TrainConfig | None = None,
                   on_progress: Callable[[TrainProgress], None] | None = None,
                   device: torch.device | None = None) -> TeacherResult:
    """Run :func:`train_teacher` to the end, reporting progress through ``on_progress``."""
    result = None
    for event in train_teacher(task, train_cfg, device):
        if isinstance(event, TeacherResult):
            result = event
        elif on_progress is not None:
            on_progress(event)
    assert result is not None
    return result
