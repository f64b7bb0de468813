"""Per-example outcomes (issue 21): every evaluation of a pruning run keeps, per example, the label, the
prediction, the loss and the KL to the teacher; the files round-trip through the store and their means equal the
aggregate scores the run reports."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score

from core.config import DataConfig
from core.pruning.config import PruneConfig
from core.pruning.loop import prune_events
from core.runs import artifacts
from core.runs.store import RunStore
from core.train import PER_EXAMPLE_COLUMNS, DistillConfig, per_example, scores_from_logits


def test_per_example_matches_the_aggregate_scores():
    gen = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(503, 5, generator=gen) * 2, torch.randint(0, 5, (503,), generator=gen)
    teacher = logits + 0.3 * torch.randn(503, 5, generator=gen)
    f = per_example(logits, labels, teacher)
    scores = scores_from_logits(logits, labels)
    assert tuple(f.columns) == PER_EXAMPLE_COLUMNS and len(f) == 503
    assert [str(t) for t in f.dtypes] == ["int32", "int16", "int16", "float32", "float32"]
    assert f["example"].tolist() == list(range(503))
    assert (f["pred"] == f["label"]).mean() == scores["accuracy"]
    assert f1_score(f["label"], f["pred"], average="macro", zero_division=0) == scores["macro_f1"]
    assert f["loss"].mean() == pytest.approx(scores["loss"], rel=1e-6)
    # KL(teacher || model) by hand
    p = torch.softmax(teacher, -1)
    kl = (p * (torch.log_softmax(teacher, -1) - torch.log_softmax(logits, -1))).sum(-1)
    np.testing.assert_allclose(f["kl_to_teacher"], kl.numpy(), rtol=1e-4, atol=1e-6)
    assert per_example(logits, labels, logits)["kl_to_teacher"].abs().max() < 1e-6
    assert per_example(logits, labels)["kl_to_teacher"].isna().all()
    with pytest.raises(ValueError, match="teacher logits"):
        per_example(logits, labels, teacher[:, :3])
    with pytest.raises(ValueError, match="rows of logits"):
        per_example(logits[:10], labels)


def test_outcome_names_and_store_round_trip(tmp_path):
    assert artifacts.step_outcomes(3, artifacts.TEST_OUTCOMES) == "steps/3/outcomes/test.parquet"
    assert artifacts.step_table(2, artifacts.outcomes("kd_val")) == "steps/2/outcomes/kd_val.parquet"
    assert artifacts.step_table(2, artifacts.SIGNALS_TABLE) == "steps/2/signals.csv"
    with pytest.raises(ValueError):
        artifacts.outcomes("../x")
    store = RunStore(tmp_path / "store")
    frame = per_example(torch.randn(40, 3), torch.randint(0, 3, (40,)), torch.randn(40, 3))
    store.write_outcomes("r1", 1, artifacts.VAL_OUTCOMES, frame)
    back = store.read_outcomes("r1", 1, artifacts.VAL_OUTCOMES)
    pd.testing.assert_frame_equal(back, frame)
    assert store.read_outcomes("r1", 2, artifacts.VAL_OUTCOMES) is None
    assert store.outcome_evaluations("r1") == {1: ["val"]}


def test_a_pruning_run_keeps_outcomes_that_equal_its_scores(tmp_path):
    store = RunStore(tmp_path / "store")
    cfg = PruneConfig(model="tiny-bert", dataset="keywords", strategy="oracle", layers_to_remove=2, step_epochs=1.0,
                      data=DataConfig(train_cap=150, val_cap=45, test_cap=45), calibration_size=32, distill=True,
                      kd=DistillConfig(epochs=0.5), precision="fp32")
    rows, oracles, summary = {}, {}, None
    for ev in prune_events(cfg, run_id="r"):  # recorded as the recorder does: every table under its artifact name
        for name, frame in ev.tables.items():
            store.write_table("r", artifacts.step_table(ev.step, name), frame)
        if ev.stage == "step_done":
            rows[ev.step] = ev.payload
        elif ev.stage == "choice":
            oracles[ev.step] = ev.tables[artifacts.ORACLE_TABLE]
        elif ev.stage == "done":
            summary = ev.payload
    assert store.outcome_evaluations("r") == {0: ["test", "val"], 1: ["oracle_val", "test", "val"],
                                              2: ["kd_test", "kd_val", "oracle_val", "test", "val"]}
    for step, row in rows.items():
        for split in ("test", "val"):
            f = store.read_outcomes("r", step, split)
            assert len(f) == 45 and f["example"].tolist() == list(range(45))
            assert (f["pred"] == f["label"]).mean() == row[f"{split}_accuracy"]
            assert f1_score(f["label"], f["pred"], average="macro", zero_division=0) == row[f"{split}_macro_f1"]
            assert f["loss"].mean() == pytest.approx(row[f"{split}_loss"], rel=1e-6)
            assert f["kl_to_teacher"].isna().all() if step == 0 else (f["kl_to_teacher"] >= 0).all()
    for step, oracle in oracles.items():
        f = store.read_outcomes("r", step, artifacts.ORACLE_OUTCOMES)
        assert len(f) == 45 * len(oracle)
        by_layer = (f["pred"] == f["label"]).groupby(f["original_layer"]).mean()
        assert by_layer.loc[oracle["original_layer"]].tolist() == oracle["accuracy"].tolist()
        loss = f.groupby("original_layer")["loss"].mean().loc[oracle["original_layer"]]
        np.testing.assert_allclose(loss.to_numpy(), oracle["loss"].to_numpy(), rtol=1e-6)
    kd = store.read_outcomes("r", 2, artifacts.KD_TEST_OUTCOMES)
    assert (kd["pred"] == kd["label"]).mean() == summary["after_kd"]["test_accuracy"]


def test_a_merging_run_keeps_outcomes_for_every_row_of_its_comparison(tmp_path):
    from core.config import TrainConfig
    from core.merging.config import MergeConfig
    from core.merging.loop import merge_events

    cfg = MergeConfig(model="tiny-bert", dataset="keywords", auto_k=3, epochs=1.0, kd=DistillConfig(epochs=1.0),
                      data=DataConfig(train_cap=96, val_cap=48, test_cap=48), calibration_size=32, precision="fp32",
                      teacher=TrainConfig(epochs=6, lr=3e-3, batch_size=16, freeze_word_embeddings=False,
                                          head_lr_multiplier=1.0))  # as tests/test_merge.py: beats the guard
    store = RunStore(tmp_path / "store")
    events = []
    for ev in merge_events(cfg, device=torch.device("cpu")):
        for name, frame in ev.tables.items():
            store.write_table("m", artifacts.step_table(ev.step, name), frame)
        events.append(ev)
    teacher = next(e for e in events if e.stage == "step_done" and e.step == 0).payload
    f = store.read_outcomes("m", 0, artifacts.TEST_OUTCOMES)
    assert (f["pred"] == f["label"]).mean() == teacher["test_accuracy"] and f["kl_to_teacher"].isna().all()
    table = events[-1].tables[artifacts.COMPARISON_TABLE]
    rows = table[table["method"] != "teacher"]
    assert len(rows) == 6
    for method, stage, acc in zip(rows["method"], rows["stage"], rows["test_accuracy"]):
        f = store.read_outcomes("m", 1, artifacts.comparison_outcomes(method, stage, "test"))
        assert (f["pred"] == f["label"]).mean() == acc, (method, stage)
        assert (f["kl_to_teacher"] >= 0).all()
        assert store.read_outcomes("m", 1, artifacts.comparison_outcomes(method, stage, "val")) is not None
