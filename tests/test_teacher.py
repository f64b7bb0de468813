"""The teacher: fine-tuned once, cached on disk and deterministic; its default epochs per task."""

from __future__ import annotations

import torch

from core.config import DataConfig
from core.data.task import prepare_task
from core.teacher import ensure_teacher

SMALL = DataConfig(train_cap=150, val_cap=45, test_cap=45)


def test_teacher_is_cached_and_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNE_CACHE_DIR", str(tmp_path / "cache"))
    task = prepare_task("tiny-bert", "keywords", SMALL)
    first = ensure_teacher(task)
    assert not first.cached and first.metrics["test"]["accuracy"] >= 0.9
    second = ensure_teacher(task)
    assert second.cached  # read from disk, not trained (timings belong in benchmarks, not tests)
    assert second.metrics == first.metrics and second.path == first.path
    a, b = first.load(), second.load()
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_teacher_defaults_give_many_class_tasks_more_epochs():
    from core.teacher import MANY_CLASSES_EPOCHS, default_train_config

    assert default_train_config("e5-small", 6).epochs == 3.0
    assert default_train_config("e5-small").epochs == 3.0
    assert default_train_config("minilm-l6", 20).epochs == MANY_CLASSES_EPOCHS
    assert default_train_config("tiny-bert", 20) == default_train_config("tiny-bert")  # its own measured default
