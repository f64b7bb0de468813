"""A real browser walk through the dashboard: ``streamlit run app.py`` on a free port with a temporary store,
driven by headless Chromium from Debian (``/usr/bin/chromium``) through the Python ``playwright`` package.

It visits every page (empty states first), starts the tiny demo run with one click on Home, follows it on
the Live page (which polls the store) until it finishes, re-attaches after a reload, and saves a screenshot
of every page under ``tests/artifacts/``. Timings (cold start to first paint, each page's render, page
switches while the run trains) are printed, never asserted; run with ``-s`` to see them.

As a benchmark on an existing store (e.g. one holding 10 runs):
``python tests/test_browser.py --store DIR [--runs-while-training]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
#: url path -> the page's title (h1)
PAGES = {"": "Layer-pruning explorer", "setup": "Setup", "live": "Live pruning", "signals": "Signals",
         "fusion": "Fusion & SHAP", "study": "Studies", "compare": "Compare", "runs": "Runs & export",
         "paper": "Paper check", "merging": "Feed-forward merging", "playground": "Playground"}
NAV_LABELS = {"": "Home", "setup": "Setup", "live": "Live pruning", "signals": "Signals", "fusion": "Fusion & SHAP",
              "study": "Studies", "paper": "Paper check",
              "compare": "Compare", "runs": "Runs & export", "merging": "FFN merging", "playground": "Playground"}
RUN_TIMEOUT_S = 420

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def streamlit_server(store: Path, log: Path, cancel_runs: bool = True) -> Iterator[tuple[str, float]]:
    """``streamlit run app.py`` on a free port; yields (base url, the time it was started). On exit it ends the
    workers the server started and, with ``cancel_runs``, cancels the store's unfinished runs (right for a
    throwaway test store; never on a store whose runs something else is computing)."""
    import urllib.request

    port = free_port()
    env = {**os.environ, "PRUNE_STORE_DIR": str(store), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "OMP_WAIT_POLICY": "PASSIVE"}
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                                 "--server.port", str(port), "--server.address", "127.0.0.1",
                                 "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start; see {log}:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url, started
    finally:
        try:
            stop_workers(store, proc.pid, cancel_runs=cancel_runs)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def stop_workers(store: Path, server_pid: int, wait_s: float = 30.0, cancel_runs: bool = True) -> None:
    """Cancel the store's unfinished runs (workers stop within one batch) when ``cancel_runs``, then end any
    worker the server started that is still alive, by its pid."""
    from core.runs.store import ACTIVE, RunStore

    runs = RunStore(store)
    workers = _children(server_pid)
    if not cancel_runs:
        wait_s = 0.0  # runs this server did not start keep going; only its own workers are ended
    else:
        for run in runs.list_runs():
            if run.status in ACTIVE:
                runs.request_cancel(run.id)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in workers):
        if all(r.status not in ACTIVE for r in runs.list_runs()):
            time.sleep(1.0)  # let the worker exit after writing its final status
            break
        time.sleep(0.5)
    for pid in workers:
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            pass


def settled(page, title: str, timeout_ms: int = 90_000) -> None:
    """Wait until the page's h1 is ``title`` and its script has finished running."""
    page.wait_for_function(
        """(title) => {
            const h = document.querySelector('h1');
            const app = document.querySelector('[data-test-script-state]');
            const loading = document.querySelector(
                '[data-testid="stSkeleton"], [data-testid="stSkeletonElement"], [data-testid="stAppSkeleton"]');
            return h && h.innerText.includes(title) && app && !loading
                   && app.getAttribute('data-test-script-state') === 'notRunning';
        }""", arg=title, timeout=timeout_ms)


#: arms a watcher on the app's script state: ``window.__reran`` turns true when a run starts (a rerun, a fragment's
#: run); the records' old values catch a run that starts and ends between two looks
_WATCH_RUNS = """() => {
    const app = document.querySelector('[data-test-script-state]');
    if (window.__runWatch) window.__runWatch.disconnect();
    window.__reran = false;
    window.__runWatch = new MutationObserver(records => {
        if (records.some(r => r.oldValue !== 'notRunning')
            || app.getAttribute('data-test-script-state') !== 'notRunning') window.__reran = true;
    });
    window.__runWatch.observe(app, {attributes: true, attributeOldValue: true,
                                    attributeFilter: ['data-test-script-state']});
}"""


