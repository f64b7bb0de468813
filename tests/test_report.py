"""The report to hand out (issue 31, item 4): one self-contained HTML file of finished pruning runs.

A session fixture makes two real runs of the tiny random BERT (random-forest fusion and top-down, fp32, distilled)
with the engine's own code, plus runs that have not finished (queued, running with steps already measured,
cancelled). The builder is checked against the store's own numbers, the refusal against every unfinished status,
the pages' download buttons with AppTest, and the file itself in headless Chromium from ``file://`` with the
network off: every chart must be drawn."""

from __future__ import annotations

import dataclasses
import html
import os
import re
from pathlib import Path

import pytest
import torch
from plotly.offline import get_plotlyjs
from streamlit.testing.v1 import AppTest

from core.config import DataConfig
from core.jobs.execute import execute_run
from core.oracle import best_layer
from core.pruning.config import PruneConfig
from core.runs import artifacts
from core.runs.handout import ReportRefused, check_finished, compression_points, report_facts, run_facts
from core.runs.store import RunStore
from core.train import DistillConfig
from ui import theme
from ui.report import build_report, file_name, main, render
from ui.report_plots import compression_bubbles

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
#: an accuracy with its 95 % interval as the report prints it
INTERVAL = re.compile(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]")
#: the start of Plotly's bundle: the report embeds it exactly once
PLOTLY_JS = get_plotlyjs()
PLOTLY_HEAD = PLOTLY_JS[:300]


def tiny_config(strategy: str) -> dict:
    return PruneConfig(model="tiny-bert", dataset="keywords", strategy=strategy, layers_to_remove=2, step_epochs=1.0,
                       calibration_size=32, distill=True, kd=DistillConfig(epochs=1.0), precision="fp32",
                       data=DataConfig(train_cap=160, val_cap=48, test_cap=64, max_length=16, seed=0)).to_dict()


@pytest.fixture(scope="session")
def report_store(tmp_path_factory) -> tuple[RunStore, dict[str, str]]:
    """Two finished tiny runs, and one run in each unfinished state (the running one has measured steps)."""
    store = RunStore(tmp_path_factory.mktemp("report-store"))
    ids: dict[str, str] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for strategy in ("rf_fusion", "top_down"):
            run_id = store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy=strategy,
                                      config=tiny_config(strategy))
            assert execute_run(store, run_id) == "done", store.get_run(run_id).error
            ids[strategy] = run_id
    finally:
        torch.set_num_threads(threads)

    def unfinished(strategy: str) -> str:
        return store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy=strategy,
                                config=tiny_config(strategy))

    ids["queued"] = unfinished("random")
    ids["running"] = unfinished("oracle")
    store.mark_running(ids["running"], pid=os.getpid())  # alive: it stays running
    for _, row in store.steps(ids["top_down"]).iloc[:2].iterrows():  # steps 0 and 1 measured, step 2 not yet
        store.add_step(ids["running"], int(row["step"]), {k: v for k, v in row.items() if k != "step"})
    ids["cancelled"] = unfinished("random")
    store.request_cancel(ids["cancelled"])
    return store, ids


