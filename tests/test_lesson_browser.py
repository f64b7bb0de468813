"""The lesson as a student meets it (issue 31 item 5), in a real browser: a walk from the first chapter to the last
on a fresh store with a recorded pack, making the three guesses and seeing each reveal; and copied links opened in a
new browser context that find the same text, layers switched off and step. Screenshots land in
``tests/artifacts/lesson_*.png`` and ``tests/artifacts/link_*.png``."""

from __future__ import annotations

import re
import shutil
from contextlib import AbstractContextManager
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from core.lesson.readings import PRESETS
from tests.lesson_pack import LessonPack, shared_lesson_pack
from tests.test_browser import no_exception, reran, screenshot, settled, streamlit_server

pytestmark = pytest.mark.browser

N_CHAPTERS = 10
INTERVAL = re.compile(r"\[[+-]?\d+\.\d+, [+-]?\d+\.\d+\]")


@pytest.fixture(scope="module")
def lesson_pack(tmp_path_factory) -> LessonPack:
    return shared_lesson_pack(tmp_path_factory)


@pytest.fixture()
def served(lesson_pack, monkeypatch):
    """The server's environment (it inherits os.environ): the tiny pack, its bank and readings."""
    monkeypatch.setenv("PRUNE_PACK_DIR", str(lesson_pack.pack))
    monkeypatch.setenv("PRUNE_BANK_DIR", str(lesson_pack.bank))
    monkeypatch.setenv("PRUNE_READINGS_DIR", str(lesson_pack.readings))
    return lesson_pack


def _main(page) -> str:
    return page.get_by_test_id("stMain").inner_text()


def _wait_text(page, text: str, timeout_ms: int = 60_000) -> None:
    page.wait_for_function("(t) => document.querySelector('[data-testid=\"stMain\"]').innerText.includes(t)",
                           arg=text, timeout=timeout_ms)


def _click(page, key: str) -> None:
    page.locator(f".st-key-{key} button").first.click()


def _rerun(page, title: str = "Lesson") -> AbstractContextManager[None]:
    """``with _rerun(page): <a click>``: waits until the click's rerun has run (tests.test_browser.reran)."""
    return reran(page, title)


def _score(page) -> str:
    return page.locator(".st-key-lesson_score").inner_text()


def _guess_layer(page) -> None:
    """Click the L4 column of the step-1 tiles, then reveal."""
    box = page.locator(".st-key-lesson_heat_pick .nsewdrag").first.bounding_box()
    with _rerun(page):
        page.mouse.click(box["x"] + box["width"] * 4.5 / 12, box["y"] + box["height"] * 4.5 / 12)
    picked = page.locator(".st-key-lesson_pick_layer [aria-checked='true']")
    assert picked.count() == 1 and picked.inner_text().strip() == "L4"  # the click on the heatmap made the guess
    with _rerun(page):
        _click(page, "lesson_reveal_layer")
    _wait_text(page, "Luck or insight")
    settled(page, "Lesson")
    text = _main(page)
    assert "Your pick: L4" in text and "The forest's pick" in text and "Most accurate removal" in text
    assert "bank seed(s)" in text and INTERVAL.search(text)


def _guess_duel(page) -> None:
    assert page.locator(".st-key-lesson_reveal_duel button").first.is_disabled()  # commit first
    with _rerun(page):
        page.get_by_text("Too close to call", exact=True).click()
    with _rerun(page):
        _click(page, "lesson_reveal_duel")
    _wait_text(page, "Luck or insight")
    settled(page, "Lesson")
    text = _main(page)
    assert "Mean regret over the steps" in text and "Final test accuracy" in text and INTERVAL.search(text)


def _guess_kd(page) -> None:
    thumb = page.locator(".st-key-lesson_pick_kd input[type='range']").first
    thumb.focus()
    with _rerun(page):
        for _ in range(6):  # +3.0 points, in steps of 0.5
            thumb.press("ArrowRight")
    with _rerun(page):
        _click(page, "lesson_reveal_kd")
    _wait_text(page, "Won back")
    settled(page, "Lesson")
    text = _main(page)
    assert "Your guess: +3.0 points" in text and "Before distillation" in text and INTERVAL.search(text)


GUESSES = {3: _guess_layer, 5: _guess_duel, 8: _guess_kd}


def test_walk_the_lesson_from_the_first_chapter_to_the_last(browser, served, tmp_path):
    with streamlit_server(tmp_path / "fresh", tmp_path / "streamlit.log") as (base, _):
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{base}/lesson")
        settled(page, "Lesson", timeout_ms=120_000)
        nav = page.get_by_test_id("stSidebarNav")
        assert nav.get_by_text("Lesson", exact=True).count() == 1
        for n in range(1, N_CHAPTERS + 1):
            _wait_text(page, f"Chapter {n} of {N_CHAPTERS}")
            assert page.locator(".st-key-lesson_action").count() == 0  # the text first, then Next
            with _rerun(page):
                _click(page, f"lesson_go_{n}")
            page.locator(".st-key-lesson_action").wait_for(timeout=60_000)
            settled(page, "Lesson")
            no_exception(page)
            if n in GUESSES:
                GUESSES[n](page)
                done = sum(1 for k in GUESSES if k <= n)
                assert f"of {done} guess" in _score(page), _score(page)  # the running score counts it at once
            text = _main(page)
            assert "not in the pack yet" not in text and str(served.pack) not in text, n
            assert f"chapter={n}" in page.url
            screenshot(page, f"lesson_ch{n:02d}")
            if n < N_CHAPTERS:
                with _rerun(page):
                    _click(page, "lesson_next_chapter")
        _wait_text(page, "Lesson done")
        assert f"of {len(GUESSES)} guesses" in _score(page)
        page.close()
    for n in range(1, N_CHAPTERS + 1):
        assert (Path(__file__).parent / "artifacts" / f"lesson_ch{n:02d}.png").stat().st_size > 10_000


