"""The full-path study's paired comparisons (issue 29 item 7): per-example outcomes kept in the reference files,
pairing only on the same teacher, the recorded pack's runs joining the table, the tests over datasets and the
Paper check's section. Tiny synthetic stores and tables only: nothing is trained."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.runs.store import RunStore
from core.studies import full_path_agreement as fpa
from core.studies import full_path_outcomes as fpo
from core.studies import full_path_tests as fpt
from core.studies.config import Cell, StudyConfig

N = 200  # test rows per tree


def outcomes_frame(correct: np.ndarray, labels: np.ndarray | None = None, loss: float = 0.1) -> pd.DataFrame:
    """Per-example outcomes as a run stores them: right where ``correct`` is 1 (the label, else the next class)."""
    labels = np.arange(len(correct)) % 3 if labels is None else labels
    pred = np.where(np.asarray(correct, dtype=bool), labels, (labels + 1) % 3)
    return pd.DataFrame({"example": np.arange(len(correct), dtype=np.int32), "label": labels.astype(np.int16),
                         "pred": pred.astype(np.int16), "loss": np.full(len(correct), loss, dtype=np.float32),
                         "kl_to_teacher": np.zeros(len(correct), dtype=np.float32)})


def add_run(store: RunStore, strategy: str, teacher: np.ndarray, before: np.ndarray, after: np.ndarray, *,  # noqa: PLR0913 (a hand-built run's fields)
            dataset: str = "trec", seed: int = 0, cap: int = 2000, teacher_key: str = "tk", cell: str | None = None,
            config: dict | None = None, study: str = "study-1", summary: dict | None = None,
            model: str = "e5-small") -> str:
    """A finished full-path run in ``store`` with the outcomes a real one keeps (teacher at step 0, the last step's
    test and kd_test), written by hand."""
    config = config or {"seed": seed, "data": {"train_cap": cap, "val_cap": 1000, "test_cap": 1000, "max_length": 32}}
    rid = store.create_run(kind="prune", model=model, dataset=dataset, strategy=strategy, config=config,
                           group_id=study, cell_id=cell or f"cell-{dataset}-{seed}-{strategy}-{cap}")
    store.add_step(rid, 0, {"n_layers": 12, "test_accuracy": float(teacher.mean()), "teacher_key": teacher_key})
    store.add_step(rid, 1, {"n_layers": 11, "test_accuracy": float(before.mean())})
    store.write_outcomes(rid, 0, "test", outcomes_frame(teacher))
    store.write_outcomes(rid, 1, "test", outcomes_frame(before))
    store.write_outcomes(rid, 1, "kd_test", outcomes_frame(after))
    store.finish(rid, "done", summary=summary or {
        "teacher": {"test_accuracy": float(teacher.mean())}, "removed_order": [3],
        "before_kd": {"test_accuracy": float(before.mean())}, "after_kd": {"test_accuracy": float(after.mean())},
        "ratio": 1.0})
    return rid


def ones(n: int = N, wrong: int = 0, offset: int = 0) -> np.ndarray:
    """0/1 correctness on ``n`` rows, wrong on ``wrong`` rows starting at ``offset``."""
    c = np.ones(n, dtype=int)
    c[offset:offset + wrong] = 0
    return c


# ------------------------------------------------------------------------------------------ pairing, merging
def test_paired_difference_per_tree_on_hand_built_outcomes(tmp_path):
    store = RunStore(tmp_path / "store")
    teacher = ones(wrong=10)
    add_run(store, "rf_fusion", teacher, ones(wrong=20), ones(wrong=10))  # 95 % after KD
    add_run(store, "random", teacher, ones(wrong=20), ones(wrong=30))  # 85 %: wrong on 20 more rows, never less
    full, outcomes = fpo.collect(store, tmp_path / "nothing", fresh_only=True)
    assert set(full["pairing"]) == {fpo.PAIRED} and full["teacher_outcomes"].nunique() == 1
    assert set(outcomes["stage"]) == {"teacher", "before_kd", "after_kd"}
    assert (outcomes["run_id"].str.startswith("teacher:").sum()) == N  # the teacher once per tree
    tests, trees = fpt.full_path_tests(full, outcomes, permutations=200)
    row = trees[(trees["stage"] == "after_kd") & (trees["a"] == "rf_fusion") & (trees["b"] == "random")].iloc[0]
    assert row["estimate"] == pytest.approx(10.0)  # 95 % - 85 %, in points
    assert (row["a_only"], row["b_only"]) == (20, 0) and row["low"] > 0 and row["verdict"] == "beyond noise"
    before = trees[(trees["stage"] == "before_kd") & (trees["a"] == "rf_fusion")].iloc[0]
    assert before["estimate"] == 0 and before["verdict"] == "within noise"  # identical before KD
    over = tests[(tests["stage"] == "after_kd") & (tests["a"] == "rf_fusion")].iloc[0]
    assert (over["datasets"], over["seeds"], over["trees"]) == (1, 1, 1)
    # one dataset: the sign-flip test cannot say more than p = 1, so the verdict stays within noise
    assert over["sign_flip_p"] == 1.0 and over["verdict"] == "within noise"


def test_sign_flip_over_dataset_means_on_a_known_case(tmp_path):
    """RF fusion ahead on every one of 4 datasets: the exact two-sided sign-flip p is 2 / 2**4 = 0.125 (all plus or
    all minus), so it stays within noise however clear each tree is; on 6 datasets p = 2 / 64 < 0.05."""
    for n_datasets, p in ((4, 0.125), (6, 2 / 64)):
        store = RunStore(tmp_path / f"store{n_datasets}")
        for d in range(n_datasets):
            teacher = ones(wrong=5)
            add_run(store, "rf_fusion", teacher, ones(wrong=10), ones(wrong=10 + d), dataset=f"d{d}")
            add_run(store, "random", teacher, ones(wrong=10), ones(wrong=30 + d, offset=0), dataset=f"d{d}")
        full, outcomes = fpo.collect(store, tmp_path / "nothing", fresh_only=True)
        tests, _ = fpt.full_path_tests(full, outcomes, permutations=200)
        r = tests[(tests["stage"] == "after_kd") & (tests["a"] == "rf_fusion") & (tests["b"] == "random")].iloc[0]
        assert r["sign_flip_p"] == pytest.approx(p) and r["favour_a"] == n_datasets
        assert r["estimate"] == pytest.approx(10.0)
        assert r["verdict"] == ("beyond noise" if p < 0.05 else "within noise")
        if p >= 0.05:
            assert isinstance(r["power"], str) and "datasets" in r["power"]


def test_a_datasets_seeds_are_averaged_before_the_test_over_datasets(tmp_path):
    """Seeds land one tree at a time, so datasets carry 1 or 2 seeds for a while: a dataset's seeds are averaged
    first (4 datasets weigh the same, d0's two seeds half each), the rows say 1-2 seeds, and the power statement
    uses the seed variance the repeated dataset measured."""
    store = RunStore(tmp_path / "store")
    for d, seed, extra in ((0, 0, 0), (0, 1, 10), (1, 0, 0), (2, 0, 0), (3, 0, 0)):
        teacher = ones(wrong=5)
        add_run(store, "rf_fusion", teacher, ones(wrong=10), ones(wrong=10), dataset=f"d{d}", seed=seed,
                teacher_key=f"tk{d}{seed}")
        add_run(store, "random", teacher, ones(wrong=10), ones(wrong=30 + extra), dataset=f"d{d}", seed=seed,
                teacher_key=f"tk{d}{seed}")
    full, outcomes = fpo.collect(store, tmp_path / "nothing", fresh_only=True)
    tests, trees = fpt.full_path_tests(full, outcomes, permutations=200)
    per = trees[(trees["stage"] == "after_kd") & (trees["a"] == "rf_fusion") & (trees["b"] == "random")]
    assert sorted(per["estimate"].round(6)) == [10.0, 10.0, 10.0, 10.0, 15.0]  # d0 seed 1: random wrong on 10 more rows
    r = tests[(tests["stage"] == "after_kd") & (tests["a"] == "rf_fusion") & (tests["b"] == "random")].iloc[0]
    assert r["estimate"] == pytest.approx((12.5 + 10 + 10 + 10) / 4)  # not the mean of the 5 trees (11.0)
    assert (r["trees"], r["datasets"], r["seeds"], r["seeds_max"]) == (5, 4, 1, 2)
    assert r["sign_flip_p"] == pytest.approx(0.125) and r["favour_a"] == 4 and r["verdict"] == "within noise"
    assert "5 tree(s): 4 dataset(s) × 1-2 seed(s)" in fpt._trees_text(r)


def test_a_run_with_another_teacher_is_kept_apart_not_paired(tmp_path):
    """The pack's runs of a tree join the store's only when their teacher is the same: one changed teacher
    prediction makes them two groups, said per run, and no comparison crosses them."""
    store, pack_store = RunStore(tmp_path / "store"), RunStore(tmp_path / "pack")
    teacher = ones(wrong=10)
    other = teacher.copy()
    other[100] = 0  # another teacher: one test row differs
    add_run(store, "random", teacher, ones(wrong=20), ones(wrong=30))
    add_run(store, "lr_fusion", teacher, ones(wrong=20), ones(wrong=25))
    add_run(pack_store, "rf_fusion", other, ones(wrong=20), ones(wrong=10), study="study-0")
    full, outcomes = fpo.collect(store, tmp_path / "nothing", pack=pack_store, study=_AnyStudy(), fresh_only=True)
    assert sorted(full["source"]) == ["pack", "store", "store"]
    assert full["pairing"].str.startswith("kept apart").all()
    assert "teacher" in full.loc[full["source"] == "pack", "pairing"].iloc[0]
    assert outcomes["teacher"].nunique() == 2  # both teachers' rows are kept, each once
    tests, trees = fpt.full_path_tests(full, outcomes, permutations=200)
    assert not ((trees["a"] == "rf_fusion") & (trees["b"] == "random")).any()  # RF's teacher is not random's
    # the same teacher: paired
    pack2 = RunStore(tmp_path / "pack2")
    add_run(pack2, "rf_fusion", teacher, ones(wrong=20), ones(wrong=10), study="study-0")
    full2, outcomes2 = fpo.collect(store, tmp_path / "nothing", pack=pack2, study=_AnyStudy(), fresh_only=True)
    assert set(full2["pairing"]) == {fpo.PAIRED}
    tests2, trees2 = fpt.full_path_tests(full2, outcomes2, permutations=200)
    assert ((trees2["a"] == "rf_fusion") & (trees2["b"] == "random")).sum() == 2  # after and before KD
    # a store run of the pack run's cell wins: the pack's is not added twice
    add_run(store, "rf_fusion", teacher, ones(wrong=20), ones(wrong=12))
    full3, _ = fpo.collect(store, tmp_path / "nothing", pack=pack2, study=_AnyStudy(), fresh_only=True)
    assert (full3["strategy"] == "rf_fusion").sum() == 1 and set(full3["source"]) == {"store"}


class _AnyStudy:
    """Stands in for the study: every run of the fake pack is one of its cells (recognition is tested below)."""


@pytest.fixture(autouse=True)
def _any_study(monkeypatch):
    real = fpo.study_runs

    def study_runs(pack, study):
        if isinstance(study, _AnyStudy):
            return [r.id for r in pack.list_runs(kind="prune", status="done")]
        return real(pack, study)
    monkeypatch.setattr(fpo, "study_runs", study_runs)


def test_pack_runs_are_recognised_by_their_config_and_cell_id(tmp_path):
    study = StudyConfig.from_dict({"name": "t", "models": ["tiny-bert"], "datasets": ["keywords"],
                                   "strategies": ["top_down", "rf_fusion"], "seeds": [0], "layers_to_remove": 2,
                                   "data": {"train_cap": 160, "val_cap": 48, "test_cap": 48, "max_length": 10}})
    pack = RunStore(tmp_path / "pack")
    teacher = ones(wrong=3)
    ids = {}
    for strategy, snapshot in (("top_down", ""), ("rf_fusion", "snap1")):
        cfg = study.prune_config("tiny-bert", "keywords", strategy, 0)
        cell = Cell.of(cfg, snapshot)
        config = {**cfg.to_dict(), "study_id": "s", "cell_id": cell.cell_id, "profile_snapshot": snapshot}
        ids[strategy] = add_run(pack, strategy, teacher, ones(wrong=5), ones(wrong=4), dataset="keywords",
                                cap=160, cell=cell.cell_id, config=config, model="tiny-bert")
    changed = {**study.prune_config("tiny-bert", "keywords", "top_down", 0).to_dict(), "step_epochs": 3.0}
    add_run(pack, "top_down", teacher, ones(), ones(), dataset="keywords", config=changed, model="tiny-bert",
            cell=Cell.of(study.prune_config("tiny-bert", "keywords", "top_down", 0), "").cell_id)
    cfg = study.prune_config("tiny-bert", "keywords", "top_down", 0)
    add_run(pack, "top_down", teacher, ones(), ones(), dataset="keywords", cell="not-the-cell", model="tiny-bert",
            config={**cfg.to_dict(), "study_id": "s", "cell_id": "not-the-cell", "profile_snapshot": ""})
    assert sorted(fpo.study_runs(pack, study)) == sorted(ids.values())


def test_merging_keeps_shipped_rows_and_the_fresh_row_wins(tmp_path):
    store = RunStore(tmp_path / "store")
    teacher = ones(wrong=10)
    old = add_run(store, "rf_fusion", teacher, ones(wrong=20), ones(wrong=10))
    folder = tmp_path / "ref"
    full, outcomes = fpo.collect(store, folder, fresh_only=True)
    folder.mkdir()
    full.to_csv(folder / "full_path.csv", index=False)
    fpo.write_outcomes(folder, outcomes)
    # the next session: the store holds only a new run; the shipped run and its outcomes are kept
    store2 = RunStore(tmp_path / "store2")
    new = add_run(store2, "random", teacher, ones(wrong=20), ones(wrong=30))
    full2, outcomes2 = fpo.collect(store2, folder)
    assert set(full2["run_id"]) == {old, new} and set(full2["pairing"]) == {fpo.PAIRED}
    assert {old, new} <= set(outcomes2["run_id"]) and len(outcomes2[outcomes2["stage"] == "teacher"]) == N
    # a (run, stage, example) in both: the fresh row wins, the others stay
    fresh = outcomes2[outcomes2["run_id"] == new].assign(correct=False)
    merged = fpo.merge_outcomes(outcomes2, fresh)
    assert len(merged) == len(outcomes2) and not merged.loc[merged["run_id"] == new, "correct"].any()
    assert merged.loc[merged["run_id"] == old, "correct"].sum() == outcomes2.loc[outcomes2["run_id"] == old,
                                                                                 "correct"].sum()


def test_the_spread_between_strategies_against_test_row_noise(tmp_path):
    """Equal strategies: the spread is what shuffling gives (within noise); one far worse: beyond noise."""
    rng = np.random.default_rng(0)
    for worse, verdict in ((0, "within noise"), (40, "beyond noise")):
        store = RunStore(tmp_path / f"s{worse}")
        teacher = ones(wrong=10)
        base = (rng.random(N) < 0.8).astype(int)
        for k in ("rf_fusion", "oracle", "random"):
            after = base.copy()
            if k == "random":
                after[np.flatnonzero(after)[:worse]] = 0
            add_run(store, k, teacher, base, after)
        full, outcomes = fpo.collect(store, tmp_path / "nothing", fresh_only=True)
        tests, trees = fpt.full_path_tests(full, outcomes, permutations=300)
        s = tests[(tests["a"] == fpt.SPREAD) & (tests["stage"] == "after_kd")].iloc[0]
        assert s["verdict"] == verdict and s["estimate"] == pytest.approx(100 * worse / N)
        assert fpt.choice_sentence(tests).count("**") == 2  # the plain statement, in bold
        assert ("still matters" in fpt.choice_sentence(tests)) == (verdict == "beyond noise")
        if worse:
            assert trees[(trees["a"] == fpt.SPREAD) & (trees["stage"] == "after_kd")]["worst"].iloc[0] == "random"


def test_budgets_are_never_mixed(tmp_path):
    store = RunStore(tmp_path / "store")
    teacher = ones(wrong=10)
    for cap in (500, 2000):
        add_run(store, "rf_fusion", teacher, ones(wrong=20), ones(wrong=10), cap=cap)
        add_run(store, "random", teacher, ones(wrong=20), ones(wrong=10 + cap // 100), cap=cap)
    full, outcomes = fpo.collect(store, tmp_path / "nothing", fresh_only=True)
    from core.studies.full_path import at_budget, default_cap, train_caps

    assert train_caps(full) == [2000, 500] and default_cap(full) == 2000 and len(at_budget(full)) == 2
    tests, _ = fpt.full_path_tests(full, outcomes, permutations=100)
    assert set(tests["train_cap"]) == {2000}
    r = tests[(tests["a"] == "rf_fusion") & (tests["stage"] == "after_kd")].iloc[0]
    assert r["estimate"] == pytest.approx(10.0)  # 2,000 rows only: 30 vs 10 wrong of 200
    tests500, _ = fpt.full_path_tests(full, outcomes, 500, permutations=100)
    assert tests500[(tests500["a"] == "rf_fusion") & (tests500["stage"] == "after_kd")]["estimate"].iloc[0] == \
        pytest.approx(2.5)


# ------------------------------------------------------------------------------------------ the page
def test_paper_page_shows_the_full_path_comparisons(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.test_app_pages import assert_clean, chart_titles, texts
    from tests.test_study_pages import PAGES, make_reference, synthetic_bank

    store = RunStore(tmp_path / "store")
    rng = np.random.default_rng(1)
    order = (("rf_fusion", 10), ("oracle", 12), ("random", 30), ("top_down", 15))
    # TREC's seed 1 reverses the order: one seed's winner is not the next seed's
    for d, seed, wrongs in [(d, 0, order) for d in ("trec", "bbc-news", "rotten-tomatoes")] + \
            [("trec", 1, tuple(zip([k for k, _ in order], (30, 15, 10, 12))))]:
        teacher = (rng.random(N) < 0.9).astype(int)
        for k, wrong in wrongs:
            after = teacher.copy()
            after[np.flatnonzero(after)[:wrong]] = 0
            add_run(store, k, teacher, after, after, dataset=d, seed=seed)
    full, outcomes = fpo.collect(store, tmp_path / "nothing", fresh_only=True)
    folder = tmp_path / "ref"
    make_reference(folder, synthetic_bank(), full)
    fpo.write_outcomes(folder, outcomes)
    fpt.write_tests(folder, *fpt.full_path_tests(full, outcomes, permutations=200))
    fpa.write_agreement(folder, fpa.agreement(full, permutations=200))
    monkeypatch.setenv("PRUNE_REFERENCE_DIR", str(folder))
    at = AppTest.from_file(str(PAGES / "paper.py"), default_timeout=120)
    at.run()
    assert_clean(at)
    shown = texts(at)
    assert "Does the choice of layers still matter after recovery?" in shown
    assert "2,000 training rows" in shown and "4 paired tree(s): 3 dataset(s) × 1-2 seed(s)" in shown
    assert "Does the order repeat?" in shown and "Kendall's W = " in shown and "TREC questions -1.00" in shown
    assert "Rank after KD per tree (1 = most accurate)" in chart_titles(at)  # one column per seed at first
    at.toggle(key="paper_full_by_tree").set_value(False).run()
    assert "Rank after KD per dataset (mean over seeds; 1 = most accurate)" in chart_titles(at)
    assert "The choice of layers still matters after recovery" in shown  # 20 points of spread: beyond noise
    table = next(d.value for d in at.dataframe if "A − B after KD (points)" in d.value.columns)
    assert table["A"].iloc[0].startswith("the most accurate strategy") and len(table) == 1 + 4  # spread + 4 pairs
    assert "Random (one seeded draw per run)" in set(table["B"])
    assert any(t.startswith("RF fusion minus each other strategy, after KD") for t in chart_titles(at))
    at.radio(key="paper_full_stage").set_value("before_kd").run()
    assert any(t.startswith("RF fusion minus each other strategy, before KD") for t in chart_titles(at))