# ------------------------------------------------------------------------------------------ the facts
def test_step_stories_match_the_stored_oracle_and_steps(report_store):
    store, ids = report_store
    facts = run_facts(store, ids["rf_fusion"], theme.strategy_label)
    steps = store.steps(ids["rf_fusion"]).set_index("step")
    assert [s.step for s in facts.stories] == [1, 2]
    for story in facts.stories:
        row = steps.loc[story.step]
        oracle = store.read_table(ids["rf_fusion"], artifacts.step_table(story.step, artifacts.ORACLE_TABLE))
        by_layer = dict(zip(oracle["original_layer"], oracle["accuracy"]))
        assert story.removed == int(row["removed"]) and story.oracle_best == int(row["oracle_best"])
        assert story.chosen_val.accuracy == pytest.approx(by_layer[story.removed])
        # the regret is against the most accurate removal (the oracle's own pick is the lowest KL, stored apart)
        assert story.best_val.accuracy == pytest.approx(max(by_layer.values()))
        assert by_layer[story.best_layer] == pytest.approx(max(by_layer.values()))
        assert story.oracle_best == best_layer(oracle)
        assert story.regret_value == pytest.approx(max(by_layer.values()) - by_layer[story.removed])
        assert (story.regret_cell() == "0 (none)") == (story.best_layer == story.removed)
        # intervals from the per-example outcomes: Wilson over the 48 validation rows, the regret paired over them
        assert story.chosen_val.interval.n == 48 and story.val_after.interval.n == 48
        assert story.val_after.accuracy == pytest.approx(row["val_accuracy"])
        assert story.test_after.accuracy == pytest.approx(row["test_accuracy"])
        assert story.regret is not None and story.regret.paired
        assert story.regret.interval.estimate == pytest.approx(story.regret_value)
        assert story.vs_teacher is not None and story.vs_teacher.paired
        assert INTERVAL.search(story.caption()) and f"removed layer L{story.removed}" in story.caption()
    # who chose: the first step has no ranker yet (the signal vote), the second a trained forest
    assert "signal vote" in facts.stories[0].chooser and "ranker trained on" in facts.stories[1].chooser
    assert facts.stories[0].chooser.startswith("Random-forest fusion")
    top = run_facts(store, ids["top_down"], theme.strategy_label)
    assert [s.chooser for s in top.stories] == [theme.strategy_label("top_down")] * 2
    assert [s.removed for s in top.stories] == [11, 10]
    assert facts.budget["layers to remove"] == 2 and facts.budget["precision it ran in"] == "fp32"
    assert facts.seed == 0 and facts.code_version == str(steps.loc[0, "code_version"])


def test_compression_points_run_from_the_teacher_to_the_distilled_student(report_store):
    store, ids = report_store
    facts = run_facts(store, ids["rf_fusion"], theme.strategy_label)
    points = compression_points(facts, theme.strategy_label)
    steps = store.steps(ids["rf_fusion"])
    summary = store.read_json(ids["rf_fusion"], artifacts.SUMMARY)
    assert points["stage"].tolist() == ["teacher", "pruned", "pruned", "distilled"]
    assert points["n_layers"].tolist() == [12, 11, 10, 10]
    assert points["bytes"].tolist()[:3] == steps["safetensors_bytes"].tolist()
    assert points["bytes"].iloc[-1] == summary["after_kd_metrics"]["safetensors_bytes"]
    assert points["accuracy"].iloc[-1] == pytest.approx(summary["after_kd"]["test_accuracy"])
    assert points["latency_ms"].notna().all() and (points["bytes"].diff().iloc[1:3] < 0).all()
    assert ((points["low"] <= points["accuracy"]) & (points["accuracy"] <= points["high"])).all()
    fig = compression_bubbles(points)
    (trace,) = fig.data
    assert list(trace.x) == points["latency_ms"].tolist() and list(trace.y) == points["accuracy"].tolist()
    assert list(trace.marker.size) == points["bytes"].tolist() and trace.marker.sizemode == "area"
    assert list(trace.marker.symbol) == ["diamond", "circle", "circle", "star"]
    assert trace.error_y.array is not None and len(trace.text) == 4


# ------------------------------------------------------------------------------------------ the file
def test_report_of_one_run_is_one_self_contained_file_with_every_number_and_interval(report_store):
    store, ids = report_store
    text = build_report(store, [ids["rf_fusion"]], generated="2026-01-01 00:00")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert text.count(PLOTLY_HEAD) == 1 and text.count(PLOTLY_JS) == 1  # Plotly's JavaScript, embedded once
    outside = text.replace(PLOTLY_JS, "")  # the bundle itself names a CDN for map data, which no chart here loads
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=|cdn\.plot\.ly|https?://", outside)  # nothing fetched
    assert text.count('<figure class="chart">') == text.count("Plotly.newPlot(") == 3  # KD, bubbles, curve
    facts = run_facts(store, ids["rf_fusion"], theme.strategy_label)
    for k, m in facts.intervals.steps.items():
        assert m.text() in text, k
    for story in facts.stories:
        assert html.escape(story.caption()) in text
    for line in facts.kd_lines():
        assert html.escape(line) in text
    assert "What distillation won back" in text and facts.intervals.after_kd.text() in text
    assert f"code version {facts.code_version}" in text and "1 seed (seed 0)" in text
    assert "layers to remove" in text and "fine-tuning epochs per step" in text
    assert "Accuracy vs latency, bubble area = model size" in text
    assert "/tmp" not in text and str(store.root) not in text  # no machine paths


