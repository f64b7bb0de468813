"""Does the full-path study's order of strategies repeat from tree to tree (core.studies.full_path_agreement)?
Kendall's W over datasets and trees, Spearman between seeds, their permutation p-values, and the sentence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import friedmanchisquare

from core.studies import full_path_agreement as fa

STRATS = ["oracle", "rf_fusion", "lr_fusion", "random", "top_down"]


def _full(acc: dict[tuple[str, int], list[float]], cap: int = 2000, strategies: list[str] = STRATS) -> pd.DataFrame:
    """full_path.csv rows: one per (dataset, seed, strategy), after KD and before KD the same."""
    rows = [{"model": "e5-small", "dataset": d, "seed": s, "strategy": k, "train_cap": cap, "after_kd": a,
             "before_kd": a} for (d, s), accs in acc.items() for k, a in zip(strategies, accs)]
    return pd.DataFrame(rows)


def _row(frame: pd.DataFrame, level: str, stage: str = "after_kd") -> dict:
    return frame[(frame["level"] == level) & (frame["stage"] == stage)].iloc[0].to_dict()


def test_the_same_order_on_every_tree_is_full_agreement_beyond_chance():
    order = [0.90, 0.88, 0.86, 0.84, 0.82]
    full = _full({(d, s): [a - 0.01 * s for a in order] for d in ("a", "b", "c", "d") for s in (0, 1)})
    out = fa.agreement(full, permutations=2000)
    for level in ("datasets", "trees"):
        r = _row(out, level)
        assert r["estimate"] == pytest.approx(1.0) and r["p"] < 0.01 and r["verdict"] == "beyond noise"
        assert r["mean_ranks"].startswith("oracle 1.00; rf_fusion 2.00") and r["first"] == "oracle"
    seeds = _row(out, "seeds")
    assert seeds["estimate"] == pytest.approx(1.0) and seeds["p"] < 0.01 and seeds["blocks"] == 4
    text = fa.agreement_sentence(out, "e5-small")
    assert "W = 1.00" in text and "more agreement than chance gives" in text and "no more" not in text
    assert "carries over from seed to seed, strongly" in text


def test_a_correlation_beyond_noise_says_how_strong_it_is():
    """A rank correlation can be beyond noise and still weak (the study's +0.24 over 12 seed pairs): the sentence
    says which of Cohen's bands it is in, never "carries over" alone."""
    assert fa.strength(0.24).startswith("weakly (|rho| below 0.3")
    assert fa.strength(0.3).startswith("moderately") and fa.strength(-0.45).startswith("moderately")
    assert fa.strength(0.5).startswith("strongly") and "our reading" in fa.strength(0.9)


def test_w_is_friedmans_chi_square_over_m_k_minus_1_also_with_ties():
    acc = np.array([[0.9, 0.9, 0.8, 0.7, 0.7], [0.6, 0.9, 0.8, 0.8, 0.5], [0.7, 0.8, 0.9, 0.6, 0.6],
                    [0.9, 0.5, 0.8, 0.7, 0.8]])
    chi2 = friedmanchisquare(*acc.T).statistic  # scipy corrects for ties
    assert fa.kendall_w(fa.ranks(acc)) == pytest.approx(chi2 / (4 * (5 - 1)))
    assert fa.ranks(acc)[0].tolist() == [1.5, 1.5, 3.0, 4.5, 4.5]  # 1 = most accurate, ties averaged


def test_seeds_that_reverse_the_order_correlate_negatively_and_a_seed_that_ties_everything_is_left_out():
    up, down = [0.90, 0.88, 0.86, 0.84, 0.82], [0.82, 0.84, 0.86, 0.88, 0.90]
    full = _full({("a", 0): up, ("a", 1): down, ("b", 0): up, ("b", 1): down, ("b", 2): [0.85] * 5})
    out = fa.agreement(full, permutations=500)
    assert set(out["level"]) == {"trees", "seeds"}  # each dataset's mean over its seeds ties: no datasets row
    r = _row(out, "seeds")
    assert r["estimate"] == pytest.approx(-1.0) and r["blocks"] == 2  # b's tied seed 2 forms no pair
    assert r["per_dataset"] == "a -1.00; b -1.00" and r["verdict"] == "within noise" and r["p"] > 0.5
    text = fa.agreement_sentence(fa.agreement(full, permutations=500), "e5-small")
    assert "rho = -1.00" in text and "not shown to carry over" in text


def test_datasets_are_ranked_by_their_mean_over_seeds_each_dataset_one_block():
    # dataset a: seed 0 puts oracle first by a little, seed 1 puts rf first by a lot -> a's mean puts rf first
    full = _full({("a", 0): [0.91, 0.90, 0.80, 0.70, 0.60], ("a", 1): [0.80, 0.95, 0.85, 0.70, 0.60],
                  ("b", 0): [0.90, 0.95, 0.80, 0.70, 0.60]})
    out = fa.agreement(full, permutations=200)
    d = _row(out, "datasets")
    assert d["blocks"] == 2 and d["trees"] == 3 and (d["seeds"], d["seeds_max"]) == (1, 2)
    assert d["estimate"] == pytest.approx(1.0)  # a (by its mean) and b rank identically: rf, oracle, lr, ...
    assert d["mean_ranks"].startswith("rf_fusion 1.00; oracle 2.00")
    t = _row(out, "trees")
    assert t["blocks"] == 3 and t["estimate"] < 1.0  # a's seed 0 disagrees on the first two


def test_a_strategy_missing_in_one_tree_is_not_ranked_and_too_few_strategies_give_no_rows():
    full = _full({("a", 0): [0.9, 0.8, 0.7, 0.6, 0.5], ("b", 0): [0.9, 0.8, 0.7, 0.6, 0.5]})
    full = full[~((full["dataset"] == "b") & (full["strategy"] == "top_down"))]
    assert list(fa.accuracy_table(full, "e5-small", 2000).columns) == sorted(STRATS[:4])
    assert int(_row(fa.agreement(full, permutations=100), "datasets")["strategies"]) == 4
    two = _full({("a", 0): [0.9, 0.8], ("b", 0): [0.8, 0.9]}, strategies=["oracle", "random"])
    assert fa.agreement(two).empty and fa.agreement_sentence(fa.agreement(two)) == ""
    assert fa.agreement(full[full["dataset"] == "a"]).empty  # one tree: nothing to agree with


def test_only_one_budget_is_ranked_and_the_file_is_removed_when_there_is_nothing_to_say(tmp_path):
    big = _full({("a", 0): [0.9, 0.8, 0.7, 0.6, 0.5], ("b", 0): [0.9, 0.8, 0.7, 0.6, 0.5]})
    small = _full({("a", 0): [0.5, 0.6, 0.7, 0.8, 0.9], ("b", 0): [0.9, 0.8, 0.7, 0.6, 0.5]}, cap=500)
    both = pd.concat([big, small], ignore_index=True)
    assert _row(fa.agreement(both, permutations=100), "datasets")["estimate"] == pytest.approx(1.0)  # 2,000 rows
    assert _row(fa.agreement(both, 500, permutations=100), "datasets")["estimate"] == pytest.approx(0.0)
    fa.write_agreement(tmp_path, fa.agreement(both, permutations=100))
    assert (tmp_path / fa.AGREEMENT_FILE).is_file()
    fa.write_agreement(tmp_path, pd.DataFrame())
    assert not (tmp_path / fa.AGREEMENT_FILE).exists()


def test_the_null_is_what_shuffled_orders_give():
    """Random accuracies on many trees: W and rho near 0 and within noise (the permutation p is not small)."""
    rng = np.random.default_rng(3)
    full = _full({(d, s): list(rng.random(5)) for d in "abcdefgh" for s in (0, 1, 2)})
    out = fa.agreement(full, permutations=2000, seed=1)
    d, s = _row(out, "datasets"), _row(out, "seeds")
    assert d["estimate"] < d["null_high"] and d["p"] > 0.05 and d["verdict"] == "within noise"
    assert abs(s["estimate"]) < 0.3 and s["p"] > 0.05
    assert "no more agreement than chance gives" in fa.agreement_sentence(out, "e5-small")
