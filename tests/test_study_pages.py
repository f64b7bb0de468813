"""AppTest for the Studies and Paper check pages (and the study selector on Compare).

The Paper check reads reference files; until the shipped ones exist, a fixture makes them with the engine's own
functions (:mod:`core.studies.paper`) from a small synthetic profile bank (e5-small, 3 datasets, 2 seeds, 2 steps,
6 layers, where removing a boundary layer clearly hurts). The end-to-end test starts a tiny study through the
Studies page's own controls, waits for its worker process, re-attaches from the URL, finds its runs on Compare,
and shows their full-path table on the Paper check.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.config import DataConfig
from core.fusion.bank import COLUMNS, SIGNAL_COLUMNS, validate_rows
from core.pruning.config import strategy_keys
from core.runs.record import Run
from core.runs.store import RunStore
from core.signals import STRATEGIES
from core.studies import paper, records
from core.studies.config import StudyConfig
from core.studies.execute import start_study
from tests.test_app_pages import TINY_BUDGETS, TINY_DATA, array, assert_clean, chart_titles, charts, texts
from ui import paper_plots, study_view

ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT / "pages"
DATASETS = ("trec", "bbc-news", "rotten-tomatoes")
STUDY_TIMEOUT_S = 300


def page(name: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=120)
    at.session_state["sel_model"] = "tiny-bert"
    at.session_state["sel_dataset"] = "keywords"
    at.session_state["budgets"] = dict(TINY_BUDGETS)
    return at


# ------------------------------------------------------------------------------------------ fixtures
def synthetic_bank() -> pd.DataFrame:
    """Bank rows along the oracle's own path: random signals; removing layer 0 or 5 costs ~30 points, the middle
    layers a few (which middle layer is best differs per dataset)."""
    rng = np.random.default_rng(0)
    rows = []
    for d, dataset in enumerate(DATASETS):
        for seed in (0, 1):
            removed: list[int] = []
            for step in (1, 2):
                remaining = [layer for layer in range(6) if layer not in removed]
                acc = {layer: float(np.clip((0.55 if layer in (0, 5) else 0.86 - 0.03 * ((layer + d) % 4))
                                            - 0.02 * step + rng.normal(0, 0.005), 0, 1)) for layer in remaining}
                for pos, layer in enumerate(remaining):
                    row = {"model": "e5-small", "dataset": dataset, "seed": seed, "run_id": f"{dataset}-{seed}",
                           "step": step, "layer": pos, "original_layer": layer, "n_layers": len(remaining),
                           "n_original": 6, "removed_so_far": json.dumps(removed), "oracle_accuracy": acc[layer],
                           "oracle_loss": 1.0 - acc[layer], "data_config": "{}", "teacher_fingerprint": "synthetic",
                           "code_version": "test"}
                    row.update({s: float(rng.normal()) for s in SIGNAL_COLUMNS})
                    rows.append(row)
                removed.append(max(acc, key=acc.get))
    return validate_rows(pd.DataFrame(rows)[list(COLUMNS)])


def _fusion_ready() -> bool:
    from core.fusion import FusionConfig

    return "explain" in FusionConfig.__dataclass_fields__  # one_step_table asks for FusionConfig(explain=False)


def make_reference(folder: Path, bank: pd.DataFrame, full: pd.DataFrame | None = None) -> list[str]:
    strategies = (*STRATEGIES, "rf_fusion", "lr_fusion") if _fusion_ready() else tuple(STRATEGIES)
    table = paper.one_step_table(bank, strategies)
    if "best_accuracy" not in table.columns:  # the oracle's best accuracy per step, straight from the bank
        best = bank.groupby(["model", "dataset", "seed", "step"])["oracle_accuracy"].max().rename("best_accuracy")
        table = table.merge(best.reset_index(), on=["model", "dataset", "seed", "step"])
    summary = paper.summarise_one_step(table)
    claims = paper.claims(summary, table, full, budget="synthetic test bank (6 layers, 2 steps)")
    paper.write_reference(table, summary, full, claims, folder, meta={"budget": "synthetic test bank"})
    return list(strategies)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("reference")
    return folder, make_reference(folder, synthetic_bank())


# ------------------------------------------------------------------------------------------ paper check
def test_paper_page_shows_claims_heatmap_regret_and_the_oracle_path(reference, monkeypatch):
    folder, strategies = reference
    monkeypatch.setenv("PRUNE_REFERENCE_DIR", str(folder))
    at = page("paper").run()
    assert_clean(at)
    claims = at.table[0].value
    assert list(claims.columns) == ["The paper says", "We measured", "Noise", "Measured on"]
    assert len(claims) == 7
    one_step = claims["Measured on"].str.startswith("one-step")
    assert one_step.sum() == 5 and claims.loc[one_step, "Measured on"].str.contains(" 2 seed\\(s\\)").all()
    # without a full-path study its claims say so and carry no seeds, never a borrowed number
    assert not claims.loc[~one_step, "Measured on"].str.contains("seed").any()
    assert claims.loc[~one_step, "We measured"].str.startswith("not measured yet").all()
    assert any("7 of 9" in c for c in claims["The paper says"])
    heat = next(c for c in charts(at) if c["layout"]["title"]["text"].startswith("Rank per dataset"))
    z = np.array(array(heat["data"][0]["z"]), dtype=float)
    assert z.shape == (len(strategies), len(DATASETS))
    assert sorted(z[:, 0].tolist()) == list(range(1, len(strategies) + 1))  # every strategy ranked on a dataset
    bars = next(c for c in charts(at) if c["layout"]["title"]["text"].startswith("Mean regret over 3 datasets"))
    assert len(array(bars["data"][0]["y"])) == len(strategies)
    winners = at.dataframe[0].value
    assert len(winners) == len(DATASETS) and "winner" in winners.columns
    # no full path yet: the page says so and draws the oracle's own path per dataset
    shown = texts(at)
    assert "has not been measured yet" in shown and "2 seeds" in shown and "synthetic test bank" in shown
    oracle_paths = [t for t in chart_titles(at) if t.endswith("the oracle's path")]
    assert len(oracle_paths) == len(DATASETS)
    path = next(c for c in charts(at) if c["layout"]["title"]["text"] == oracle_paths[0])
    oracle = next(t for t in path["data"] if t["name"] == "Oracle (measured best)")
    assert array(oracle["x"]) == [5, 4]  # layers left after steps 1 and 2
    assert min(array(oracle["y"])) > 0.75  # the oracle never removes a boundary layer here


def test_paper_page_without_files_says_how_to_make_them(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNE_REFERENCE_DIR", str(tmp_path / "nothing"))
    at = page("paper").run()
    assert not at.exception
    assert "python -m core study paper" in texts(at) and "missing" in texts(at)
    assert not charts(at)


def test_paper_page_with_a_damaged_file_names_it(reference, tmp_path, monkeypatch):
    folder, _ = reference
    for f in folder.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "one_step_summary.csv").write_text("model,dataset\nx,y\n")
    monkeypatch.setenv("PRUNE_REFERENCE_DIR", str(tmp_path))
    at = page("paper").run()
    assert not at.exception
    shown = texts(at)
    assert "one_step_summary.csv" in shown and "lacks the column" in shown and "python -m core study paper" in shown
    (tmp_path / "one_step_summary.csv").write_text((folder / "one_step_summary.csv").read_text())
    (tmp_path / "claims.json").write_text("{not json")
    with pytest.raises(paper_plots.ReferenceFilesError, match="claims.json"):
        paper_plots.load_reference(tmp_path)


# ------------------------------------------------------------------------------------------ studies: view helpers
def test_counts_and_cell_rows_put_running_cells_first():
    cells = pd.DataFrame({"cell_id": list("abcd"), "strategy": ["top_down", "oracle", "random", "rf_fusion"],
                          "model": "tiny-bert", "dataset": "keywords", "seed": 0,
                          "status": ["done", "running", "waiting", "failed"], "run_id": ["r1", "r2", None, "r4"],
                          "step": [None, 2, None, None], "message": ["", "Fine-tuning", "", ""]})
    c = study_view.counts(cells)
    assert c == {"done": 1, "running": 1, "waiting": 1, "failed": 1, "total": 4}
    assert study_view.fraction_done(c) == 0.25
    rows = study_view.cell_rows(cells)
    assert list(rows["status"]) == ["running", "waiting", "done", "failed"]
    assert rows["strategy"].iloc[0] == "Oracle (measured best)" and rows["step"].iloc[0] == 2
    assert "background-color" in study_view.status_style("failed") and study_view.status_style("odd") == ""


def test_estimate_scales_finished_runs_and_says_when_it_cannot():
    target = {"data": {"train_cap": 200}, "layers_to_remove": 2, "step_epochs": 1.0, "distill": False}
    none = study_view.estimate([], "tiny-bert", 4, target)
    assert none.seconds is None and "No finished tiny-bert run" in none.text
    runs = [{"kind": "prune", "status": "done", "model": "tiny-bert", "cell_id": None,
             "config": {"data": {"train_cap": 100}, "layers_to_remove": 2, "step_epochs": 1.0, "distill": False},
             "summary": {"timings_s": {"total": t}}} for t in (10.0, 20.0, 30.0)]
    runs.append({**runs[0], "model": "e5-small", "summary": {"timings_s": {"total": 1e6}}})  # another model
    est = study_view.estimate([Run.from_dict({"id": f"r{i}", "dataset": "keywords", "created_at": 0.0, **r})
                               for i, r in enumerate(runs)], "tiny-bert", 4, target)  # rows of the runs table
    assert est.runs_used == 3 and est.per_cell_s == pytest.approx(40.0)  # median 20 s, twice the rows
    assert est.seconds == pytest.approx(160.0) and "upper bound" in est.text


# ------------------------------------------------------------------------------------------ studies: page
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _tiny_study(**kw: object) -> StudyConfig:
    data = DataConfig(**{k: v for k, v in TINY_DATA.items() if k != "seed"})
    return StudyConfig(**{"name": "tiny", "models": ("tiny-bert",), "datasets": ("keywords",),
                          "strategies": ("top_down", "random"), "layers_to_remove": 1, "step_epochs": 0.5,
                          "distill": False, "calibration_size": 32, "data": data, **kw})


def test_studies_page_without_studies_invites_one(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNE_STORE_DIR", str(tmp_path))
    at = page("study").run()
    assert_clean(at)
    assert "No study yet" in texts(at)
    assert at.multiselect(key="study_strategies").value == list(strategy_keys())  # all 18 by default
    assert "No finished tiny-bert run" in texts(at)


def test_an_interrupted_study_offers_resume_and_a_queued_one_cancels(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNE_STORE_DIR", str(tmp_path))
    store = RunStore(tmp_path)
    dead = start_study(store, _tiny_study(name="crashed"), profiles=pd.DataFrame())
    records.set_status(store, dead.id, "running", executor="local", pid=_dead_pid())
    at = page("study")
    at.query_params["study"] = dead.id
    at.run()
    assert_clean(at)
    assert records.get_study(store, dead.id).status == "interrupted"
    assert "Interrupted" in texts(at) and [b.label for b in at.button if b.key == "study_resume"] == ["Resume"]
    assert {m.label: m.value for m in at.metric}["Waiting"] == "2"

    queued = start_study(store, _tiny_study(name="queued"), profiles=pd.DataFrame())  # no worker: cancels at once
    at = page("study")
    at.query_params["study"] = queued.id
    at.run()
    at.button(key="study_cancel").click().run()
    assert not at.exception
    assert records.get_study(store, queued.id).status == "cancelled"
    assert "Cancelled" in texts(at)
    at.selectbox(key="study_pick").set_value(dead.id).run()  # earlier studies: pick one to attach
    assert not at.exception and at.query_params["study"] == dead.id and "crashed" in texts(at)


def test_start_a_study_from_the_page_watch_it_finish_and_find_it_on_compare_and_paper(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNE_STORE_DIR", str(tmp_path))
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # the worker process inherits it (see app.py)
    store = RunStore(tmp_path)
    at = page("study").run()
    at.multiselect(key="study_datasets").set_value(["keywords"])
    at.multiselect(key="study_strategies").set_value(["oracle", "top_down", "rf_fusion"])
    at.multiselect(key="study_seeds").set_value([0])
    at.number_input(key="study_rows").set_value(TINY_DATA["train_cap"])
    at.number_input(key="study_layers").set_value(1)
    at.number_input(key="study_epochs").set_value(0.5)
    at.number_input(key="study_kd").set_value(0.5)
    at.text_input(key="study_name").set_value("tiny grid")
    at.run()
    assert "3 cell(s)" in texts(at)
    at.button(key="study_start").click().run()
    assert_clean(at)
    study_id = at.query_params["study"]
    study = records.get_study(store, study_id)
    assert study.name == "tiny grid" and study.config.strategies == ("oracle", "top_down", "rf_fusion")
    assert study.config.data.train_cap == TINY_DATA["train_cap"] and study.config.layers_to_remove == 1
    deadline = time.monotonic() + STUDY_TIMEOUT_S
    try:
        while records.get_study(store, study_id).status in ("queued", "running"):
            assert time.monotonic() < deadline, records.cell_table(store, records.get_study(store, study_id))
            time.sleep(2)
    finally:  # never leave a worker behind: it stops within one batch
        if records.get_study(store, study_id).status in ("queued", "running"):
            records.request_cancel(store, study_id)
    assert records.get_study(store, study_id).status == "done", records.get_study(store, study_id).error

    again = page("study")  # a reload (or a second tab) re-attaches from the URL
    again.query_params["study"] = study_id
    again.run()
    assert_clean(again)
    assert {m.label: m.value for m in again.metric}["Done"] == "3 / 3"
    assert "Finished" in texts(again) and "tiny grid" in texts(again)
    frames = [d.value.data if hasattr(d.value, "data") else d.value for d in again.dataframe]
    cells = next(f for f in frames if "strategy" in f.columns and "message" in f.columns)
    assert len(cells) == 3 and set(cells["status"]) == {"done"}
    # every finished cell: its final accuracy with its 95 % interval and its paired difference to the teacher
    assert all(re.fullmatch(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", v) for v in cells["final acc [95 %]"])
    assert all(re.match(r"[+-]\d\.\d{3} \[", v) for v in cells["final − teacher"]) and "95% intervals" in texts(again)

    compare = page("compare")
    compare.run()
    compare.selectbox(key="cmp_study").set_value(study_id).run()
    assert_clean(compare)
    table = compare.dataframe[0].value
    assert len(table) == 3 and set(table["study"]) == {"tiny grid"}
    ranking = next(m.value for m in compare.markdown if "highest: " in m.value)  # the study's rank order
    assert "(paired)" in ranking and ("within noise" in ranking or "ahead by" in ranking)

    full = paper.full_path_table(store, [study_id])
    assert len(full) == 3 and full["after_kd"].notna().all()
    folder = tmp_path / "reference"
    bank = synthetic_bank()
    make_reference(folder, bank, full)
    monkeypatch.setenv("PRUNE_REFERENCE_DIR", str(folder))
    check = page("paper").run()
    check.radio(key="paper_model").set_value("tiny-bert").run()
    assert_clean(check)
    assert "No one-step results for tiny-bert" in texts(check)
    assert any(t.endswith(": full path") for t in chart_titles(check))
    assert "Rank after KD per dataset (1 = most accurate)" in chart_titles(check)
    assert any(t.startswith("After KD minus the teacher") for t in chart_titles(check))
    gain = paper_plots.kd_gain(full, "tiny-bert").set_index("strategy")
    expect = 100 * (full["after_kd"] - full["teacher_accuracy"])
    assert np.allclose(sorted(gain["gain"]), sorted(expect))
    assert "has not been measured yet" not in texts(check)
    assert "160 training rows" in texts(check)


def test_router_shows_the_studies_and_paper_pages_with_the_sidebar(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNE_STORE_DIR", str(tmp_path))
    monkeypatch.setenv("PRUNE_REFERENCE_DIR", str(tmp_path / "no-reference"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    for name, title in (("study", "Studies"), ("paper", "Paper check")):
        at.switch_page(f"pages/{name}.py").run()
        assert not at.exception, (name, [e.value for e in at.exception])
        assert at.title[0].value == title
        assert [s.label for s in at.sidebar.selectbox][:2] == ["Model", "Dataset"], name
        assert at.info, name  # the empty state says what to do


def test_claims_about_fusion_say_not_measured_when_the_bank_holds_one_dataset():
    bank = synthetic_bank()
    one = bank[bank["dataset"] == bank["dataset"].iloc[0]]
    table = paper.one_step_table(one, (*STRATEGIES, "rf_fusion", "lr_fusion"))
    assert not table["strategy"].isin(["rf_fusion", "lr_fusion"]).any()  # never scored without LODO
    claims = {c["key"]: c["ours"] for c in paper.claims(paper.summarise_one_step(table), table)}
    assert claims["rf_first"] == claims["rf_beats_lr"] == paper.NO_FUSION
    assert "nan" not in " ".join(claims.values())


def test_home_shows_the_bank_and_the_one_step_claims_on_first_open(reference, tmp_path, monkeypatch):
    from core.fusion.bank_build import write_bank

    folder, _ = reference
    bank_folder = tmp_path / "bank"
    write_bank(synthetic_bank(), bank_folder, study_file="test")
    monkeypatch.setenv("PRUNE_REFERENCE_DIR", str(folder))
    monkeypatch.setenv("PRUNE_BANK_DIR", str(bank_folder))
    at = AppTest.from_file(str(PAGES / "home.py"), default_timeout=120).run()
    assert_clean(at)
    shown = texts(at)
    assert "Profile bank** (" in shown and f"{len(synthetic_bank()):,} layer-steps" in shown
    assert "leak-free splits" in shown  # the manifest says how the bank was made (write_bank: this split version)
    claims = json.loads((folder / paper.CLAIMS_FILE).read_text())["claims"]
    home = [c for c in claims if c["key"] in paper_plots.HOME_CLAIMS]
    assert shown.count("*Paper:*") == len({c["paper"] for c in home}) >= 4  # a statement measured twice: once
    assert shown.count("*Here* (") == len(home)
    assert "*Here* (one-step, " in shown
    # no bank and no reference files: Home says so and still draws
    monkeypatch.setenv("PRUNE_REFERENCE_DIR", str(tmp_path / "nothing"))
    monkeypatch.setenv("PRUNE_BANK_DIR", str(tmp_path / "nothing"))
    at = AppTest.from_file(str(PAGES / "home.py"), default_timeout=120).run()
    assert_clean(at)
    shown = texts(at)
    assert "No profile bank" in shown and "*Paper:*" not in shown


def test_remaking_the_reference_from_a_newer_store_keeps_the_rows_measured_before(tmp_path):
    """A study's store does not outlive its session: the shipped full-path table grows, the store wins on a run it
    re-measured, and ranks are recomputed over the union."""
    def rows(ids, dataset, after_kd):
        return pd.DataFrame({"run_id": ids, "model": "e5-small", "dataset": dataset, "strategy": ["a", "b"][:len(ids)],
                             "seed": 0, "train_cap": 500, "layers_removed": 6, "teacher_accuracy": 0.9,
                             "after_kd": after_kd, "ratio": 1.5})
    shipped = paper.merge_full_path(rows(["r1", "r2"], "trec", [0.8, 0.7]), None)
    paper.write_reference(pd.DataFrame(), pd.DataFrame(), shipped, [], tmp_path)
    fresh = rows(["r2", "r3"], "trec", [0.9, 0.6]).assign(dataset=["trec", "bbc-news"])
    merged = paper.merge_full_path(paper.load_full_path(tmp_path), fresh)
    assert sorted(merged["run_id"]) == ["r1", "r2", "r3"]
    trec = merged[merged["dataset"] == "trec"].set_index("run_id")
    assert trec.loc["r2", "after_kd"] == 0.9 and trec.loc["r2", "rank_after_kd"] == 1
    assert trec.loc["r1", "rank_after_kd"] == 2
    assert paper.merge_full_path(None, pd.DataFrame()) is None
    paper.write_reference(pd.DataFrame(), pd.DataFrame(), None, [], tmp_path)
    assert paper.load_full_path(tmp_path) is None  # a table the claims no longer describe is removed


def test_full_path_claims_heatmap_and_focus_follow_the_ranks_after_kd():
    runs = pd.DataFrame({"run_id": list("abcdef"), "model": "e5-small", "dataset": ["trec"] * 3 + ["bbc-news"] * 3,
                         "strategy": ["rf_fusion", "lr_fusion", "energy"] * 2, "seed": 0, "train_cap": 500,
                         "layers_removed": 6, "teacher_accuracy": [0.9] * 3 + [0.95] * 3,
                         "after_kd": [0.91, 0.85, 0.88, 0.90, 0.93, 0.94], "ratio": 1.6})
    full = paper.merge_full_path(runs, None)
    bank = synthetic_bank()
    table = paper.one_step_table(bank, tuple(STRATEGIES))
    claims = {c["key"]: c for c in paper.claims(paper.summarise_one_step(table), table, full)}
    assert "most accurate of 3 strategies on 1 of 2 datasets" in claims["rf_first_full"]["ours"]
    assert "bbc-news 3" in claims["rf_first_full"]["ours"] and claims["rf_first_full"]["measure"] == "full path"
    assert "above its teacher on 1 of 2" in claims["kd_beats_teacher"]["ours"]
    m = paper_plots.full_rank_matrix(full, "e5-small")
    assert m.loc["rf_fusion", "trec"] == 1 and m.loc["rf_fusion", "bbc-news"] == 3
    focus, teacher = paper_plots.depth_focus(full, "bbc-news")
    assert "energy" in focus and "oracle" in focus and teacher == pytest.approx(0.95)
    fig = paper_plots.depth_figure(pd.DataFrame({"dataset": "x", "strategy": ["energy", "taylor"], "layers": [11, 11],
                                                 "accuracy": [0.8, 0.7], "seeds": 1}), "t", "acc", focus={"energy"},
                                   teacher=0.9)
    assert [tr.visible for tr in fig.data] == [True, "legendonly"]


def test_a_dataset_measured_at_a_second_seed_is_averaged_and_labelled_as_a_seed_range():
    """The full path is grown a dataset and a seed at a time, so the table can mix seed counts: every claim and
    budget must say "1-2 seeds per dataset", and a rank that is first at one seed only is not "first"."""
    runs = pd.DataFrame({"run_id": list("abcdefghi"), "model": "e5-small",
                         "dataset": ["trec"] * 6 + ["bbc-news"] * 3,
                         "strategy": ["rf_fusion", "lr_fusion", "energy"] * 3, "seed": [0] * 3 + [1] * 3 + [0] * 3,
                         "train_cap": 500, "val_cap": 250, "max_length": 32, "layers_removed": 6,
                         "teacher_accuracy": [0.9] * 6 + [0.95] * 3,
                         "after_kd": [0.91, 0.85, 0.88, 0.86, 0.87, 0.89, 0.96, 0.93, 0.94], "ratio": 1.6})
    full = paper.merge_full_path(runs, None)
    assert paper.seed_span(full) == (1, 2)
    budget = paper.full_budget(full)
    assert budget.endswith("then KD; 1-2 seeds per dataset") and "500 training rows" in budget
    table = paper.one_step_table(synthetic_bank(), tuple(STRATEGIES))
    claims = {c["key"]: c for c in paper.claims(paper.summarise_one_step(table), table, full, full_budget=budget)}
    rf = claims["rf_first_full"]
    # TREC: rank 1 at seed 0, rank 3 at seed 1 -> mean 2, not first; BBC: first
    assert "on 1 of 2 datasets (first at every seed); its mean rank after KD: bbc-news 1, trec 2" in rf["ours"]
    assert (rf["seeds"], rf["seeds_max"]) == (1, 2)
    assert "above its teacher on 2 of 3 measured dataset-seed runs" in claims["kd_beats_teacher"]["ours"]
    shown = paper_plots.claims_frame(list(claims.values()))
    assert set(shown.loc[shown["Measurement"] == "full path", "Seeds"]) == {"1-2"}
    narrow = paper_plots.claims_shown(shown)
    assert "Seeds" not in narrow and len(narrow) == len(shown)
    assert {t for t in narrow["Measured on"] if t.startswith("full path")} and all(
        "1-2 seed(s)" in t for t in narrow["Measured on"] if t.startswith("full path"))
    m = paper_plots.full_rank_matrix(full, "e5-small")
    assert m.loc["rf_fusion", "trec"] == 2 and m.loc["lr_fusion", "trec"] == 2.5
    assert "2.5" in [t for row in paper_plots.rank_heatmap(m).data[0].text for t in row]
    trees = paper_plots.full_rank_matrix(full, "e5-small", by_tree=True)  # a seed's own winner shows
    assert trees.loc["rf_fusion", ("trec", 0)] == 1 and trees.loc["rf_fusion", ("trec", 1)] == 3
    heat = paper_plots.rank_heatmap(trees, lambda d: {"trec": "TREC questions (6 coarse types)"}.get(d, d)).data[0]
    assert list(heat.x) == ["bbc-news · s0", "TREC questions · s0", "TREC questions · s1"]
    assert heat.customdata[0][2] == "TREC questions (6 coarse types), seed 1"
    assert paper.seeds_text(2) == "2 seeds" and paper.seeds_text(1, 1) == "1 seed"
