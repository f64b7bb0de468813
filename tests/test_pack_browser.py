"""A real browser on a fresh store with a recorded pack (issue 30): every page shows the pack's runs (no empty state),
the recorded label is visible, and Live's narrated replay plays a recorded run from step 1 to the end with one
caption per step. Screenshots land in ``tests/artifacts/pack_*.png``; the seconds from the server's start to the
first heatmap (Signals) and the first SHAP waterfall (Fusion & SHAP) are printed, never asserted (``-s``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.packs import made_once, make_tiny_pack
from tests.test_browser import PAGES, no_exception, open_page, screenshot, settled, streamlit_server

pytestmark = pytest.mark.browser

#: what an empty page says (pages/*.py): none of it may show on a fresh store with a pack
EMPTY = ("No run has computed signals", "No fusion run yet", "Nothing to compare", "The store is empty", "No run yet",
         "was refused")
#: what each page shows from the pack: (a locator, how many at least)
CONTENT = {"signals": ("[data-testid='stPlotlyChart']", 2), "fusion": ("[data-testid='stImage']", 2),
           "compare": ("[data-testid='stDataFrame']", 1), "runs": ("[data-testid='stDataFrame']", 1),
           "live": (".st-key-replay_caption", 1)}


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    return made_once(tmp_path_factory, "pack", make_tiny_pack)


def _wait_count(page, selector: str, at_least: int, timeout_ms: int = 60_000) -> None:
    page.wait_for_function("([s, n]) => document.querySelectorAll(s).length >= n", arg=[selector, at_least],
                           timeout=timeout_ms)


def _caption(page) -> str:
    box = page.locator(".st-key-replay_caption")
    return box.inner_text() if box.count() else ""


def test_fresh_store_with_a_pack_shows_every_page_and_replays_a_recorded_run(browser, tiny_pack, tmp_path,
                                                                             monkeypatch):
    _, pack, ids = tiny_pack
    monkeypatch.setenv("PRUNE_PACK_DIR", str(pack))  # the server inherits it
    with streamlit_server(tmp_path / "fresh", tmp_path / "streamlit.log") as (base, started):
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{base}/signals")
        _wait_count(page, CONTENT["signals"][0], 1, timeout_ms=120_000)
        print(f"\nserver start to the first heatmap on Signals: {time.perf_counter() - started:.1f} s")
        settled(page, PAGES["signals"], timeout_ms=120_000)
        t0 = time.perf_counter()
        page.goto(f"{base}/fusion")
        _wait_count(page, CONTENT["fusion"][0], 2)
        print(f"Fusion & SHAP opened to its SHAP waterfall: {time.perf_counter() - t0:.1f} s")
        for slug in ("signals", "fusion", "compare", "runs", "live"):
            seconds = open_page(page, base, slug)
            selector, at_least = CONTENT[slug]
            _wait_count(page, selector, at_least)
            settled(page, PAGES[slug])
            no_exception(page)
            body = page.locator("[data-testid='stMain']").inner_text()
            assert not [e for e in EMPTY if e in body], (slug, [e for e in EMPTY if e in body])
            assert "recorded" in body, slug
            assert str(tmp_path) not in body and str(pack) not in body, slug
            screenshot(page, f"pack_{slug}")
            print(f"  {slug:<8} fresh session: {seconds:.2f} s")

        open_page(page, base, "playground")  # the tiny teacher is in this session's cache: the offer sits below
        no_exception(page)
        assert page.get_by_text("Recorded runs ship without weights: rerun one here").count() == 1

        # Live on a fresh store replays the recorded random-forest run: play it from the start, one caption per step
        page.goto(f"{base}/live")
        settled(page, PAGES["live"])
        assert ids["rf_fusion"] in page.url
        main = page.get_by_test_id("stMain")
        badge = main.locator("[data-testid='stMarkdownContainer']", has_text="shipped with the app, read-only")
        assert badge.count() >= 1 and "recorded 20" in badge.first.inner_text()  # the badge on the run's heading
        assert "Step 2 of 2." in _caption(page)  # a finished run opens at its end
        main.get_by_test_id("stButtonGroup").get_by_text("2×", exact=True).click()
        settled(page, PAGES["live"])
        main.get_by_role("button", name="Play", exact=True).click()
        seen = []
        for k in (0, 1, 2):
            want = "Before pruning." if k == 0 else f"Step {k} of 2."
            page.wait_for_function("(w) => { const b = document.querySelector('.st-key-replay_caption');"
                                   " return b && b.innerText.includes(w); }", arg=want, timeout=30_000)
            seen.append(_caption(page))
            if k == 1:
                screenshot(page, "pack_live_replay")
        main.get_by_role("button", name="Play", exact=True).wait_for(timeout=30_000)  # it stopped at the end
        settled(page, PAGES["live"])
        no_exception(page)
        assert "removed L" in seen[1] and ("regret" in seen[1] or "agrees" in seen[1]) and "[" in seen[1]
        assert "Distillation" in seen[2] and "Distillation" not in seen[1]
        assert page.locator(".layer-removed").count() == 2
        page.close()
