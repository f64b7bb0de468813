"""The tiny model trains the same way everywhere (issue 28): under ``auto`` it is fp32 on any CPU (too narrow for
bf16 to pay), and its teacher for the Home page's instant demo reaches the same guard verdict at one and at two
threads (a bf16 teacher of it once learned at one thread and collapsed to the majority class at two)."""

from __future__ import annotations

import torch

from core.config import DataConfig
from core.data.task import prepare_task
from core.precision import resolve
from core.teacher import check_teacher, default_train_config, ensure_teacher
from ui.state import TINY_DEMO


def _demo_teacher(threads: int) -> tuple[float, bool]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        data = DataConfig(train_cap=TINY_DEMO["train_cap"], val_cap=TINY_DEMO["val_cap"],
                          test_cap=TINY_DEMO["test_cap"], max_length=TINY_DEMO["max_length"])
        task = prepare_task(TINY_DEMO["model"], TINY_DEMO["dataset"], data)
        cfg = default_train_config(task.model.key, task.num_labels)
        assert cfg.precision == "auto" and resolve(cfg.precision, "cpu", task.model.hidden_size) == "fp32"
        result = ensure_teacher(task, cfg)
        check = check_teacher(result.metrics["test"], task.encoded["train"]["labels"],
                              task.encoded["test"]["labels"], task.label_names, task.max_length)
        return check.accuracy, check.weak
    finally:
        torch.set_num_threads(before)


def test_the_demo_teacher_reaches_one_verdict_at_one_and_two_threads(tmp_path, monkeypatch):
    """(That the tiny model's ``auto`` is fp32 with and without bf16 units: tests/test_precision.py.)"""
    verdicts = {}
    for threads in (1, 2):
        monkeypatch.setenv("PRUNE_CACHE_DIR", str(tmp_path / f"cache-{threads}"))  # a fresh teacher each time
        verdicts[threads] = _demo_teacher(threads)
    (acc1, weak1), (acc2, weak2) = verdicts[1], verdicts[2]
    assert not weak1 and not weak2, verdicts  # both beat the majority class beyond the noise
    assert abs(acc1 - acc2) <= 2 / TINY_DEMO["test_cap"], verdicts  # at most two test rows apart
