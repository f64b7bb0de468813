"""Fair baselines and tests over datasets (issue 29 items 1-3): random as its exact expectation over the candidates,
single-signal directions learned leave-one-dataset-out (never from the scored dataset), the exact sign-flip test
over dataset means and the power estimate."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from core.signals import get_info
from core.signals.registry import BASELINES, SIGNALS
from core.stats.datasets import datasets_needed, power_statement, sign_flip_test, variance_components
from core.studies import fair, paper
from tests.paper_synthetic import PERFECT, WORST, synthetic_bank


# ------------------------------------------------------------------------------------------------- random
def test_expected_random_is_the_mean_over_the_candidates_of_a_hand_built_step():
    acc = np.array([0.80, 0.75, 0.70, 0.80])  # two candidates tie for best
    e = fair.expected_random(acc)
    assert e["regret_points"] == pytest.approx((0 + 5 + 10 + 0) / 4)
    assert e["regret_sd"] == pytest.approx(np.std([0, 5, 10, 0]))
    assert e["top1"] == pytest.approx(0.5)
    # held out: each candidate's regret on each half against that half's best, halves averaged, then the mean
    correct = np.array([[1, 1, 0, 0], [1, 0, 1, 1], [0, 0, 1, 0]], dtype=float)
    halves = (np.array([0, 1]), np.array([2, 3]))
    h = fair.expected_random_held_out(correct, halves)
    # half A: acc (1, .5, 0) -> regrets (0, 50, 100); half B: acc (0, 1, .5) -> (100, 0, 50)
    per_candidate = np.array([50.0, 25.0, 75.0])
    assert h["regret_points"] == pytest.approx(per_candidate.mean())
    assert h["regret_sd"] == pytest.approx(per_candidate.std())
    assert h["top1"] == pytest.approx((1 / 3 + 1 / 3) / 2)


def test_the_random_row_of_the_one_step_table_is_the_expectation_not_a_draw():
    profiles, outcomes = synthetic_bank(datasets=("alpha", "beta"), steps=2, n_examples=200)
    for kw in ({}, {"outcomes": outcomes}):
        table = paper.one_step_table(profiles, ("random",), **kw)
        rows = table[table["strategy"] == "random"]
        assert len(rows) == 4 and rows["chosen_layer"].isna().all() and (rows["spearman"] == 0).all()
        if not kw:  # same rows: exactly the mean over candidates of best - accuracy
            for r in rows.itertuples():
                step = profiles[(profiles["dataset"] == r.dataset) & (profiles["step"] == r.step)]
                acc = step["oracle_accuracy"].to_numpy()
                assert r.regret_points == pytest.approx(100 * (acc.max() - acc).mean())
        # unlike a seeded draw, it does not move with the seed of the table
        again = paper.one_step_table(profiles, ("random",), split_seed=0, **kw)
        assert np.allclose(again.loc[again["strategy"] == "random", "regret_points"], rows["regret_points"])


def test_draw_sd_is_how_far_seeded_draws_of_the_table_mean_land():
    rng = np.random.default_rng(0)
    steps = {(d, s): rng.random(6) for d in ("a", "b", "c") for s in range(4)}  # accuracies of 6 candidates
    rows = []
    for (d, s), acc in steps.items():
        rows.append({"dataset": d, "step": s, **fair.expected_random(acc)})
    frame = pd.DataFrame(rows)
    draws = []
    for _ in range(4000):  # one seeded draw of the whole table: a random candidate per step, then the mean
        per = {d: np.mean([100 * (a.max() - a[rng.integers(6)]) for (dd, _), a in steps.items() if dd == d])
               for d in ("a", "b", "c")}
        draws.append(np.mean(list(per.values())))
    expected = frame.groupby("dataset")["regret_points"].mean().mean()
    assert np.mean(draws) == pytest.approx(expected, abs=0.5)
    assert fair.draw_sd(frame) == pytest.approx(np.std(draws), rel=0.08)


# ---------------------------------------------------------------------------------------------- directions
def _shuffle_oracle(profiles: pd.DataFrame, outcomes: pd.DataFrame, dataset: str, seed: int = 7):
    """``dataset``'s oracle shuffled across the layers of each step (profiles and per-example outcomes alike)."""
    rng = np.random.default_rng(seed)
    p, o = profiles.copy(), outcomes.astype({"original_layer": "int64"})
    for (run_id, step), g in p[p["dataset"] == dataset].groupby(["run_id", "step"]):
        layers = g["original_layer"].to_numpy()
        moved = dict(zip(layers, rng.permutation(layers)))
        p.loc[g.index, "oracle_accuracy"] = g.set_index("original_layer").loc[
            [moved[x] for x in layers], "oracle_accuracy"].to_numpy()
        mask = (o["run_id"] == run_id) & (o["step"] == step)
        o.loc[mask, "original_layer"] = [moved[int(x)] for x in o.loc[mask, "original_layer"]]
    return p, o.sort_values(["run_id", "step", "original_layer", "example"]).reset_index(drop=True)


