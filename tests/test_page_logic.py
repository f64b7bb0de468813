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

    v = compare_at_budget(0.84, 0.812)  # no test size: no interval, and the sentence says so
    assert v.leader == "merging" and v.difference == pytest.approx(0.028) and v.n is None and v.interval is None
    assert v.sentence() == "**merging** is ahead by 0.028 (no interval: the test size is unknown)."
    v = compare_at_budget(0.7, 0.8, n=400)  # unpaired (Newcombe) from the two accuracies: 0.1 is beyond noise
    assert v.leader == "pruning" and not v.paired and v.n == 400 and v.interval.high < 0
    assert v.sentence().startswith("**pruning** is ahead by 0.100 [") and "unpaired" in v.sentence()
    close = compare_at_budget(0.70, 0.72, n=400)  # two points on 400 rows, unpaired: within noise
    assert close.leader == "neither" and close.sentence().startswith("**within noise**: merge − prune -0.020 [")
    tie = compare_at_budget(0.8, 0.8)
    assert tie.leader == "neither" and tie.sentence().startswith("a tie")


def _pair(n: int, merge_right: int, prune_right: int, both_right: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-example correctness of two models on ``n`` rows: ``both_right`` rows both get right, then the rest of
    each model's right rows where the other is wrong."""
    m, p = np.zeros(n, bool), np.zeros(n, bool)
    m[:both_right] = p[:both_right] = True
    m[both_right:merge_right] = True
    p[merge_right:merge_right + prune_right - both_right] = True
    return m, p


def test_merging_verdict_within_noise_when_a_paired_pair_differs_less_than_the_noise():
    """A pair built to differ by 2 of 400 rows (0.005; the models disagree on 10 rows) reads within noise; a pair
    built to differ by 60 rows (0.15) reads merging ahead, beyond noise; both from the paired interval."""
    from core.merging.verdict import compare_at_budget

    close = compare_at_budget(*_pair(400, 300, 298, 294))
    assert close.paired and close.interval.contains(0.0) and close.leader == "neither"
    assert close.difference == pytest.approx(0.005)
    assert close.sentence().startswith("**within noise**: merge − prune 0.005 [") and "paired" in close.sentence()
    far = compare_at_budget(*_pair(400, 320, 260, 255))
    assert far.paired and far.interval.low > 0 and far.leader == "merging"
    assert far.sentence().startswith("**merging** is ahead by 0.150 [") and "within noise" not in far.sentence()
    # the paired interval is narrower than the unpaired one on the same accuracies
    unpaired = compare_at_budget(far.merge_accuracy, far.prune_accuracy, n=400)
    assert far.interval.width < unpaired.interval.width


def test_merging_verdict_from_a_merge_runs_stored_outcomes():
    """budget_verdict reads the merge and prune sides' test outcomes of the recovered stage (matched on example
    ids, in any order) and falls back to the stored accuracies with the test size when there are none."""
    from core.merging.verdict import budget_verdict
    from core.runs import artifacts
    from core.runs.record import MergeSummary

    m, p = _pair(400, 300, 298, 294)
    ids = np.arange(400)
    labels = np.zeros(400, int)
    frames = {artifacts.comparison_outcomes("merge", "distilled", "test"):
              pd.DataFrame({"example": ids, "label": labels, "pred": np.where(m, 0, 1)}),
              artifacts.comparison_outcomes("prune", "distilled", "test"):
              pd.DataFrame({"example": ids, "label": labels, "pred": np.where(p, 0, 1)}).iloc[::-1]}
    summary = MergeSummary.of({"final": {"test_accuracy": 0.75}, "merged": {"finetuned": {}, "distilled": {}},
                               "pruning": {"depth": 1, "finetuned": {"test_accuracy": 0.7},
                                           "distilled": {"test_accuracy": 0.745}}})
    v = budget_verdict(summary, lambda step, e: frames.get(e) if step == 1 else None)
    assert v.paired and v.leader == "neither" and v.merge_accuracy == 0.75 and v.prune_accuracy == 0.745
    old = budget_verdict(summary, lambda step, e: None, n=400)  # a run stored before outcomes were kept
    assert not old.paired and old.interval is not None and "unpaired" in old.sentence()
    assert budget_verdict(MergeSummary.of({"final": {"test_accuracy": 0.7}}), lambda s, e: None) is None


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