@contextmanager
def reran(page, title: str, timeout_ms: int = 90_000) -> Iterator[None]:
    """The block's action (a click, key presses) reruns the page: wait until that rerun has started and then
    ``settled``. A watcher armed before the action sees the run start, so no fixed pause is guessed; a run too quick
    to be seen at all is waited for as before (400 ms for it to start, then settled)."""
    page.evaluate(_WATCH_RUNS)
    yield
    page.wait_for_function("(t0) => window.__reran || performance.now() - t0 > 400",
                           arg=page.evaluate("() => performance.now()"), timeout=timeout_ms)
    settled(page, title, timeout_ms)


def no_exception(page) -> None:
    shown = page.locator("[data-testid='stException']")
    assert shown.count() == 0, shown.first.inner_text()


#: resolves once the page has looked the same for ``quiet`` ms with its script not running (no stale element, every
#: image loaded, no element moved or resized), or after ``most`` ms whatever it looks like (a replay that plays)
_QUIET = """([quiet, most]) => new Promise(resolve => {
    const look = () => {
        const app = document.querySelector('[data-test-script-state]');
        const main = document.querySelector('[data-testid="stMain"]');
        if (!app || !main || app.getAttribute('data-test-script-state') !== 'notRunning'
            || main.querySelector('[data-stale="true"]')) return null;
        const parts = [main.scrollHeight, main.innerText.length];
        for (const el of main.querySelectorAll(
                '[data-testid="stElementContainer"], .js-plotly-plot .main-svg, canvas, img, iframe')) {
            const r = el.getBoundingClientRect();
            parts.push(`${r.x},${r.y},${r.width},${r.height}${el.complete === false ? ' loading' : ''}`);
        }
        return parts.join('|');
    };
    const start = performance.now();
    let last = look(), since = start;
    const tick = () => {
        const now = look(), t = performance.now();
        if (now === null || now !== last) { last = now; since = t; }
        if ((last !== null && t - since >= quiet) || t - start >= most) resolve(true);
        else requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
})"""


def screenshot(page, name: str) -> Path:
    """A screenshot of the whole page (the main area scrolls inside the app, so the viewport is grown)."""
    height = page.evaluate("() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
                           " return m ? m.scrollHeight : 1000; }")
    page.set_viewport_size({"width": 1600, "height": min(int(height) + 40, 7000)})
    page.wait_for_function(_QUIET, arg=[300, 1200])  # quiet at the new size (plotly redraws, a rerun finishes)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1600, "height": 1000})
    return path


def open_page(page, base: str, slug: str, query: str = "") -> float:
    """Load a page by URL (a fresh session); seconds until it has rendered."""
    t0 = time.perf_counter()
    page.goto(f"{base}/{slug}{query}")
    settled(page, PAGES[slug])
    return time.perf_counter() - t0


def switch_page(page, slug: str) -> float:
    """Click the sidebar link (same session, like a user); seconds until the new page has rendered."""
    t0 = time.perf_counter()
    page.get_by_test_id("stSidebarNav").get_by_text(NAV_LABELS[slug], exact=True).click()
    settled(page, PAGES[slug])
    return time.perf_counter() - t0


def launch(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)


