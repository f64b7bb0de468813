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


def test_skewed_subsample_sizes_and_errors():
    import pandas as pd
    import pytest

    from core.cli.bench_teacher import feasible_rows, skewed_subsample

    frame = pd.DataFrame({"text": [f"t{i}" for i in range(300)], "label": [0] * 150 + [1] * 100 + [2] * 50,
                          "split": ["train"] * 300})
    out = skewed_subsample(frame, 200, 0.65, seed=0)
    counts = out["label"].value_counts()
    assert len(out) == 200 and "split" not in out.columns and out["text"].is_unique
    assert abs(counts[0] - 0.65 * 200) <= 1 and abs(counts[1] - counts[2]) <= 1
    assert skewed_subsample(frame, 200, 0.65, seed=0).equals(out)  # seeded
    assert skewed_subsample(frame, 200, 0.5, seed=0)["label"].value_counts()[2] == 50  # the rest goes to class 1
    for majority in (1 / 3, 0.2, 1.0, 1.5):
        with pytest.raises(ValueError, match=f"got {majority}"):
            skewed_subsample(frame, 200, majority, seed=0)
    with pytest.raises(ValueError, match="got 301"):
        skewed_subsample(frame, 301, 0.65, seed=0)
    with pytest.raises(ValueError, match="largest class has only 150 rows"):
        skewed_subsample(frame, 250, 0.65, seed=0)
    assert feasible_rows(frame, 250, 0.65) == 231 and len(skewed_subsample(frame, 231, 0.65, seed=0)) == 231


def test_bench_teacher_end_to_end(tmp_path, monkeypatch, capsys):
    import json

    import pytest

    from core.cli import main as cli
    from core.cli.bench_teacher import main

    monkeypatch.setenv("PRUNE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "bench.json"
    assert main(["--model", "tiny-bert", "--datasets", "keywords", "--rows", "120", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["recipe"] for r in rows] == ["old", "default"]
    for r in rows:
        assert r["dataset"] == "keywords:skewed" and r["model"] == "tiny-bert"
        assert r["train_rows"] + r["val_rows"] + r["test_rows"] == 120 and r["steps"] > 0
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["macro_f1"] <= 1 and r["guard"] in ("passes", "weak")
        assert r["baseline_accuracy"] == pytest.approx(0.65, abs=0.1) and r["seconds"] >= 0
    text = capsys.readouterr().out
    assert "tiny-bert: 120 rows" in text and "1 seed" in text and text.count("keywords:skewed") == 2
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "teacher", "--help"])
    assert exit_info.value.code == 0 and "--majority" in capsys.readouterr().out