def test_report_escapes_what_the_store_holds(report_store):
    store, ids = report_store
    facts = report_facts(store, [ids["top_down"]], theme.strategy_label)
    evil = "<img src=x onerror=alert(1)>&"
    one = dataclasses.replace(facts.runs[0], code_version=evil,
                              budget={**facts.runs[0].budget, "note": "<script>alert(2)</script>"})
    text = render(dataclasses.replace(facts, runs=[one]))
    assert evil not in text and "<script>alert(2)" not in text
    assert html.escape(evil) in text and "&lt;script&gt;alert(2)&lt;/script&gt;" in text


def test_comparison_report_ranks_the_runs_and_draws_each(report_store):
    store, ids = report_store
    pair = [ids["rf_fusion"], ids["top_down"]]
    text = build_report(store, pair)
    facts = report_facts(store, pair, theme.strategy_label)
    assert len(facts.rankings) == 1 and "at 10 layers" in text
    assert text.count(PLOTLY_HEAD) == 1
    # a curve per dataset, KD bars, the bubbles, and each run's own curve
    assert text.count('<figure class="chart">') == text.count("Plotly.newPlot(") == 5
    assert all(f'id="run-{rid}"' in text for rid in pair)
    assert set(facts.table["run_id"]) == set(pair) and all(INTERVAL.fullmatch(v) for v in facts.table["teacher"])
    assert "2 runs, 1 seed (seed 0)" in text
    assert file_name(pair) == "compare-2-runs-report.html" and file_name(pair[:1]) == f"{pair[0]}-report.html"


# ------------------------------------------------------------------------------------------ refusal
@pytest.mark.parametrize("state, says", [("queued", "is queued: it has not started"), ("running", "is still running"),
                                         ("cancelled", "was cancelled before it finished")])
def test_an_unfinished_run_is_refused_not_half_reported(report_store, state, says):
    store, ids = report_store
    with pytest.raises(ReportRefused, match=f"{ids[state]} {says}.*finished pruning runs only"):
        build_report(store, [ids[state]])
    # in a comparison, the message names the unfinished run only
    with pytest.raises(ReportRefused) as err:
        build_report(store, [ids["rf_fusion"], ids[state]])
    assert ids[state] in str(err.value) and ids["rf_fusion"] not in str(err.value)


def test_refusals_name_missing_and_other_kinds_of_run(report_store):
    store, ids = report_store
    with pytest.raises(ReportRefused, match="no-such-run is not in the store"):
        check_finished(store, ["no-such-run"])
    merge = store.create_run(kind="merge", model="tiny-bert", dataset="keywords", strategy="merge", config={})
    with pytest.raises(ReportRefused, match="is a merge run"):
        check_finished(store, [merge])
    with pytest.raises(ReportRefused, match="at least one run"):
        check_finished(store, [])
    for status, says in (("failed", "failed before it finished"),
                         ("interrupted", "was interrupted before it finished")):
        ended = store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy="random",
                                 config=tiny_config("random"))
        store.mark_running(ended)
        store.finish(ended, status, error="stopped")
        with pytest.raises(ReportRefused, match=f"{ended} {says}"):
            check_finished(store, [ended])
    assert [r.id for r in check_finished(store, [ids["top_down"], ids["top_down"]])] == [ids["top_down"]]