def test_the_direction_for_a_held_out_dataset_never_depends_on_that_dataset():
    profiles, outcomes = synthetic_bank(datasets=("alpha", "beta", "gamma"), steps=3, n_examples=200)
    before = fair.learned_directions(profiles, profiles)
    shuffled, shuffled_outcomes = _shuffle_oracle(profiles, outcomes, "alpha")
    after = fair.learned_directions(shuffled, shuffled)
    for key, choice in before[("tiny", "alpha")].items():
        assert after[("tiny", "alpha")][key] == choice  # direction, rule and the training regrets alike
    # the signal ordered the wrong way round is learned the other way on every dataset (it could fail)
    assert all(d[WORST].direction != get_info(WORST).direction for d in before.values())
    assert all(d[PERFECT].direction == get_info(PERFECT).direction for d in before.values())
    # and in the table: alpha's rows are scored with the same directions before and after the shuffle
    t0 = paper.one_step_table(profiles, (WORST, PERFECT), outcomes=outcomes)
    t1 = paper.one_step_table(shuffled, (WORST, PERFECT), outcomes=shuffled_outcomes)
    a0, a1 = (t[t["dataset"] == "alpha"].set_index(["step", "strategy"])["direction"] for t in (t0, t1))
    assert a0.equals(a1)


def test_other_datasets_do_decide_the_direction():
    """The negative control: shuffling every other dataset's oracle can move alpha's learned direction."""
    profiles, outcomes = synthetic_bank(datasets=("alpha", "beta", "gamma"), steps=3, n_examples=200)
    shuffled, _ = _shuffle_oracle(profiles, outcomes, "beta", seed=3)
    shuffled, _ = _shuffle_oracle(shuffled, outcomes, "gamma", seed=4)
    before = fair.learned_directions(profiles, profiles)[("tiny", "alpha")][WORST]
    after = fair.learned_directions(shuffled, shuffled)[("tiny", "alpha")][WORST]
    assert (before.train_lowest, before.train_highest) != (after.train_lowest, after.train_highest)
    assert before.train_datasets == after.train_datasets == ("beta", "gamma")


def test_one_dataset_keeps_the_registry_direction_and_says_so():
    profiles, _ = synthetic_bank(datasets=("alpha",), steps=2, n_examples=50)
    choice = fair.learned_directions(profiles, profiles)[("tiny", "alpha")][WORST]
    assert choice.direction == get_info(WORST).direction and choice.rule == fair.A_PRIORI


def test_direction_scores_with_the_registry_direction_are_the_runs_order():
    from core.signals import rank_layers

    profiles, _ = synthetic_bank(datasets=("alpha",), steps=2, n_examples=50)
    step = profiles[profiles["step"] == 1].sort_values("layer")
    for key in (PERFECT, WORST, "attention_entropy"):
        scores = fair.direction_scores(step, key, get_info(key).direction)
        order = list(step["original_layer"].to_numpy()[np.argsort(-scores, kind="stable")])
        assert order == rank_layers(step, key)


def test_every_registry_entry_says_why_its_end_is_pruned_first():
    for info in (*SIGNALS.values(), *BASELINES.values()):
        assert info.direction_reason.strip()
        assert info.direction_reason in info.direction_text
    assert "a priori" in SIGNALS["weight_entropy"].direction_text and "**lowest**" in \
        SIGNALS["weight_entropy"].direction_text


# ------------------------------------------------------------------------------------------ over datasets
def test_sign_flip_p_values_on_known_cases():
    assert sign_flip_test([1.0, 2.0, 3.0]).p == pytest.approx(2 / 8)  # only all-plus and all-minus are as extreme
    eight = sign_flip_test(np.arange(1.0, 9.0))
    assert eight.p == pytest.approx(2 / 256) and eight.exact and eight.min_p == pytest.approx(2 / 256)
    x = np.array([0.5, -0.2, 0.9, 0.1, 0.4, -0.6, 0.3, 0.8])
    brute = np.mean([abs(np.mean(np.array(s) * x)) >= abs(x.mean()) - 1e-12
                     for s in itertools.product((1, -1), repeat=8)])
    t = sign_flip_test(x)
    assert t.p == pytest.approx(brute) and (t.positive, t.negative) == (6, 2)
    assert sign_flip_test([0.0, 0.0]).p == 1.0


