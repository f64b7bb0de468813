"""Screenshots of dashboard pages over an existing run store, for the README and closing notes.

Starts ``streamlit run app.py`` on the store the way the browser test does (same server, same wait for a
settled page), opens each requested page in headless Chromium (Debian's ``/usr/bin/chromium``) and saves a
PNG. It never cancels the store's runs (the browser test does, on its throwaway store), so it is safe on a
store a study is filling::

    .venv/bin/python scripts/screenshots.py --store DIR --out docs/screenshots \\
        "live?run=RUN_ID=guard" "fusion?run=RUN_ID=fusion_bank" "paper=paper_check"

Each shot is ``PATH[?QUERY][@TAB][#TEXT]=NAME``: the url path of the page (``""`` for Home), its query string, the
label of a tab to click first (optional), a text to scroll to (optional: the first element showing it is scrolled
to the top of the view), and the PNG's file name without the extension.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, PAGES, settled, streamlit_server  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="the run store the app reads (PRUNE_STORE_DIR)")
    parser.add_argument("--out", required=True, help="folder for the PNG files")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000,
                        help="viewport height: Streamlit scrolls inside the page, so this is what the PNG shows")
    parser.add_argument("--wait", type=float, default=4.0, help="seconds to let charts draw after the page settles")
    parser.add_argument("shots", nargs="+", help="PATH[?QUERY][@TAB][#TEXT]=NAME")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"error: {CHROMIUM} is missing; install Debian's chromium (scripts/test.sh does)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 deferred: cost (playwright)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with streamlit_server(Path(args.store), out / "streamlit.log", cancel_runs=False) as (url, _):
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            for shot in args.shots:
                target, _, name = shot.rpartition("=")
                target, _, anchor = target.partition("#")
                target, _, tab = target.partition("@")
                path = target.split("?", 1)[0]
                page.goto(f"{url}/{target}")
                settled(page, PAGES[path], timeout_ms=180_000)
                if tab:
                    page.get_by_role("tab", name=tab).click()
                    settled(page, PAGES[path], timeout_ms=180_000)
                if anchor:
                    page.get_by_text(anchor).first.evaluate("e => e.scrollIntoView({block: 'start'})")
                page.wait_for_timeout(int(args.wait * 1000))
                page.screenshot(path=str(out / f"{name}.png"), full_page=True)
                print(f"{name}.png  <- /{target}")
            browser.close()
    (out / "streamlit.log").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
