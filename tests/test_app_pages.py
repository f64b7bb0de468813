"""AppTest for every page of the dashboard, on a temporary run store holding real runs of the tiny model.

The session fixture makes two real pruning runs with the engine's own code (``core.jobs.execute.execute_run``)
on the tiny random 12-layer BERT and the synthetic keywords task; every page is then run on its own with
``streamlit.testing.v1.AppTest`` (session state seeded), plus the router (``app.py``), and one test starts
a run through the Live page's own controls, waits for the worker, and finds the result on the Live and
Compare pages.
"""

from __future__ import annotations

import base64
import colorsys
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from core.config import DataConfig
from core.jobs.execute import execute_run
from core.pruning.config import PruneConfig
from core.runs import artifacts
from core.runs.store import RunStore
from core.stats import accuracy_of, paired_accuracy_of
from core.train import DistillConfig
from ui.state import TINY_DEMO

ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT / "pages"
#: the Home page's tiny demo data sizes: every tiny run here (and the browser test's demo) shares one cached teacher
TINY_DATA = {"train_cap": TINY_DEMO["train_cap"], "val_cap": TINY_DEMO["val_cap"], "test_cap": TINY_DEMO["test_cap"],
             "max_length": TINY_DEMO["max_length"], "seed": 0}
TINY_BUDGETS = {**TINY_DATA, "layers_to_remove": 2, "step_epochs": 0.5, "calibration_size": 32, "distill": True,
                "kd_epochs": 1.0, "accuracy_floor": 0.0}
RUN_TIMEOUT_S = 240
#: an accuracy with its 95 % interval as the pages print it: ``0.894 [0.882, 0.905]``
INTERVAL = re.compile(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]")


def tiny_config(strategy: str, layers: int = 2) -> dict:
    return PruneConfig(model="tiny-bert", dataset="keywords", strategy=strategy, layers_to_remove=layers,
                       step_epochs=TINY_BUDGETS["step_epochs"], calibration_size=TINY_BUDGETS["calibration_size"],
                       kd=DistillConfig(epochs=TINY_BUDGETS["kd_epochs"]),
                       data=DataConfig(**TINY_DATA)).to_dict()


