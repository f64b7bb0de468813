"""``python -m benchmarks first-open``: the first open measured as a newcomer (issue 30 item 5).

A fresh server on a fresh, empty run store with the recorded pack, and the seconds from the server's first answer
to the first heatmap on Signals and to the first SHAP waterfall on Fusion & SHAP, in headless Chromium (Debian's
``/usr/bin/chromium``, as the browser tests drive it)::

    .venv/bin/python -m benchmarks first-open                    # data/pack, 3 fresh servers
    .venv/bin/python -m benchmarks first-open --pack DIR --repeats 5

Each repeat starts a new server (nothing cached in it) and opens the two pages one after the other, as a newcomer
clicking through would, each in a new browser session. The target is 10 s each on a 2-core machine. Printed, never
asserted; it reads the pack and writes only to a temporary store. The server and the browser are the browser
tests' (``tests/test_browser.py``), imported when it runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests import test_browser

ROOT = Path(__file__).resolve().parent.parent

#: the heatmap is the Signals page's first chart; the waterfall its second image on Fusion & SHAP (after the beeswarm)
HEATMAP = "[data-testid='stPlotlyChart']"
WATERFALL = "[data-testid='stImage']"


def _first_answer(url: str) -> float:
    """Wait for the page itself (not only the health check) to answer; the moment it did."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return time.perf_counter()
        except OSError:
            time.sleep(0.1)


def _until(browser: Any, url: str, selector: str, count: int, timeout_ms: int = 180_000) -> float:
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_function("([s, n]) => document.querySelectorAll(s).length >= n", arg=[selector, count],
                           timeout=timeout_ms)
    seconds = time.perf_counter() - t0
    page.close()
    return seconds


def once(pack: Path) -> tuple[float, float, float]:
    """(server start to first answer, then to the first heatmap, then to the first waterfall), in seconds."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 deferred: cost (playwright)

    os.environ["PRUNE_PACK_DIR"] = str(pack)
    with tempfile.TemporaryDirectory(prefix="fresh-store-") as tmp, sync_playwright() as pw:
        store = Path(tmp) / "store"
        with test_browser.streamlit_server(store, Path(tmp) / "streamlit.log") as (base, started):
            answered = _first_answer(base)
            browser = test_browser.launch(pw)
            heatmap = (answered - started, _until(browser, f"{base}/signals", HEATMAP, 1))
            waterfall = _until(browser, f"{base}/fusion", WATERFALL, 2)
            browser.close()
    return heatmap[0], heatmap[1], waterfall


def table(rows: list[tuple[float, float, float]]) -> str:
    """One line per repeat (server up, first heatmap, first waterfall, in seconds) and their medians."""
    lines = [f"{'repeat':<8}{'server up (s)':>15}{'first heatmap (s)':>20}{'first waterfall (s)':>22}"]
    lines += [f"{i:<8}{up:>15.1f}{heat:>20.1f}{fall:>22.1f}" for i, (up, heat, fall) in enumerate(rows, 1)]
    medians = [statistics.median(r[k] for r in rows) for k in range(3)]
    lines.append(f"{'median':<8}{medians[0]:>15.1f}{medians[1]:>20.1f}{medians[2]:>22.1f}   (target: 10 s each, "
                 "from the server's first answer)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks first-open", description=__doc__.splitlines()[0])
    parser.add_argument("--pack", type=Path, default=ROOT / "data" / "pack")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv or [])
    if not test_browser.CHROMIUM.exists():  # read now: the smoke test points it at a missing file
        print(f"error: {test_browser.CHROMIUM} is missing (apt-get install -y chromium)", file=sys.stderr)
        return 2
    print(table([once(args.pack) for _ in range(args.repeats)]))
    return 0