def test_variance_components_and_the_power_estimate():
    # balanced: 4 datasets x 2 seeds; MS_within and MS_between by hand
    v = [[1.0, 1.2], [0.5, 0.7], [2.0, 1.5], [0.1, 0.3]]
    c = variance_components(v)
    within = np.mean([np.var(g, ddof=1) for g in v])
    means = np.mean(v, axis=1)
    between = 2 * np.var(means, ddof=1)
    assert c.seed_var == pytest.approx(within) and c.dataset_var == pytest.approx((between - within) / 2)
    # a large, clean difference: the fewest datasets a sign-flip test can use at 5 %
    big = variance_components([[5.0, 5.1], [4.9, 5.0], [5.2, 5.1]])
    assert datasets_needed(big, 2) == 6
    # more seeds never need more datasets; a smaller difference needs more
    s = power_statement(v, (2, 3, 5))
    assert s.needed[2] >= s.needed[3] >= s.needed[5]
    small = power_statement([[x - 0.8 for x in g] for g in v], (2,))
    assert small.needed[2] is None or small.needed[2] > s.needed[2]
    assert datasets_needed(variance_components([[0.0, 0.0], [0.0, 0.0]]), 2) is None
    assert "one-way random-effects ANOVA of 4 datasets × 2 seeds" in s.text()
    # while seeds land one dataset at a time, the text says the range, not the smallest count alone
    uneven = power_statement([[1.0, 1.2], [0.5], [2.0], [0.1]], (1, 3))
    assert (uneven.components.seeds, uneven.components.seeds_max) == (1, 2)
    assert "ANOVA of 4 datasets × 1-2 seeds" in uneven.text()


def test_reference_files_carry_directions_and_dataset_tests(tmp_path):
    profiles, outcomes = synthetic_bank(datasets=("alpha", "beta", "gamma"), steps=3, n_examples=200)
    table = paper.one_step_table(profiles, ("random", PERFECT, WORST, "rf_fusion", "lr_fusion"), outcomes=outcomes)
    summary = paper.summarise_one_step(table)
    paper.write_reference(table, summary, None, paper.claims(summary, table), tmp_path)
    directions = pd.read_csv(tmp_path / paper.DIRECTIONS_FILE)
    assert set(directions["strategy"]) == {PERFECT, WORST}
    worst = directions.set_index("strategy").loc[WORST]
    assert worst["learned_lowest"] in (0, 3)
    assert worst["regret"] <= min(worst["regret_lowest"], worst["regret_highest"]) + 1e-9
    tests = pd.read_csv(tmp_path / paper.DATASET_TESTS_FILE)
    assert {"sign_flip_p", "verdict", "estimate", "low", "high"} <= set(tests.columns)
    assert (tests["sign_flip_p"] >= 0.25 - 1e-9).all()  # 3 datasets: no sign-flip p below 2/8
    assert (tests["verdict"] == "within noise").all() and tests["power"].notna().all()
    overall = pd.read_csv(tmp_path / paper.OVERALL_FILE).set_index("strategy")
    assert overall.loc["random", "draw_sd"] > 0 and np.isnan(overall.loc["rf_fusion", "draw_sd"])
    from ui import paper_plots as pp

    ref = pp.load_reference(tmp_path)
    assert ref.random_expected and ref.directions is not None and ref.dataset_tests is not None
    assert ref.shown_folder == "/".join(tmp_path.parts[-2:])  # never the machine's absolute path
    line = pp.direction_line(WORST, tmp_path)
    assert line is not None and "leave-one-dataset-out" in line and "not the registry's end" in line
    assert pp.direction_line("top_down", tmp_path) is None
    frame = pp.dataset_tests_frame(ref.dataset_tests, "tiny")
    assert len(frame) == len(tests) and frame["sign-flip p"].ge(0.25).all()