def test_walk_every_page_start_a_tiny_run_and_screenshot(browser, tmp_path):
    store = tmp_path / "store"
    with streamlit_server(store, tmp_path / "streamlit.log") as (base, started):
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        # the very first request is a deep link: the page must still come inside app.py's frame (sections
        # in the navigation, the shared Model selector), not as a bare file of the pages/ folder
        page.goto(f"{base}/compare")
        page.wait_for_selector("h1:has-text('Compare')", timeout=120_000)
        print(f"\ncold start to first paint of a deep link (Compare): {time.perf_counter() - started:.2f} s")
        settled(page, PAGES["compare"], timeout_ms=120_000)
        nav = page.get_by_test_id("stSidebarNav")
        assert nav.get_by_text("Results", exact=True).count() == 1 and nav.get_by_text("app").count() == 0
        assert page.get_by_test_id("stSidebar").get_by_text("Model", exact=True).count() >= 1
        page.goto(base)
        settled(page, PAGES[""], timeout_ms=120_000)
        no_exception(page)
        assert page.get_by_text("No runs yet").count() == 1

        for slug in PAGES:  # empty store: every page explains what to do
            seconds = switch_page(page, slug)
            no_exception(page)
            print(f"  {NAV_LABELS[slug]:<14} (empty store) {seconds:.2f} s")

        switch_page(page, "")
        page.get_by_role("button", name="Run the tiny demo").click()
        page.wait_for_url("**/live?run=*", timeout=60_000)
        run_id = page.url.split("run=")[1].split("&")[0]
        settled(page, PAGES["live"])
        no_exception(page)

        switches = []
        for slug in ("signals", "compare", "runs", "live"):  # responsiveness while the worker trains
            switches.append(switch_page(page, slug))
        print(f"page switch while a run trains: median {statistics.median(switches):.2f} s, "
              f"max {max(switches):.2f} s over {len(switches)}")
        assert run_id in page.url

        page.reload()  # a reload re-attaches through the URL
        settled(page, PAGES["live"])
        assert page.get_by_text(run_id).count() >= 1

        page.get_by_text("Finished in").wait_for(timeout=RUN_TIMEOUT_S * 1000)
        settled(page, PAGES["live"])
        no_exception(page)
        assert page.locator(".layer-removed").count() >= 1
        screenshot(page, "live")

        for slug in ("", "setup", "signals", "fusion", "study", "compare", "runs", "paper", "merging"):
            seconds = switch_page(page, slug)
            no_exception(page)
            assert page.get_by_text("Traceback").count() == 0
            screenshot(page, slug or "home")
            print(f"  {NAV_LABELS[slug]:<14} (1 finished run) {seconds:.2f} s")
        page.close()
    for name in ("home", "setup", "live", "signals", "fusion", "study", "compare", "runs", "paper", "merging"):
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 10_000


def metric(page, label: str, timeout_ms: int = 60_000) -> tuple[str, str]:
    """The value and the delta line of the metric whose label starts with ``label`` (waits until it shows)."""
    page.wait_for_function(
        """(label) => [...document.querySelectorAll('[data-testid="stMetricLabel"]')]
                        .some(e => e.innerText.trim().startsWith(label))""", arg=label, timeout=timeout_ms)
    return page.evaluate(
        """(label) => {
            const box = [...document.querySelectorAll('[data-testid="stMetric"]')].find(m =>
                m.querySelector('[data-testid="stMetricLabel"]').innerText.trim().startsWith(label));
            const delta = box.querySelector('[data-testid="stMetricDelta"]');
            return [box.querySelector('[data-testid="stMetricValue"]').innerText.trim(),
                    delta ? delta.innerText.trim() : ""];
        }""", label)