def _copied_link(page) -> str:
    from playwright.sync_api import expect

    page.get_by_role("button", name="Copy link").click()
    box = page.get_by_test_id("stPopoverBody").frame_locator("iframe").locator("#link")
    box.wait_for(timeout=10_000)
    expect(box).to_have_value(page.url, timeout=10_000)  # the address of what is on screen (read twice a second)
    url = box.input_value()
    page.keyboard.press("Escape")
    return url


def _query(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlparse(url).query).items()}


def _notices(page) -> list[str]:
    return [a.inner_text() for a in page.locator("[data-testid='stAlert']").all() if "link_off" in a.inner_text()]


def test_a_copied_link_opens_the_same_view_in_a_new_browser(browser, served, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(served.store, store)  # the tiny runs with their weights: the Playground opens them
    run_id = served.ids["rf_fusion"]
    text = "we watched a great tennis match"
    with streamlit_server(store, tmp_path / "streamlit.log", cancel_runs=False) as (base, _):
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        # the Playground: a typed text and two layers switched off
        page.goto(f"{base}/playground?run={run_id}")
        settled(page, "Playground", timeout_ms=120_000)
        box = page.get_by_label("Type or paste a text")
        box.fill(text)
        with _rerun(page, "Playground"):
            box.press("Control+Enter")
        pills = page.get_by_test_id("stButtonGroup").first
        for layer in (2, 5):
            with _rerun(page, "Playground"):
                pills.get_by_role("button", name=f"layer {layer}", exact=True).click()
        _wait_text(page, "Teacher without layers 2, 5")
        link = _copied_link(page)
        assert _query(link) == {"run": run_id, "text": text, "off": "2,5", "dataset": "trec"}
        # the Live replay at step 1
        page.goto(f"{base}/live?run={run_id}")
        settled(page, "Live pruning", timeout_ms=120_000)
        slider = page.locator(f".st-key-replay_{run_id} input[type='range']").first
        slider.focus()
        with _rerun(page, "Live pruning"):
            slider.press("ArrowLeft")  # from the last step (2) to step 1
        page.wait_for_function("() => { const b = document.querySelector('.st-key-replay_caption');"
                               " return b && b.innerText.includes('Step 1'); }", timeout=30_000)
        settled(page, "Live pruning")
        live_link = _copied_link(page)
        assert _query(live_link)["step"] == "1" and _query(live_link)["run"] == run_id
        # the lesson's first chapter: a sentence and a layer switched off
        page.goto(f"{base}/lesson?chapter=1")
        settled(page, "Lesson", timeout_ms=120_000)
        picked_text = PRESETS["keywords"][1][0]  # the second preset sentence
        with _rerun(page):
            page.locator(".st-key-lesson_sentence").get_by_text(picked_text, exact=True).click()
        with _rerun(page):
            page.locator(".st-key-lesson_off").get_by_role("radio", name="L3", exact=True).click()
        _wait_text(page, "Without L3")
        lesson_link = _copied_link(page)
        assert {k: _query(lesson_link)[k] for k in ("chapter", "off", "text")} == {"chapter": "1", "off": "3",
                                                                                   "text": picked_text}
        page.close()

        for url, name in ((link, "playground"), (live_link, "live"), (lesson_link, "lesson")):
            context = browser.new_context(viewport={"width": 1600, "height": 1000})  # a fresh browser
            fresh = context.new_page()
            fresh.goto(url)
            settled(fresh, {"playground": "Playground", "live": "Live pruning", "lesson": "Lesson"}[name],
                    timeout_ms=120_000)
            fresh.wait_for_timeout(1500)
            no_exception(fresh)
            assert not _notices(fresh), _notices(fresh)
            if name == "playground":
                _wait_text(fresh, "Teacher without layers 2, 5")
                assert fresh.get_by_label("Type or paste a text").input_value() == text
            elif name == "live":
                assert "Step 1" in fresh.locator(".st-key-replay_caption").inner_text()
                assert fresh.locator(f".st-key-replay_{run_id} input[type='range']").first.input_value() == "1"
            else:
                _wait_text(fresh, "Without L3")
                assert fresh.get_by_role("radio", name=picked_text).is_checked()
                assert fresh.locator(".st-key-lesson_off [aria-checked='true']").inner_text().strip() == "L3"
            screenshot(fresh, f"link_{name}")
            context.close()