def test_the_signals_page_teaches_each_direction_with_its_reason_and_what_was_learned(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    profiles, outcomes = synthetic_bank(datasets=("alpha", "beta", "gamma"), steps=2, n_examples=100)
    table = paper.one_step_table(profiles, (PERFECT, WORST), outcomes=outcomes)
    summary = paper.summarise_one_step(table)
    paper.write_reference(table, summary, None, paper.claims(summary, table), tmp_path)
    monkeypatch.setenv("PRUNE_REFERENCE_DIR", str(tmp_path))
    at = AppTest.from_file(str(paper.PROJECT_ROOT / "pages" / "signals.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    shown = " ".join(m.value for m in (*at.markdown, *at.caption))
    for info in SIGNALS.values():
        assert info.direction_reason in shown
    assert shown.count("fixed a priori") == len(SIGNALS)
    # the learned line: only for the signals the reference files scored, with both ends' regret
    assert shown.count("learned leave-one-dataset-out (each dataset's direction") == 2
    assert "lowest first" in shown and "highest first" in shown and str(tmp_path) not in shown


def test_the_best_single_signal_picked_without_the_scored_dataset():
    profiles, outcomes = synthetic_bank(datasets=("alpha", "beta", "gamma"), steps=3, n_examples=400, noise=0.2,
                                        spread=0.1)
    table = paper.one_step_table(profiles, (*SIGNALS, "rf_fusion"), outcomes=outcomes)
    picked = fair.selected_single(profiles, table)
    assert picked is not None and picked["datasets"] == 3
    # the other datasets pick a signal that orders the layers by their true accuracy, from its good end (PERFECT,
    # or WORST from the other end: the same order)
    good = {f"{PERFECT} ({get_info(PERFECT).direction} first)", f"{WORST} (highest first)"}
    assert set(picked["picks"].values()) <= good
    perfect = table[table["strategy"] == PERFECT]
    want = paper.cluster_interval([g[f"regret_{get_info(PERFECT).direction}"].to_numpy()
                                   for _, g in perfect.groupby("dataset")])
    assert picked["regret"] == pytest.approx(want.estimate) and picked["low"] <= picked["regret"] <= picked["high"]
    assert "minus_rf" in picked and 0 <= picked["minus_rf"]["sign_flip_p"] <= 1
    one, _ = synthetic_bank(datasets=("alpha",), steps=2, n_examples=50)
    assert fair.selected_single(one, paper.one_step_table(one, (PERFECT,))) is None  # no other dataset to pick on


def test_the_registry_best_is_compared_from_its_registry_end_even_where_another_end_was_learned():
    """Weight-Entropy is the best signal by the registry's end (lowest first) but its learned end flips on one
    dataset, and Inhibition is the best by learned ends: RF fusion against "Weight-Entropy (lowest first)" must read
    the lowest-first regrets on every step, in the dataset tests and in the headline claim."""
    from core.studies import claims
    from core.studies.dataset_tests import best_single, dataset_comparisons, registry_end

    rng = np.random.default_rng(3)
    rows = []
    for d in range(6):
        for step in (1, 2, 3):
            base = {"model": "m", "dataset": f"d{d}", "seed": 0, "step": step, "n_layers": 13 - step, "chosen_layer": 5,
                    "top1": 0.0, "spearman": 0.1, "scoring": paper.HELD_OUT}
            low, high = 1.0 + rng.uniform(0, 0.2), 3.0 + rng.uniform(0, 0.2)  # lowest first is WE's good end
            learned = "highest" if d == 0 else "lowest"  # the other datasets taught "highest" for d0's fold
            rows.append({**base, "strategy": "weight_entropy", "regret_lowest": low, "regret_highest": high,
                         "direction": learned, "regret_points": high if learned == "highest" else low})
            i_low, i_high = 4.0, 0.5 + rng.uniform(0, 0.2)  # Inhibition: registry lowest (bad), learned highest
            rows.append({**base, "strategy": "inhibition", "regret_lowest": i_low, "regret_highest": i_high,
                         "direction": "highest", "regret_points": i_high})
            rows.append({**base, "strategy": "rf_fusion", "regret_points": 2.0 + rng.uniform(0, 0.2)})
            rows.append({**base, "strategy": "random", "regret_points": 2.5})
            rows.append({**base, "strategy": paper.NOISE_FLOOR, "regret_points": 0.4})
    table = pd.DataFrame(rows)
    assert best_single(table) == "inhibition" and best_single(table, "registry") == "weight_entropy"
    scored = registry_end(table, "weight_entropy")
    we = scored[scored["strategy"] == "weight_entropy"]
    assert (we["regret_points"] == we["regret_lowest"]).all() and (we["direction"] == "lowest").all()
    assert scored[scored["strategy"] != "weight_entropy"].equals(table[table["strategy"] != "weight_entropy"])

    tests = dataset_comparisons(table)
    row = tests[(tests["a"] == "rf_fusion") & (tests["b"] == "weight_entropy")]
    assert len(row) == 1  # compared although its learned end is not the registry's everywhere
    per_dataset = (we.groupby("dataset")["regret_lowest"].mean()
                   - table[table["strategy"] == "rf_fusion"].groupby("dataset")["regret_points"].mean())
    assert row["estimate"].iloc[0] == pytest.approx(per_dataset.mean())  # lowest first on d0 too: about -1
    assert row["estimate"].iloc[0] < -0.7
    text = claims._rf_lowest(table)["ours"]
    we_part = text.split("Against Weight-Entropy (the registry's a-priori best, lowest first): ")[1].split(". ")[0]
    assert we_part.startswith(f"Weight-Entropy − RF fusion = {per_dataset.mean():+.2f}")