def test_playground_type_a_text_and_switch_a_layer_off(browser, tmp_path):
    """Type a sentence on the Playground, see the teacher's and the pruned model's predictions, switch a teacher
    layer off and see the teacher recomputed; each shown value is checked against core.playground."""
    from core.config import DataConfig
    from core.jobs.execute import execute_run
    from core.playground import compare, load_run
    from core.pruning.config import PruneConfig
    from core.runs.store import RunStore

    store = RunStore(tmp_path / "store")
    cfg = PruneConfig(model="tiny-bert", dataset="keywords", strategy="top_down", layers_to_remove=4, step_epochs=0.5,
                      calibration_size=32, distill=False,
                      data=DataConfig(train_cap=160, val_cap=48, test_cap=90, max_length=10))
    run_id = store.create_run(kind="prune", model=cfg.model, dataset=cfg.dataset, strategy=cfg.strategy,
                              config=cfg.to_dict())
    assert execute_run(store, run_id) == "done", store.get_run(run_id).error
    text = "what a great football match, i love tennis too"
    loaded = load_run(store, run_id)
    want, off = compare(loaded, text), compare(loaded, text, [0, 1]).teacher_off

    with streamlit_server(store.root, tmp_path / "streamlit.log") as (base, _):
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{base}/playground?run={run_id}")
        settled(page, PAGES["playground"], timeout_ms=120_000)
        no_exception(page)
        box = page.get_by_label("Type or paste a text")
        box.fill(text)
        box.press("Control+Enter")  # a text area sends its value on Ctrl+Enter (or on leaving it)
        expected = {"Teacher (12 layers)": [want.teacher.label, f"p = {want.teacher.confidence:.2f}"],
                    "Pruned model (8 layers)": [want.compressed.label, f"p = {want.compressed.confidence:.2f}"]}
        for label, shown in expected.items():  # the page reran on the typed text: both predictions are its own
            page.wait_for_function("""([label, value, delta]) => [...document.querySelectorAll(
                '[data-testid="stMetric"]')].some(m => m.innerText.includes(label) && m.innerText.includes(value)
                && m.innerText.includes(delta))""", arg=[label, *shown], timeout=60_000)
        settled(page, PAGES["playground"])
        for label, shown in expected.items():
            assert metric(page, label) == shown
        assert page.get_by_test_id("stMetricLabel").get_by_text("Teacher without").count() == 0
        pills = page.get_by_test_id("stButtonGroup").first
        for layer in (0, 1):
            pills.get_by_role("button", name=f"layer {layer}", exact=True).click()
            settled(page, PAGES["playground"])
        page.get_by_text("Teacher without layers 0, 1").first.wait_for(timeout=60_000)
        settled(page, PAGES["playground"])
        no_exception(page)
        assert metric(page, "Teacher without layers 0, 1 (10 layers)") == [off.label, f"p = {off.confidence:.2f}"]
        assert metric(page, "Teacher (12 layers)")[0] == want.teacher.label  # the full teacher stays as it was
        shot = screenshot(page, "playground")
        page.close()
    assert shot.stat().st_size > 10_000


# ------------------------------------------------------------------------------------------ benchmark
def bench(store: Path, repeats: int = 3, while_training: int = 12, heavy: bool = False) -> None:
    """Print cold start; per page, first load (new session) and switch (same session) times; then start the
    tiny demo (``heavy``: the Home page's first run, the 12-layer e5 model) and time ``while_training`` page
    switches while its worker trains (the run is cancelled at the end). ``store`` is used as is: pass a copy
    if it must stay unchanged."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw, streamlit_server(store, Path("/tmp/streamlit-bench.log")) as (base, started):
        b = launch(pw)
        page = b.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(base)
        page.wait_for_selector("h1:has-text('Layer-pruning explorer')", timeout=120_000)
        print(f"cold start (process start to first paint of Home): {time.perf_counter() - started:.2f} s")
        settled(page, PAGES[""], timeout_ms=120_000)
        print(f"cold start (process start to Home fully rendered): {time.perf_counter() - started:.2f} s")
        print(f"{'page':<16}{'load (new session)':>20}{'switch (median)':>18}")
        for slug in PAGES:
            load = open_page(page, base, slug)
            switches = []
            for _ in range(repeats):
                switch_page(page, "" if slug else "setup")
                switches.append(switch_page(page, slug))
            print(f"{NAV_LABELS[slug]:<16}{load:>19.2f}s{statistics.median(switches):>17.2f}s")
        if while_training:
            switch_page(page, "")
            page.get_by_role("button", name="Start my first pruning run" if heavy else "Run the tiny demo").click()
            page.wait_for_url("**/live?run=*", timeout=60_000)
            settled(page, PAGES["live"])
            page.wait_for_timeout(15_000)  # past the worker's start-up imports: time switches while it trains
            cycle = ["signals", "compare", "runs", "fusion", "", "live"]
            times = {slug: [] for slug in cycle}
            for i in range(while_training):
                slug = cycle[i % len(cycle)]
                times[slug].append(switch_page(page, slug))
            every = [t for ts in times.values() for t in ts]
            still = page.get_by_text("Finished in").count() == 0
            print(f"page switch while a run trains ({'still training' if still else 'finished meanwhile'}): "
                  f"median {statistics.median(every):.2f} s, max {max(every):.2f} s over {len(every)} switches; "
                  + ", ".join(f"{NAV_LABELS[s]} {statistics.median(t):.2f}" for s, t in times.items() if t))
        b.close()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--while-training", type=int, default=12, help="page switches timed while a run trains")
    parser.add_argument("--heavy", action="store_true", help="train the 12-layer e5 model meanwhile, not the tiny one")
    args = parser.parse_args()
    bench(args.store, args.repeats, args.while_training, args.heavy)