@pytest.fixture(scope="session")
def app_store(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A store with two finished tiny runs (random-forest fusion and top-down) on the keywords task."""
    root = tmp_path_factory.mktemp("app-store")
    store = RunStore(root)
    ids = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model gains nothing from a second thread, and a busy box loses a lot
    try:
        for strategy in ("rf_fusion", "top_down"):
            run_id = store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy=strategy,
                                      config=tiny_config(strategy))
            status = execute_run(store, run_id)
            assert status == "done", store.get_run(run_id).error
            ids[strategy] = run_id
    finally:
        torch.set_num_threads(threads)
    return root, ids


@pytest.fixture()
def store_env(app_store, monkeypatch) -> tuple[Path, dict[str, str]]:
    monkeypatch.setenv("PRUNE_STORE_DIR", str(app_store[0]))
    return app_store


def page(name: str, **session: object) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=90)
    at.session_state["sel_model"] = "tiny-bert"
    at.session_state["sel_dataset"] = "keywords"
    at.session_state["budgets"] = dict(TINY_BUDGETS)
    for key, value in session.items():
        at.session_state[key] = value
    return at


def texts(at: AppTest) -> str:
    """Every piece of text the page showed, joined (markdown, captions, titles, alerts, metrics)."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "success", "warning", "error"):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(parts)


def charts(at: AppTest) -> list[dict]:
    return [json.loads(node.proto.spec) for node in at.get("plotly_chart")]


def array(value: object) -> list:
    """A Plotly trace array as a list (Plotly sends numeric arrays as typed base64 ``bdata``)."""
    if isinstance(value, dict) and "bdata" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if isinstance(shape, str):  # "12, 12"
            shape = [int(n) for n in shape.split(",")]
        return flat.reshape(shape).tolist() if shape else flat.tolist()
    return list(value)


def chart_titles(at: AppTest) -> list[str]:
    return [((c["layout"].get("title") or {}).get("text") or "") for c in charts(at)]


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


# ------------------------------------------------------------------------------------------ pages
def test_home_invites_a_first_run_and_lists_runs(store_env):
    _, ids = store_env
    at = page("home").run()
    assert_clean(at)
    labels = [b.label for b in at.button]
    assert "Start my first pruning run" in labels and "Run the tiny demo" in labels
    shown = texts(at)
    assert "Layer-pruning explorer" in shown
    assert all(run_id[-6:] in shown for run_id in ids.values())
    recent = [m.value for m in at.markdown if ids["rf_fusion"][-6:] in m.value][0]
    assert "final test accuracy" in recent and INTERVAL.search(recent) and "teacher" in recent


def test_home_empty_store_explains_the_next_step(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNE_STORE_DIR", str(tmp_path / "empty"))
    at = page("home").run()
    assert_clean(at)
    assert "No runs yet" in texts(at)


@pytest.mark.parametrize("name,params", [("home", {}), ("runs", {}), ("live", {"run": "20990101-000000-nosuch"}),
                                         ("merging", {"run": "20990101-000000-nosuch"}), ("study", {}),
                                         ("compare", {}), ("playground", {})])
def test_a_page_never_shows_the_machines_path_of_the_store(store_env, name, params):
    """The store sits outside the repository here (a temporary folder): the pages name it by its last parts only,
    also in the errors that say a run from the address is not in it."""
    root, _ = store_env
    at = page(name)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = texts(at)
    assert str(root) not in shown and str(root.parent) not in shown, name
    if params:
        assert "nosuch" in shown and f"`{root.parent.name}/{root.name}`" in shown, name


def test_setup_shows_model_card_dataset_preview_and_budgets(store_env):
    at = page("setup").run()
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Layers"] == "12"
    assert metrics["Classes"] == "3"
    titles = chart_titles(at)
    assert "Parameters per encoder layer" in titles and "Class balance" in titles
    per_layer = next(c for c in charts(at) if c["layout"]["title"]["text"] == "Parameters per encoder layer")
    counts = array(per_layer["data"][0]["y"])
    assert len(counts) == 12 and len(set(counts)) == 1 and counts[0] > 0
    assert any("tokens" in t for t in titles)
    assert at.dataframe, "the dataset table and the examples are shown"


def test_setup_hub_model_offline_is_an_error_naming_the_offline_models(store_env):
    at = page("setup", sel_model="bert-base-uncased").run()
    assert not at.exception
    message = " ".join(e.value for e in at.error)
    assert "offline" in message and "e5-small" in message and "tiny-bert" in message
    assert at.session_state["sel_model"] == "bert-base-uncased"  # the session lives on: pick another model
    at.radio(key="setup_model").set_value("tiny-bert").run()
    assert_clean(at)
    assert {m.label: m.value for m in at.metric}["Layers"] == "12"


@pytest.mark.precision
def test_setup_precision_selector_defaults_to_auto_and_says_what_it_resolves_to(store_env):
    from core.models.registry import get_model_spec
    from core.precision import describe
    from ui.state import MODEL_KEY

    at = page("setup").run()
    assert_clean(at)
    sel = at.selectbox(key="setup_precision")
    assert sel.value == "auto" and sel.options == ["auto", "fp32", "bf16"]
    assert describe("auto", None, get_model_spec(at.session_state[MODEL_KEY]).hidden_size) in texts(at)
    sel.set_value("fp32")
    next(b for b in at.get("form_submit_button") if b.label == "Apply").click().run()
    assert_clean(at)
    assert at.session_state["budgets"]["precision"] == "fp32"
    assert describe("fp32") in texts(at)


def test_setup_budgets_apply_and_reset(store_env):
    at = page("setup").run()
    next(n for n in at.number_input if n.label.startswith("Training rows")).set_value(150)
    next(n for n in at.number_input if n.label.startswith("Layers to remove")).set_value(3)
    next(b for b in at.get("form_submit_button") if b.label == "Apply").click().run()
    assert_clean(at)
    assert at.session_state["budgets"]["train_cap"] == 150 and at.session_state["budgets"]["layers_to_remove"] == 3
    assert any("Budgets applied" in s.value for s in at.success)
    next(b for b in at.get("form_submit_button") if b.label.startswith("Reset")).click().run()
    assert_clean(at)
    assert at.session_state["budgets"]["train_cap"] == DataConfig().train_cap


def test_setup_upload_bad_file_is_an_error_and_good_file_becomes_the_dataset(store_env):
    at = page("setup").run()
    at.file_uploader[0].upload("junk.csv", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "text/csv")
    at.run()
    assert not at.exception
    assert at.error, "a binary file must produce an st.error"
    assert at.session_state["sel_dataset"] == "keywords"
    rows = "\n".join(f"{'good great' if i % 2 else 'bad awful'} film number {i},{'pos' if i % 2 else 'neg'}"
                     for i in range(40))
    at.file_uploader[0].set_value(("reviews.csv", f"review,sentiment\n{rows}\n".encode(), "text/csv"))
    at.run()
    assert not at.exception and not at.error
    assert [s.value for s in at.selectbox if s.label == "Text column"] == ["review"]
    next(b for b in at.button if b.label == "Use this file").click().run()
    assert not at.exception and not at.error
    assert at.session_state["sel_dataset"].startswith("upload:")
    assert any("Stored as upload:" in s.value for s in at.success)


def test_live_attaches_from_the_url_and_replays(store_env):
    _, ids = store_env
    at = page("live")
    at.query_params["run"] = ids["rf_fusion"]
    at.run()
    assert_clean(at)
    shown = texts(at)
    assert "Random-forest fusion" in shown and ids["rf_fusion"] in shown
    strip = next(m.value for m in at.markdown if m.value.startswith('<div class="layer-strip">'))
    assert strip.count("layer-removed") == 2 and "1st out" in strip and "2nd out" in strip
    assert "Accuracy as layers are removed" in chart_titles(at)
    assert any(t.startswith("Signals at step 2") for t in chart_titles(at))
    curve = next(c for c in charts(at) if c["layout"]["title"]["text"] == "Accuracy as layers are removed")
    assert len(array(curve["data"][0]["x"])) == 3  # teacher + 2 steps
    # every accuracy with its 95 % interval, the change against the teacher paired, the precision that ran
    store = RunStore(store_env[0])
    teacher = accuracy_of(store.read_outcomes(ids["rf_fusion"], 0, artifacts.TEST_OUTCOMES))
    metrics = {m.label: m for m in at.metric}
    assert metrics["Teacher accuracy"].value == str(teacher) and INTERVAL.fullmatch(metrics["After step 2"].value)
    step2 = store.read_outcomes(ids["rf_fusion"], 2, artifacts.TEST_OUTCOMES)
    diff = paired_accuracy_of(step2, store.read_outcomes(ids["rf_fusion"], 0, artifacts.TEST_OUTCOMES)).interval
    delta = metrics["After step 2"].delta
    assert delta.startswith(f"{diff.estimate:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}]")
    assert ("within noise" in delta) == diff.contains(0.0)
    assert "95% intervals" in shown and "paired bootstrap" in shown
    assert f"Ran in **{store.steps(ids['rf_fusion']).iloc[0]['precision']}**" in shown
    bars = curve["data"][0]["error_y"]
    assert len(array(bars["array"])) == 3 and array(bars["arrayminus"])[0] == pytest.approx(
        teacher.estimate - teacher.low)
    replay = at.slider(key=f"replay_{ids['rf_fusion']}")
    replay.set_value(1).run()
    assert_clean(at)
    strip = next(m.value for m in at.markdown if m.value.startswith('<div class="layer-strip">'))
    assert strip.count("layer-removed") == 1
    curve = next(c for c in charts(at) if c["layout"]["title"]["text"] == "Accuracy as layers are removed")
    assert len(array(curve["data"][0]["x"])) == 2
    assert at.query_params["run"] == ids["rf_fusion"]


def test_live_shows_several_runs_side_by_side(store_env):
    _, ids = store_env
    at = page("live")
    at.query_params["run"] = f"{ids['rf_fusion']},{ids['top_down']}"
    at.run()
    assert_clean(at)
    side = next(c for c in charts(at) if c["layout"]["title"]["text"].startswith("Side by side"))
    assert {t["name"] for t in side["data"]} == {"Random-forest fusion", "Top-down (Poor Man's BERT)"}
    colours = {t["name"]: t["line"]["color"] for t in side["data"]}
    assert len(set(colours.values())) == 2
    assert [t.label for t in at.tabs] == ["Random-forest fusion", "Top-down (Poor Man's BERT)"]
    strips = [m.value for m in at.markdown if m.value.startswith('<div class="layer-strip">')]
    assert len(strips) == 2


def test_live_cancel_button_stops_a_queued_run(store_env):
    root, _ = store_env
    store = RunStore(root)
    run_id = store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy="random",
                              config=tiny_config("random"))  # queued, no worker: cancelling it is immediate
    at = page("live")
    at.query_params["run"] = run_id
    at.run()
    assert_clean(at)
    assert [node.proto.text for node in at.get("progress")][0].startswith("Queued")
    at.button(key=f"cancel_{run_id}").click().run()
    assert not at.exception
    assert store.get_run(run_id).status == "cancelled"
    assert any("Cancelled" in i.value for i in at.info)
    store.delete_run(run_id)


def test_live_unknown_run_in_url_is_a_clear_error(store_env):
    at = page("live")
    at.query_params["run"] = "no-such-run"
    at.run()
    assert not at.exception
    assert any("not in the store" in e.value for e in at.error)


def test_signals_heatmap_agreement_and_teaching_cards(store_env):
    from core.signals import BASELINES, SIGNALS

    _, ids = store_env
    at = page("signals", sig_run=ids["rf_fusion"]).run()
    assert_clean(at)
    heat = next(c for c in charts(at) if c["data"][0]["type"] == "heatmap")
    assert len(array(heat["data"][0]["y"])) == len(SIGNALS) and len(array(heat["data"][0]["x"])) == 12
    z = np.asarray(array(heat["data"][0]["z"]), dtype=float)
    assert int(np.isnan(z[0]).sum()) == 1  # at step 2 one layer is already gone
    assert np.nanmin(z) == 0.0 and np.nanmax(z) == 1.0
    assert any("Agreement with the oracle" in t for t in chart_titles(at))
    assert len(at.latex) == len(SIGNALS) + len(BASELINES)
    formulas = {i.formula_latex for i in (*SIGNALS.values(), *BASELINES.values())}
    assert {l.value.strip("$\n") for l in at.latex} == formulas


def test_fusion_page_explains_the_ranker_from_stored_values(store_env):
    _, ids = store_env
    at = page("fusion", fus_run=ids["rf_fusion"]).run()
    assert_clean(at)
    assert len(at.image) >= 2, "beeswarm and waterfall rendered as images"
    shown = texts(at)
    assert "Why L" in shown
    protocols = next(t.value for t in at.table if "protocol" in t.value.columns)
    assert list(protocols.index) == [1, 2]
    assert protocols["protocol"].iloc[1] == "within_run"  # step 2 trains on step 1 of the same run
    titles = chart_titles(at)
    assert "Global importance: mean |SHAP value|" in titles
    assert any("impurity importance" in t for t in titles)


def test_fusion_page_without_fusion_runs_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNE_STORE_DIR", str(tmp_path / "empty"))
    at = page("fusion").run()
    assert not at.exception
    assert "No fusion run yet" in texts(at)


def test_compare_table_curves_kd_and_pareto(store_env):
    _, ids = store_env
    at = page("compare").run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert set(table["run_id"]) == set(ids.values())
    assert {"teacher", "best", "after_kd", "ratio"} <= set(table.columns)
    assert all(INTERVAL.fullmatch(v) for v in [*table["teacher"], *table["best"], *table["after_kd"]])
    # the rank order says by how much, with the paired interval, and "within noise" where it holds 0
    ranking = next(m.value for m in at.markdown if "highest: " in m.value)
    assert "at 10 layers" in ranking and "(paired)" in ranking and INTERVAL.search(ranking)
    assert "within noise" in ranking or "ahead by" in ranking
    shown = texts(at)
    assert "95% intervals" in shown
    kd = next(c for c in charts(at) if c["layout"]["title"]["text"] == "Before and after distillation")
    assert all("error_y" in t for t in kd["data"])
    pareto = next(c for c in charts(at) if c["layout"]["title"]["text"] == "Accuracy vs parameters")
    assert all("error_y" in t for t in pareto["data"] if t.get("mode") == "markers")
    titles = chart_titles(at)
    assert "Before and after distillation" in titles
    assert "Accuracy vs parameters" in titles and "Accuracy vs measured latency" not in titles
    at.radio(key="cmp_cost").set_value("measured CPU latency").run()
    assert_clean(at)
    titles = chart_titles(at)
    assert "Accuracy vs measured latency" in titles and "Accuracy vs parameters" not in titles
    curves = next(c for c in charts(at) if c["layout"]["title"]["text"].endswith("test accuracy"))
    assert len(curves["data"]) == 2


def test_runs_page_lists_exports_and_deletes(store_env):
    root, ids = store_env
    store = RunStore(root)
    doomed = store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy="random",
                              config=tiny_config("random"))
    store.request_cancel(doomed)  # a queued run that never ran: cancelled
    at = page("runs").run()
    assert_clean(at)
    listed = at.dataframe[0].value
    assert set(ids.values()) | {doomed} <= set(listed["run"])
    done = listed[listed["run"].isin(ids.values())]
    assert all(INTERVAL.fullmatch(v) for v in [*done["teacher acc"], *done["final acc"]])
    assert all(re.fullmatch(r"[+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]( within noise)?", v)
               for v in done["final − teacher"])
    assert set(done["precision"]) <= {"fp32", "bf16"} and "95% intervals" in texts(at)
    at.selectbox(key="runs_export").set_value(ids["rf_fusion"]).run()
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Report (JSON)", "Steps (CSV)", "Pruned model (zip)", "Report (HTML)"]
    at.multiselect(key="runs_delete").set_value([doomed])
    at.checkbox(key="runs_sure").check().run()
    at.button(key="runs_delete_btn").click().run()
    assert not at.exception
    assert store.get_run(doomed) is None
    assert store.get_run(ids["rf_fusion"]) is not None


