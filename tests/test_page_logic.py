"""What the pages used to compute themselves, now in ``core`` and ``ui`` (pages only read and draw): the fusion
ranker's quality summary, the merging verdict, Setup's model card and token counts, the deploy speedup figure."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest


# ------------------------------------------------------------------------------------------ fusion quality
def _steps(rhos, hits):
    return pd.DataFrame({"step": range(len(rhos)), "ranker_spearman": rhos, "ranker_top1": hits})


def test_fusion_quality_per_run_and_per_strategy_and_dataset():
    from core.fusion.quality import RunSteps, quality_by_strategy_and_dataset, quality_rows, run_quality

    runs = [RunSteps("a", "rf_fusion", "trec", _steps([None, 0.5, 0.7, "nan"], [None, True, False, True])),
            RunSteps("b", "rf_fusion", "trec", _steps([None, 0.9], [None, True])),
            RunSteps("c", "lr_fusion", "sms", _steps([None, -0.2, 0.4], [None, False, False])),
            RunSteps("d", "lr_fusion", "sms", pd.DataFrame({"step": [0, 1]})),  # no ranker: left out
            RunSteps("e", "rf_fusion", "trec", pd.DataFrame())]
    rows = quality_rows(runs)
    assert sorted(set(rows["run_id"])) == ["a", "b", "c"] and (rows["step"] > 0).all() and len(rows) == 6
    a = run_quality(rows[rows["run_id"] == "a"])
    assert a.mean_spearman == pytest.approx(0.6)  # (0.5 + 0.7) / 2: the unreadable value is skipped
    assert a.top1_rate == pytest.approx(2 / 3) and a.steps == 3
    assert run_quality(rows.iloc[0:0]) == run_quality(pd.DataFrame())
    assert run_quality(pd.DataFrame()).mean_spearman is None
    table = quality_by_strategy_and_dataset(rows).set_index(["strategy", "dataset"])
    assert table.loc[("rf_fusion", "trec"), "mean_rho"] == pytest.approx((0.5 + 0.7 + 0.9) / 3)
    assert table.loc[("rf_fusion", "trec"), "top1"] == pytest.approx(3 / 4)
    assert table.loc[("rf_fusion", "trec"), "steps"] == 4
    assert table.loc[("lr_fusion", "sms"), "mean_rho"] == pytest.approx(0.1)
    assert table.loc[("lr_fusion", "sms"), "top1"] == 0.0
    assert quality_by_strategy_and_dataset(pd.DataFrame()).empty


# ------------------------------------------------------------------------------------------ merging verdict
def test_merging_verdict_from_accuracies():
    from core.merging.verdict import compare_at_budget

    v = compare_at_budget(0.84, 0.812)
    assert v.leader == "merging" and v.difference == pytest.approx(0.028) and v.n is None
    assert v.sentence() == "**merging** is ahead by 0.028."
    v = compare_at_budget(0.7, 0.75, n=400)
    assert v.leader == "pruning" and v.sentence() == "**pruning** is ahead by 0.050." and v.n == 400
    tie = compare_at_budget(0.8, 0.8)
    assert tie.leader == "neither" and tie.sentence() == "a tie."


def test_merging_verdict_keeps_per_example_correctness_for_a_paired_interval():
    from core.merging.verdict import compare_at_budget

    merge = [True, True, False, True, False]  # 3 / 5
    prune = np.array([True, False, False, True, False])  # 2 / 5, on the same five examples
    v = compare_at_budget(merge, prune)
    assert (v.merge_accuracy, v.prune_accuracy, v.n) == (0.6, 0.4, 5) and v.leader == "merging"
    assert v.merge_correct.tolist() == merge and v.prune_correct.tolist() == prune.tolist()
    with pytest.raises(ValueError, match="differ in length"):
        compare_at_budget(merge, [True])
    with pytest.raises(ValueError, match="n=4 but"):
        compare_at_budget(merge, prune, n=4)
    with pytest.raises(ValueError, match="accuracy must be in"):
        compare_at_budget(1.2, 0.5)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        compare_at_budget(0.5, 0.5, n=0)


# ------------------------------------------------------------------------------------------ Setup
def test_model_card_of_the_tiny_model_counts_its_parameters():
    from core.models.card import model_card

    card = model_card("tiny-bert")
    assert (card.layers, card.hidden, card.heads, card.ffn) == (12, 32, 4, 64)
    # per layer: attention 4 x (32 x 32 + 32) + FFN (32 x 64 + 64) + (64 x 32 + 32) + two layer norms 2 x 64
    assert card.per_layer == (4 * (32 * 32 + 32) + (32 * 64 + 64) + (64 * 32 + 32) + 2 * 64,) * 12 == (8544,) * 12
    assert card.counts["encoder"] == 12 * 8544 and card.counts["head"] == 32 * 32 + 32  # the pooler
    assert card.total == card.counts["encoder"] + card.counts["embeddings"] + card.counts["head"]
    assert card.layer_share == pytest.approx(8544 / card.total)
    assert card.encoder_share == pytest.approx(12 * 8544 / card.total)


def test_token_and_word_lengths():
    from core.data.lengths import sample_texts, token_lengths, truncated_share, word_lengths
    from core.models.registry import load_tokenizer

    texts = pd.Series(["good match", "the bad awful thing is here", "love"])
    lengths = token_lengths(load_tokenizer("tiny-bert"), texts)
    assert sorted(lengths) == [3, 4, 8]  # words + [CLS] and [SEP]; nothing truncated
    assert truncated_share(lengths, 4) == pytest.approx(1 / 3) and truncated_share(pd.Series(dtype=int), 4) == 0.0
    assert word_lengths(texts).tolist() == [2, 6, 1]
    many = pd.Series([f"text {i}" for i in range(50)])
    assert len(sample_texts(many, 10)) == 10 and sample_texts(many, 10) == sample_texts(many, 10)
    assert sorted(sample_texts(texts, 10)) == sorted(texts)


# ------------------------------------------------------------------------------------------ Runs page figure
def test_deploy_speedup_figure_draws_each_measured_runtime_and_the_ideal():
    from ui.plots import deploy_speedups

    rows = [{"batch": 1, "seq": 32, "speedup_torch": 1.8, "speedup_ort": 2.1, "ideal": 2.0},
            {"batch": 8, "seq": 128, "speedup_torch": 1.9, "speedup_ort": 2.2, "ideal": 2.0}]
    fig = deploy_speedups(rows)
    names = [t.name for t in fig.data]
    assert names == ["PyTorch", "ONNX Runtime", "ideal (encoder only)"]  # no int8 column: no int8 bars
    assert list(fig.data[0].x) == ["1 × 32", "8 × 128"] and list(fig.data[1].y) == [2.1, 2.2]
    assert not math.isnan(fig.layout.shapes[0].y0) and fig.layout.shapes[0].y0 == 1.0
