"""Measured as a newcomer (issue 30 item 5): a fresh server on a fresh, empty run store with the recorded pack, and
the seconds from the server's first answer to the first heatmap on Signals and to the first SHAP waterfall on
Fusion & SHAP, in headless Chromium (Debian's ``/usr/bin/chromium``, as the browser tests drive it)::

    .venv/bin/python scripts/bench_first_open.py                 # data/pack, 3 fresh servers
    .venv/bin/python scripts/bench_first_open.py --pack DIR --repeats 5

Each repeat starts a new server (nothing cached in it) and opens the two pages one after the other, as a newcomer
clicking through would, each in a new browser session. The target is 10 s each on a 2-core machine. Printed, never
asserted; it reads the pack and writes only to a temporary store.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_browser import CHROMIUM, launch, streamlit_server  # noqa: E402

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


def _until(browser, url: str, selector: str, count: int, timeout_ms: int = 180_000) -> float:
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
    from playwright.sync_api import sync_playwright

    os.environ["PRUNE_PACK_DIR"] = str(pack)
    with tempfile.TemporaryDirectory(prefix="fresh-store-") as tmp, sync_playwright() as pw:
        store = Path(tmp) / "store"
        with streamlit_server(store, Path(tmp) / "streamlit.log") as (base, started):
            answered = _first_answer(base)
            browser = launch(pw)
            heatmap = (answered - started, _until(browser, f"{base}/signals", HEATMAP, 1))
            waterfall = _until(browser, f"{base}/fusion", WATERFALL, 2)
            browser.close()
    return heatmap[0], heatmap[1], waterfall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", type=Path, default=ROOT / "data" / "pack")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"error: {CHROMIUM} is missing (apt-get install -y chromium)", file=sys.stderr)
        return 2
    rows = [once(args.pack) for _ in range(args.repeats)]
    print(f"{'repeat':<8}{'server up (s)':>15}{'first heatmap (s)':>20}{'first waterfall (s)':>22}")
    for i, (up, heat, fall) in enumerate(rows, 1):
        print(f"{i:<8}{up:>15.1f}{heat:>20.1f}{fall:>22.1f}")
    print(f"{'median':<8}{statistics.median(r[0] for r in rows):>15.1f}{statistics.median(r[1] for r in rows):>20.1f}"
          f"{statistics.median(r[2] for r in rows):>22.1f}   (target: 10 s each, from the server's first answer)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