def tiny_merge_config(**kw) -> dict:
    from core.merging.config import MergeConfig

    base = dict(model="tiny-bert", dataset="keywords", auto_k=3, epochs=0.5, kd=DistillConfig(epochs=0.5),
                data=DataConfig(**TINY_DATA), calibration_size=32)
    base.update(kw)
    return MergeConfig(**base).to_dict()


@pytest.fixture(scope="session")
def merge_store(tmp_path_factory) -> tuple[Path, str]:
    """A store with one finished tiny merge run (window chosen by accuracy, compared with pruning)."""
    root = tmp_path_factory.mktemp("merge-store")
    store = RunStore(root)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = tiny_merge_config()
        run_id = store.create_run(kind="merge", model="tiny-bert", dataset="keywords", strategy="merge-accuracy",
                                  config=cfg)
        assert execute_run(store, run_id) == "done", store.get_run(run_id).error
    finally:
        torch.set_num_threads(threads)
    return root, run_id


def test_merging_page_shows_the_heatmap_window_choice_comparison_and_export(merge_store, monkeypatch):
    root, run_id = merge_store
    monkeypatch.setenv("PRUNE_STORE_DIR", str(root))
    summary = RunStore(root).read_json(run_id, artifacts.SUMMARY)
    at = page("merging").run()
    assert_clean(at)
    assert at.query_params["run"] == run_id
    figs = charts(at)
    titles = chart_titles(at)
    assert titles[:3] == ["FFN similarity between layers (linear CKA)", "Window choice (accuracy)",
                          "Accuracy vs parameters removed"]
    heat = figs[0]
    assert np.asarray(array(heat["data"][0]["z"])).shape == (12, 12)
    first, last = summary["window"][0], summary["window"][-1]
    rect = heat["layout"]["shapes"][0]
    assert (rect["x0"], rect["x1"]) == (first - 0.5, last + 0.5)  # the merged window is outlined
    bars = figs[1]["data"][0]
    assert len(array(bars["y"])) == 10  # 10 windows of 3 consecutive layers in 12
    windows = RunStore(root).read_table(run_id, artifacts.step_table(1, artifacts.WINDOWS_TABLE))
    best = windows.sort_values("rank").iloc[0]
    assert max(array(bars["y"])) == pytest.approx(best["val_accuracy"])
    paths = {t["name"]: t for t in figs[2]["data"] if t.get("mode") == "lines+markers"}
    merge_path = paths["FFN merging"]
    assert array(merge_path["x"])[-1] == pytest.approx(summary["params"]["removed"] / 1e6)
    assert array(merge_path["y"])[-1] == pytest.approx(summary["final"]["test_accuracy"])
    assert "Layer pruning (greedy oracle)" in paths
    shown = texts(at)
    assert f"merging layers {summary['window_label']}" in shown and "At the same budget" in shown
    metrics = {m.label: m.value for m in at.metric}
    store = RunStore(root)
    teacher = accuracy_of(store.read_outcomes(run_id, 0, artifacts.TEST_OUTCOMES))  # Wilson, from core.stats
    assert teacher.estimate == pytest.approx(summary["teacher"]["test_accuracy"])
    assert metrics["Unique FFNs"] == "10" and metrics["Teacher accuracy"] == str(teacher)  # "0.875 [0.753, 0.941]"
    assert INTERVAL.fullmatch(metrics["Merged, after recovery"])
    # the verdict: paired from the two sides' stored test outcomes, and it says within noise when the interval holds 0
    stage = "distilled" if "distilled" in summary["merged"] else "finetuned"
    merge_out = store.read_outcomes(run_id, 1, artifacts.comparison_outcomes("merge", stage, "test"))
    prune_out = store.read_outcomes(run_id, 1, artifacts.comparison_outcomes("prune", stage, "test"))
    diff = paired_accuracy_of(merge_out, prune_out).interval
    verdict_line = next(m.value for m in at.markdown if "At the same budget" in m.value)
    if diff.contains(0.0):
        assert f"**within noise**: merge − prune {diff.format(3)}" in verdict_line
    else:
        assert "within noise" not in verdict_line and f"is ahead by {abs(diff.estimate):.3f} [" in verdict_line
    assert "paired bootstrap over the same" in verdict_line
    assert "95% intervals" in shown and "Error bars" in shown
    assert "error_y" in merge_path and len(array(merge_path["error_y"]["array"])) == len(array(merge_path["y"]))
    assert [b.label for b in at.get("download_button")] == ["Merged model (zip)"]


