"""Intervals and verdicts of stored runs (core.runs.noise, core.runs.report.with_intervals/rankings,
ui.study_view's result columns): paired from per-example outcomes, Wilson from accuracy and test size for runs
stored before outcomes (unpaired, and said so), bare without a size; 'within noise' exactly when the interval
holds 0."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.runs import artifacts, noise
from core.stats import accuracy_of, paired_accuracy_of, wilson_interval


def outcomes(correct: np.ndarray, ids: np.ndarray | None = None) -> pd.DataFrame:
    """A per-example outcomes frame (label 0 everywhere; pred 0 when right)."""
    ids = np.arange(len(correct)) if ids is None else ids
    return pd.DataFrame({"example": ids, "label": np.zeros(len(correct), int), "pred": np.where(correct, 0, 1),
                         "loss": np.zeros(len(correct)), "kl_to_teacher": np.nan})


def pair(n: int, a_right: int, b_right: int, both: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.zeros(n, bool), np.zeros(n, bool)
    a[:both] = b[:both] = True
    a[both:a_right] = True
    b[a_right:a_right + b_right - both] = True
    return a, b


def test_measured_from_outcomes_from_accuracy_and_size_or_bare():
    a, _ = pair(200, 150, 150, 150)
    m = noise.measured(0.75, outcomes(a))
    assert m.interval == accuracy_of(outcomes(a)) and m.paired_ready and m.text() == str(m.interval)
    old = noise.measured(0.75, None, n=200)
    assert old.interval == wilson_interval(150, 200) and not old.paired_ready
    bare = noise.measured(0.75)
    assert bare.interval is None and bare.text() == "0.750"
    assert noise.measured(None) is None and noise.measured(float("nan")) is None


def test_compare_is_paired_with_outcomes_and_unpaired_without_and_says_so():
    a, b = pair(400, 300, 298, 294)  # 0.005 apart, 10 discordant rows: within noise
    close = noise.compare(noise.measured(None, outcomes(a)), noise.measured(None, outcomes(b)), "A", "B")
    assert close.paired and close.within_noise
    assert close.interval == paired_accuracy_of(outcomes(a), outcomes(b)).interval
    assert close.sentence().startswith("within noise (A − B: 0.005 [") and close.sentence().endswith("(paired)")
    assert close.signed().endswith("within noise")
    a, b = pair(400, 320, 260, 255)  # 0.15 apart
    far = noise.compare(noise.measured(None, outcomes(a)), noise.measured(None, outcomes(b)), "A", "B")
    assert far.paired and not far.within_noise and far.sentence().startswith("A ahead by 0.150 [")
    assert "within noise" not in far.signed()
    # the same accuracies without outcomes: unpaired (wider), and the sentence says why
    unpaired = noise.compare(noise.measured(0.8, n=400), noise.measured(0.65, n=400), "A", "B")
    assert not unpaired.paired and unpaired.interval.width > far.interval.width
    assert "unpaired: no per-example outcomes stored" in unpaired.sentence() and unpaired.signed().endswith("unpaired")
    # outcomes of different rows (another split): not paired
    other = noise.compare(noise.measured(None, outcomes(a)), noise.measured(None, outcomes(b, np.arange(400) + 1000)))
    assert other is not None and not other.paired and "unpaired: different test rows" in other.sentence()
    assert noise.compare(noise.measured(0.8), noise.measured(0.7, n=100)) is None  # one size unknown: no interval


def test_test_size_comes_from_the_teacher_guard_event():
    from core.runs.events import StoredEvent

    events = [StoredEvent("r", 0, 0.0, "prepare"),
              StoredEvent("r", 1, 1.0, "teacher_check", payload={"test_rows": 808})]
    assert noise.test_size(events) == 808 and noise.test_size(events[:1]) is None


def _steps(accs: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"step": range(len(accs)), "n_layers": [12 - k for k in range(len(accs))],
                         "test_accuracy": accs})


def test_prune_intervals_paired_for_a_run_with_outcomes():
    teacher, step1 = pair(300, 270, 240, 235)
    kd = teacher.copy()
    files = {(0, "test"): outcomes(teacher), (1, "test"): outcomes(step1), (1, "kd_test"): outcomes(kd)}
    found = noise.prune_intervals("r", _steps([0.9, 0.8]), {"after_kd": {"test_accuracy": 0.9}},
                                  lambda run_id, step, e: files.get((step, e)))
    assert found.paired and found.teacher.interval == accuracy_of(outcomes(teacher))
    assert found.vs_teacher[1].paired and found.vs_teacher[1].difference == pytest.approx(-0.1)
    assert not found.vs_teacher[1].within_noise and found.final is found.after_kd
    assert found.kd_vs_before.difference == pytest.approx(0.1) and found.kd_vs_teacher.within_noise
    bounds = found.bounds()
    assert list(bounds["step"]) == [0, 1] and bounds["test_low"].iloc[0] == found.teacher.interval.low
    joined = found.with_bounds(_steps([0.9, 0.8]))
    assert list(joined["test_ci"]) == [found.steps[0].text(), found.steps[1].text()]


def test_prune_intervals_of_a_run_stored_before_outcomes():
    found = noise.prune_intervals("r", _steps([0.9, 0.8]), {}, lambda *a: None, n=300)
    assert not found.paired and found.teacher.interval == wilson_interval(270, 300)
    assert not found.vs_teacher[1].paired and "unpaired" in found.vs_teacher[1].sentence()
    bare = noise.prune_intervals("r", _steps([0.9, 0.8]), {}, lambda *a: None)
    assert bare.teacher.interval is None and bare.vs_teacher == {} and bare.teacher.text() == "0.900"


def test_rank_order_says_which_places_are_within_noise():
    lead, close = pair(400, 300, 298, 294)
    _, far = pair(400, 300, 240, 235)
    ranked = noise.rank([("B", noise.measured(None, outcomes(close))), ("A", noise.measured(None, outcomes(lead))),
                         ("C", noise.measured(None, outcomes(far)))])
    assert [r.name for r in ranked] == ["A", "B", "C"] and ranked[0].vs_leader is None
    assert ranked[1].vs_leader.within_noise and not ranked[2].vs_leader.within_noise
    text = noise.rank_sentence(ranked)
    assert text.startswith("**A** highest (0.750 [") and "B 0.745 [" in text and "within noise (B − A" in text
    assert "A ahead by 0.150 [" in text and text.endswith("1 of 2 within noise of the highest.")
    tied = noise.rank_sentence(ranked[:2])
    assert tied.endswith("No place is ahead beyond noise.")
    lines = noise.rank_lines(ranked)
    assert lines[0].startswith("**A** highest: 0.750 [") and lines[-1] == "1 of 2 within noise of the highest."


def test_comparison_table_of_a_merge_run_gets_intervals_and_vs_teacher():
    teacher, merged = pair(200, 180, 170, 168)
    comparison = pd.DataFrame({"method": ["teacher", "merge", "prune"], "stage": ["teacher", "finetuned", "finetuned"],
                               "test_accuracy": [0.9, 0.85, 0.8]})
    files = {(0, "test"): outcomes(teacher), (1, artifacts.comparison_outcomes("merge", "finetuned", "test")):
             outcomes(merged)}
    out = noise.comparison_intervals("r", comparison, lambda run_id, step, e: files.get((step, e)), n=200)
    assert out["test accuracy [95 %]"].iloc[0] == str(accuracy_of(outcomes(teacher)))
    assert out["vs teacher [95 %]"].iloc[0] == "" and out["vs teacher [95 %]"].iloc[1].startswith("-0.050 [")
    assert out["vs teacher [95 %]"].iloc[2].endswith("unpaired")  # the prune row kept no outcomes here
    assert out["test_low"].iloc[2] == wilson_interval(160, 200).low


def test_merge_sides_read_the_recovered_stage_of_both_sides():
    teacher, merged = pair(200, 180, 170, 168)
    _, pruned = pair(200, 180, 150, 150)
    files = {(0, "test"): outcomes(teacher),
             (1, artifacts.comparison_outcomes("merge", "distilled", "test")): outcomes(merged),
             (1, artifacts.comparison_outcomes("prune", "distilled", "test")): outcomes(pruned)}
    summary = {"teacher": {"test_accuracy": 0.9}, "final": {"test_accuracy": 0.85},
               "merged": {"finetuned": {}, "distilled": {}},
               "pruning": {"finetuned": {"test_accuracy": 0.7}, "distilled": {"test_accuracy": 0.75}}}
    sides = noise.merge_sides("r", summary, lambda run_id, step, e: files.get((step, e)))
    assert sides["teacher"].interval == accuracy_of(outcomes(teacher))
    assert sides["merge"].interval == accuracy_of(outcomes(merged))
    assert sides["prune"].interval == accuracy_of(outcomes(pruned))
    old = noise.merge_sides("r", {**summary, "merged": {"finetuned": {}}}, lambda *a: None, n=200)
    assert old["prune"].interval == wilson_interval(140, 200)  # fine-tuned side: both were not distilled
    assert noise.merge_sides("r", {k: v for k, v in summary.items() if k != "pruning"}, lambda *a: None)["prune"] \
        is None


def test_compare_table_with_intervals_and_rankings_from_a_store(tmp_path):
    from core.runs.report import compare_table, rankings, with_intervals
    from core.runs.store import RunStore

    store = RunStore(tmp_path)
    teacher, _ = pair(300, 270, 270, 270)
    _, worse = pair(300, 270, 240, 235)
    ids = []
    for strategy, step1 in (("oracle", teacher), ("random", worse)):
        rid = store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy=strategy, config={})
        for k, c in ((0, teacher), (1, step1)):
            store.add_step(rid, k, {"n_layers": 12 - k, "test_accuracy": float(c.mean())})
            store.write_outcomes(rid, k, artifacts.TEST_OUTCOMES, outcomes(c))
        ids.append(rid)
    old = store.create_run(kind="prune", model="tiny-bert", dataset="sms", strategy="random", config={})
    store.add_step(old, 0, {"n_layers": 12, "test_accuracy": 0.9})
    store.add_event(old, "teacher_check", payload={"test_rows": 300})
    table = compare_table(store, [*ids, old])
    shown = with_intervals(store, table).set_index("run_id")
    assert shown.loc[ids[0], "teacher"] == str(accuracy_of(outcomes(teacher)))
    assert shown.loc[ids[1], "acc@11"] == str(accuracy_of(outcomes(worse)))
    assert shown.loc[old, "teacher"] == str(wilson_interval(270, 300))  # no outcomes: Wilson from accuracy and size
    (ranking,) = rankings(store, [*ids, old])  # sms has one run: no ranking
    assert ranking.dataset == "keywords" and ranking.n_layers == 11
    assert ranking.sentence().startswith("At 11 layers: **oracle** highest (0.900 [")
    assert "oracle ahead by 0.100 [" in ranking.sentence()


def test_study_cells_show_final_accuracy_with_interval_and_seeds_aggregate():
    from ui import study_view

    cells = pd.DataFrame({"cell_id": ["a", "b", "c"], "strategy": ["random"] * 3, "model": ["tiny-bert"] * 3,
                          "dataset": ["keywords"] * 3, "seed": [0, 1, 2], "status": ["done", "done", "running"],
                          "run_id": ["r0", "r1", "r2"], "step": [None, None, 1], "message": ["", "", "step 1"]})
    t0, f0 = pair(200, 180, 170, 168)
    t1, f1 = pair(200, 180, 160, 158)
    finals = {f"r{i}": noise.FinalIntervals(noise.measured(None, outcomes(t)), noise.measured(None, outcomes(f)),
                                            noise.compare(noise.measured(None, outcomes(f)),
                                                          noise.measured(None, outcomes(t)), "final", "teacher"))
              for i, (t, f) in enumerate(((t0, f0), (t1, f1)))}
    rows = study_view.with_results(study_view.cell_rows(cells), finals)
    by_run = rows.set_index("run")
    assert by_run.loc["r0", "final acc [95 %]"] == str(accuracy_of(outcomes(f0)))
    assert by_run.loc["r2", "final acc [95 %]"] == ""
    assert by_run.loc["r1", "final − teacher"].startswith("-0.100 [")
    seeds = study_view.over_seeds_table(cells, finals)
    assert seeds["seeds"].tolist() == [2]
    assert seeds["final acc over seeds [95 %]"].iloc[0].startswith("0.825 [") and "2 seeds" in \
        seeds["final acc over seeds [95 %]"].iloc[0]


def test_cli_tables_print_intervals(tmp_path):
    """`python -m core run`'s steps table and `study status`'s cell table, from a store built by hand."""
    from core.cli.main import _print_steps
    from core.cli.study import _with_results
    from core.runs.store import RunStore

    store = RunStore(tmp_path)
    teacher, step1 = pair(300, 270, 240, 235)
    rid = store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy="random", config={})
    for k, c in ((0, teacher), (1, step1)):
        store.add_step(rid, k, {"n_layers": 12 - k, "test_accuracy": float(c.mean())})
        store.write_outcomes(rid, k, artifacts.TEST_OUTCOMES, outcomes(c))
    text = _print_steps(store, rid)
    diff = paired_accuracy_of(outcomes(step1), outcomes(teacher)).interval
    assert str(accuracy_of(outcomes(teacher))) in text and str(accuracy_of(outcomes(step1))) in text
    assert f"{diff.estimate:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}]" in text and "paired on the same rows" in text
    cells = pd.DataFrame({"cell_id": ["a", "b"], "status": ["done", "waiting"], "run_id": [rid, None]})
    shown = _with_results(store, cells)
    assert shown["final acc [95 %]"].tolist() == [str(accuracy_of(outcomes(step1))), ""]
    assert shown["final - teacher [95 %]"].iloc[0].startswith(f"{diff.estimate:+.3f} [")
