"""core.stats: intervals cover at their nominal rate, paired intervals are narrower than unpaired ones on
correlated models, verdicts say "within noise" exactly when the interval contains 0, and the edge cases fail
or hold as documented."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from core.config import ConfigError
from core.stats import (
    Interval,
    accuracy_interval,
    beyond_noise,
    macro_f1_interval,
    over_datasets,
    over_seeds,
    paired_accuracy_difference,
    paired_macro_f1_difference,
    paired_mean_difference,
    unpaired_difference,
    verdict,
    wilson_interval,
    win_count,
)


def test_interval_prints_estimate_and_bounds():
    i = Interval(0.8941, 0.8823, 0.9049, 0.95, "Wilson", 800)
    assert str(i) == "0.894 [0.882, 0.905]"
    assert i.format(1, 100) == "89.4 [88.2, 90.5]"
    with pytest.raises(ConfigError, match="low <= estimate <= high"):
        Interval(0.5, 0.6, 0.7)


def test_wilson_matches_the_textbook_value():
    # 8 of 10: Wilson 95 % interval (0.4902, 0.9433) (Newcombe 1998, Table I style)
    i = wilson_interval(8, 10)
    assert (i.estimate, round(i.low, 4), round(i.high, 4)) == (0.8, 0.4902, 0.9433)
    assert i.method == "Wilson" and i.n == 10


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_wilson_covers_a_known_rate_close_to_nominal(p):
    rng = np.random.default_rng(1)
    n, sims = 200, 2000
    hits = 0
    for k in rng.binomial(n, p, size=sims):
        i = wilson_interval(int(k), n)
        hits += i.low <= p <= i.high
    coverage = hits / sims
    assert 0.93 <= coverage <= 0.97, coverage


def test_accuracy_interval_edge_cases():
    with pytest.raises(ValueError, match="empty"):
        accuracy_interval([])
    with pytest.raises(ValueError, match="n is 0"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="0/1"):
        accuracy_interval([0, 2, 1])
    everything = accuracy_interval(np.ones(50, dtype=bool))
    assert everything.estimate == 1.0 and everything.high == 1.0 and 0.9 < everything.low < 1.0
    nothing = accuracy_interval(np.zeros(50))
    assert nothing.estimate == 0.0 and nothing.low == 0.0 and 0.0 < nothing.high < 0.1


def test_macro_f1_interval_matches_sklearn_and_is_seeded():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=300)
    pred = np.where(rng.random(300) < 0.7, y, rng.integers(0, 4, size=300))
    i = macro_f1_interval(y, pred, seed=3)
    assert i.estimate == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-12)
    assert i.low < i.estimate < i.high and i.width < 0.2
    assert macro_f1_interval(y, pred, seed=3) == i
    # a class never predicted and never present in a resample is left out of the mean, as sklearn does
    assert macro_f1_interval([0, 0, 1], [0, 0, 0]).estimate == pytest.approx(
        f1_score([0, 0, 1], [0, 0, 0], average="macro", zero_division=0))
    perfect = macro_f1_interval(y, y)
    assert (perfect.estimate, perfect.low, perfect.high) == (1.0, 1.0, 1.0)


def correlated_pair(n: int = 800, acc: float = 0.85, flips: float = 0.04, seed: int = 0):
    """Two models that agree on most rows: B is A with a few outcomes flipped."""
    rng = np.random.default_rng(seed)
    a = rng.random(n) < acc
    b = a.copy()
    flip = rng.random(n) < flips
    b[flip] = ~b[flip]
    return a, b


def test_paired_interval_is_far_narrower_than_unpaired_on_correlated_models():
    a, b = correlated_pair()
    paired = paired_accuracy_difference(a, b).interval
    unpaired = unpaired_difference(int(a.sum()), a.size, int(b.sum()), b.size)
    assert paired.estimate == pytest.approx(unpaired.estimate)
    assert paired.width < 0.5 * unpaired.width, (paired, unpaired)
    # the paired width follows the discordant rows: 2 * 1.96 * sqrt(b + c) / n, roughly
    d = paired_accuracy_difference(a, b)
    assert paired.width == pytest.approx(2 * 1.96 * np.sqrt(d.discordant) / a.size, rel=0.25)


def test_pair_within_noise_reads_within_noise_and_a_real_gap_does_not():
    rng = np.random.default_rng(5)
    n = 808
    merged = rng.random(n) < 0.88
    pruned = merged.copy()
    # differ on 12 rows, 7 to 5: accuracy 0.0025 apart, far inside the noise
    idx = rng.choice(n, 12, replace=False)
    pruned[idx[:7]] = False
    merged[idx[:7]] = True
    pruned[idx[7:]] = True
    merged[idx[7:]] = False
    close = paired_accuracy_difference(merged, pruned)
    assert close.a_only == 7 and close.b_only == 5 and close.mcnemar_p > 0.5
    assert not beyond_noise(close.interval)
    assert verdict(close.interval, "merging", "pruning").startswith("within noise")
    # pruning loses 60 rows merging gets right
    worse = merged.copy()
    worse[np.flatnonzero(merged)[:60]] = False
    far = paired_accuracy_difference(merged, worse)
    assert beyond_noise(far.interval) and far.mcnemar_p < 1e-10
    text = verdict(far.interval, "merging", "pruning")
    assert text.startswith("merging ahead by 0.074 [")
    assert verdict(paired_accuracy_difference(worse, merged).interval, "pruning", "merging") == text


def test_identical_models_are_within_noise_with_a_point_interval():
    a, _ = correlated_pair()
    same = paired_accuracy_difference(a, a)
    assert (same.interval.low, same.interval.high, same.a_only, same.b_only, same.mcnemar_p) == (0, 0, 0, 0, 1.0)
    assert verdict(same.interval).startswith("within noise")
    with pytest.raises(ValueError, match="same examples"):
        paired_accuracy_difference(a, a[:-1])


def test_paired_loss_and_macro_f1_differences():
    rng = np.random.default_rng(2)
    base = rng.gamma(2.0, 0.3, size=500)
    loss_a, loss_b = base + 0.05 + rng.normal(0, 0.02, 500), base
    i = paired_mean_difference(loss_a, loss_b)
    d = loss_a - loss_b
    assert i.estimate == pytest.approx(d.mean()) and beyond_noise(i)
    # the paired bootstrap's width is that of the per-example differences' mean, not of two losses' spread
    assert i.width == pytest.approx(2 * 1.96 * d.std(ddof=1) / np.sqrt(d.size), rel=0.15)
    y = rng.integers(0, 3, size=500)
    pa = np.where(rng.random(500) < 0.9, y, (y + 1) % 3)
    pb = np.where(rng.random(500) < 0.6, y, (y + 1) % 3)
    d = paired_macro_f1_difference(y, pa, pb)
    assert d.estimate == pytest.approx(f1_score(y, pa, average="macro") - f1_score(y, pb, average="macro"))
    assert d.low > 0.2


def test_over_seeds_gives_mean_spread_and_t_interval():
    s = over_seeds([0.90, 0.92, 0.94])
    assert s.mean == pytest.approx(0.92) and s.sd == pytest.approx(0.02) and s.n == 3
    # t(0.975, 2) = 4.303
    assert s.interval.high - s.mean == pytest.approx(4.303 * 0.02 / np.sqrt(3), rel=1e-3)
    one = over_seeds([0.9])
    assert one.interval is None and str(one) == "0.900 (1 seed)"
    with pytest.raises(ValueError, match="empty"):
        over_seeds([])


def test_over_datasets_and_win_count():
    i = over_datasets([0.01, 0.02, -0.005, 0.015, 0.03, 0.0], seed=1)
    assert i.estimate == pytest.approx(0.07 / 6) and i.low < i.estimate < i.high
    assert over_datasets([0.01, 0.02, 0.0, 0.03], seed=1) == over_datasets([0.01, 0.02, 0.0, 0.03], seed=1)
    diffs = [Interval(0.02, 0.01, 0.03), Interval(0.01, -0.01, 0.03), Interval(-0.02, -0.03, -0.01),
             Interval(0.03, 0.02, 0.04), Interval(0.0, -0.01, 0.01)]
    w = win_count(diffs)
    assert (w.wins, w.losses, w.ties, w.n) == (2, 1, 2, 5)
    assert str(w) == "ahead beyond noise on 2 of 5, behind on 1, 2 within noise"
    assert w.sign_p == pytest.approx(1.0)
    with pytest.raises(ValueError):
        win_count([])


def test_intervals_from_stored_outcomes_pair_on_example_ids():
    import pandas as pd
    import torch

    from core.stats import accuracy_of, oracle_candidate, paired_accuracy_of, paired_mean_of
    from core.train import per_example

    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (400,), generator=gen)
    logits_a = torch.nn.functional.one_hot(labels, 3).float() * 2 + torch.randn(400, 3, generator=gen)
    logits_b = logits_a + 0.8 * torch.randn(400, 3, generator=gen)
    a, b = per_example(logits_a, labels), per_example(logits_b, labels)
    assert accuracy_of(a) == accuracy_interval((a["pred"] == a["label"]).to_numpy())
    shuffled = b.sample(frac=1.0, random_state=0)  # row order does not matter: examples are matched by id
    d = paired_accuracy_of(a, shuffled)
    assert d == paired_accuracy_difference((a["pred"] == a["label"]).to_numpy(), (b["pred"] == b["label"]).to_numpy())
    assert paired_mean_of(a, b, "loss").estimate == pytest.approx(float((a["loss"] - b["loss"]).mean()), rel=1e-6)
    with pytest.raises(ValueError, match="different examples"):
        paired_accuracy_of(a, b.head(300))
    with pytest.raises(ValueError, match="disagree on the labels"):
        paired_accuracy_of(a, b.assign(label=(b["label"] + 1) % 3))
    oracle = pd.concat([a.assign(original_layer=3), b.assign(original_layer=7)], ignore_index=True)
    with pytest.raises(ValueError, match="repeats example ids"):
        accuracy_of(oracle)
    pd.testing.assert_frame_equal(oracle_candidate(oracle, 7), b)
    with pytest.raises(ValueError, match="no candidate removing layer 5"):
        oracle_candidate(oracle, 5)