def test_merging_page_starts_a_fixed_window_run_that_finishes(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNE_STORE_DIR", str(tmp_path))
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    at = page("merging").run()
    assert_clean(at)
    assert "No merge run yet" in texts(at)
    at.radio(key="merge_mode").set_value("fixed").run()
    at.select_slider(key="merge_window").set_value((5, 8))
    at.number_input(key="merge_epochs").set_value(0.5)
    at.toggle(key="merge_distill").set_value(False)
    at.toggle(key="merge_compare").set_value(False)
    at.number_input(key="merge_calibration").set_value(32)
    at.button(key="merge_start").click().run()
    assert_clean(at)
    store = RunStore(tmp_path)
    [run] = store.list_runs(kind="merge")
    assert run.strategy == "merge-fixed" and run.config["window"] == "5-8"
    assert run.config["data"]["train_cap"] == TINY_DATA["train_cap"] and run.config["distill"] is False
    assert at.query_params["run"] == run.id
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while store.get_run(run.id).status in ("queued", "running"):
            assert time.monotonic() < deadline, store.last_event(run.id)
            time.sleep(1)
    finally:
        if store.get_run(run.id).status in ("queued", "running"):
            store.request_cancel(run.id)
    assert store.get_run(run.id).status == "done", store.get_run(run.id).error
    summary = store.read_json(run.id, artifacts.SUMMARY)
    assert summary["window"] == [5, 6, 7, 8] and summary["pruning"] is None
    after = page("merging")
    after.query_params["run"] = run.id
    after.run()
    assert_clean(after)
    assert "Window choice (fixed)" in chart_titles(after)
    assert {m.label: m.value for m in after.metric}["Unique FFNs"] == "9"


def test_merging_page_with_an_unknown_run_in_the_url_says_so(merge_store, monkeypatch):
    root, run_id = merge_store
    monkeypatch.setenv("PRUNE_STORE_DIR", str(root))
    at = page("merging")
    at.query_params["run"] = "20000101-000000-nosuch"
    at.run()
    assert not at.exception
    assert "not a merge run" in " ".join(w.value for w in at.warning)
    assert at.query_params["run"] == run_id


def test_router_shows_every_page_with_the_sidebar(store_env):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.session_state["sel_model"] = "tiny-bert"
    at.session_state["sel_dataset"] = "keywords"
    at.run()
    assert_clean(at)
    assert [s.label for s in at.sidebar.selectbox][:2] == ["Model", "Dataset"]
    for name, title in (("live", "Live pruning"), ("signals", "Signals"), ("fusion", "Fusion & SHAP"),
                        ("compare", "Compare"), ("runs", "Runs & export"), ("merging", "Feed-forward merging"),
                        ("setup", "Setup")):
        at.switch_page(f"pages/{name}.py").run()
        assert not at.exception, (name, [e.value for e in at.exception])
        assert at.title[0].value == title


def test_router_keeps_the_sidebar_on_pages_that_end_early(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNE_STORE_DIR", str(tmp_path))  # empty store: Live, Signals, Compare... end early
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.run()
    for name in ("live", "signals", "fusion", "compare", "runs", "merging"):
        at.switch_page(f"pages/{name}.py").run()
        assert not at.exception, (name, [e.value for e in at.exception])
        assert [s.label for s in at.sidebar.selectbox][:2] == ["Model", "Dataset"], name
        assert at.info, name  # the empty state says what to do


# ------------------------------------------------------------------------------------------ end to end
def test_start_a_run_from_the_live_page_and_see_it_finish(store_env, monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # the worker process inherits it (see app.py)
    root, before = store_env
    store = RunStore(root)
    at = page("live").run()
    at.multiselect(key="live_strategies").set_value(["gradient_fisher"])
    at.number_input(key="live_layers").set_value(2)
    at.number_input(key="live_epochs").set_value(0.5)
    next(b for b in at.get("form_submit_button") if b.label == "Start").click().run()
    assert not at.exception and not at.error
    new_id = at.query_params["run"]
    run = store.get_run(new_id)
    assert run is not None and run.strategy == "gradient_fisher" and run.model == "tiny-bert"
    assert run.config["data"]["train_cap"] == TINY_DATA["train_cap"]
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while store.get_run(new_id).status in ("queued", "running"):
            assert time.monotonic() < deadline, f"run did not finish in {RUN_TIMEOUT_S} s: {store.last_event(new_id)}"
            time.sleep(2)
    finally:  # never leave a worker behind: it stops within one batch
        if store.get_run(new_id).status in ("queued", "running"):
            store.request_cancel(new_id)
    assert store.get_run(new_id).status == "done", store.get_run(new_id).error

    live = page("live")
    live.query_params["run"] = new_id
    live.run()
    assert_clean(live)
    assert "Gradient-Fisher" in texts(live)
    progress = [node.proto.text for node in live.get("progress")]
    assert progress and progress[0].startswith("**Finished**")
    assert "After step 2" in [m.label for m in live.metric]

    compare = page("compare").run()
    assert_clean(compare)
    table = compare.dataframe[0].value
    row = table[table["run_id"] == new_id]
    assert len(row) == 1 and row["strategy name"].iloc[0] == "Gradient-Fisher"
    assert os.path.exists(root / "runs" / new_id / artifacts.MODEL_CONFIG)


# ------------------------------------------------------------------------------------------ ui.tables
def test_pareto_mask_keeps_only_undominated_models():
    from ui.tables import pareto_mask

    cost = [10, 8, 8, 5, 12]
    quality = [0.90, 0.91, 0.85, 0.80, 0.95]
    assert pareto_mask(cost, quality).tolist() == [False, True, False, True, True]


def test_heatmap_normalises_each_signal_on_the_original_layer_axis():
    import pandas as pd

    from ui.tables import heatmap_data

    signals = pd.DataFrame({"original_layer": [0, 2, 3], "a": [1.0, 3.0, 2.0], "b": [5.0, 5.0, 5.0]})
    data = heatmap_data(signals, ["a", "b", "missing"], n_original=4)
    assert data.keys == ["a", "b"] and data.layers == [0, 1, 2, 3]
    assert np.allclose(data.normalised[0], [0.0, np.nan, 1.0, 0.5], equal_nan=True)
    assert np.allclose(data.normalised[1], [0.5, np.nan, 0.5, 0.5], equal_nan=True)  # constant signal: mid
    assert data.raw[0, 2] == 3.0 and np.isnan(data.raw[1, 1])


def test_signal_agreement_is_one_for_a_signal_that_orders_layers_like_the_oracle():
    import pandas as pd

    from ui.tables import signal_oracle_agreement

    oracle = [0.5, 0.9, 0.7, 0.6]
    profile = pd.DataFrame({"run_id": "r", "step": 1, "original_layer": [0, 1, 2, 3], "oracle_accuracy": oracle,
                            # "highest pruned first": a high value = remove first, like a high oracle accuracy
                            "good": oracle, "score__good": [-v for v in oracle],
                            # "lowest pruned first" on the same values: exactly backwards
                            "bad": oracle})
    agree = signal_oracle_agreement(profile, {"good": "highest", "bad": "lowest"}).set_index("signal")
    assert agree.loc["good", "mean_rho"] == pytest.approx(1.0) and agree.loc["good", "top1"] == 1.0
    assert agree.loc["bad", "mean_rho"] == pytest.approx(-1.0) and agree.loc["bad", "top1"] == 0.0


def test_every_strategy_has_one_colour_shared_by_its_family():
    from core.pruning.config import strategy_keys
    from core.signals import SIGNALS
    from ui import theme

    colours = {k: theme.strategy_color(k) for k in strategy_keys()}
    assert all(c.startswith("#") and len(c) == 7 for c in colours.values())
    assert len(set(colours.values())) == len(colours)  # no two strategies look alike
    for family in {s.family for s in SIGNALS.values()}:
        members = [k for k, s in SIGNALS.items() if s.family == family]
        hues = [colorsys.rgb_to_hls(*(int(colours[k][i:i + 2], 16) / 255 for i in (1, 3, 5)))[0] for k in members]
        assert max(hues) - min(hues) < 0.02, (family, hues)  # shades of one hue per family