def test_command_line_writes_the_report_or_says_why_not(report_store, tmp_path, monkeypatch, capsys):
    store, ids = report_store
    monkeypatch.setenv("PRUNE_STORE_DIR", str(store.root))
    out = tmp_path / "report.html"
    assert main([ids["rf_fusion"], ids["top_down"], "--out", str(out)]) == 0
    assert out.read_text().count("Plotly.newPlot(") == 5 and "wrote" in capsys.readouterr().out
    refused = tmp_path / "refused.html"
    assert main([ids["running"], "--out", str(refused)]) == 2
    assert "is still running" in capsys.readouterr().err and not refused.exists()


# ------------------------------------------------------------------------------------------ pages
def page(name: str, **session: object) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=90)
    at.session_state["sel_model"] = "tiny-bert"
    at.session_state["sel_dataset"] = "keywords"
    for key, value in session.items():
        at.session_state[key] = value
    return at


def test_runs_and_compare_pages_offer_the_report_or_show_the_refusal(report_store, monkeypatch):
    store, ids = report_store
    monkeypatch.setenv("PRUNE_STORE_DIR", str(store.root))
    at = page("runs").run()
    assert not at.exception
    at.selectbox(key="runs_export").set_value(ids["rf_fusion"]).run()
    assert "Report (HTML)" in [b.label for b in at.get("download_button")]
    at.selectbox(key="runs_export").set_value(ids["running"]).run()
    assert not at.exception and "Report (HTML)" not in [b.label for b in at.get("download_button")]
    assert at.button(key="dl_html_refused").disabled
    assert any(f"{ids['running']} is still running" in c.value for c in at.caption)

    at = page("compare").run()  # the running run is among the selected ones: refused, and says why
    assert not at.exception
    assert at.button(key="cmp_report_refused").disabled
    assert any("is still running" in c.value for c in at.caption)
    at.toggle(key="cmp_done").set_value(True).run()  # finished runs only: the report is offered
    assert not at.exception
    assert "Report of these runs (HTML)" in [b.label for b in at.get("download_button")]


# ------------------------------------------------------------------------------------------ a browser
@pytest.mark.browser
def test_report_opens_from_a_file_with_the_network_off_and_draws_every_chart(report_store, tmp_path):
    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    store, ids = report_store
    path = tmp_path / "report.html"
    path.write_text(build_report(store, [ids["rf_fusion"], ids["top_down"]]), encoding="utf-8")
    asked: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)

            def block(route) -> None:  # only the file itself may load
                if route.request.url.startswith("file:"):
                    route.continue_()
                else:
                    asked.append(route.request.url)
                    route.abort()

            context.route("**/*", block)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri())
            page.wait_for_function("""() => { const f = [...document.querySelectorAll('figure.chart')];
                return f.length > 0 && f.every(x => x.querySelector('.plot-container svg.main-svg')); }""",
                                   timeout=30_000)
            drawn = page.evaluate("""() => [...document.querySelectorAll('figure.chart')].map(f => [
                f.querySelectorAll('.plot-container svg.main-svg').length,
                f.querySelectorAll('.scatterlayer .point, .barlayer .point').length,
                (f.querySelector('.gtitle') || {}).textContent || ''])""")
            # the network really is off: a fetch from the page fails
            fetched = page.evaluate("() => fetch('https://cdn.plot.ly/plotly-3.0.0.min.js').then(() => 'loaded',"
                                    " () => 'blocked')")
            height = page.evaluate("() => document.body.scrollHeight")
            page.set_viewport_size({"width": 1280, "height": min(int(height) + 40, 12000)})
            page.wait_for_timeout(800)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report.png"))
        finally:
            browser.close()
    assert fetched == "blocked" and not errors, errors
    assert len(drawn) == 5 and all(svgs >= 1 and points >= 2 for svgs, points, _ in drawn), drawn
    titles = [t for _, _, t in drawn]
    assert "Accuracy vs latency, bubble area = model size" in titles and "Before and after distillation" in titles
    bubbles = drawn[titles.index("Accuracy vs latency, bubble area = model size")]
    assert bubbles[1] == 8  # two runs, each: teacher, two steps, the distilled student
    assert all(not u.startswith(("http:", "https:")) or "cdn.plot.ly/plotly-3.0.0" in u for u in asked), asked
    assert (ARTIFACTS / "report.png").stat().st_size > 20_000
