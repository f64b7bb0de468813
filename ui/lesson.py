"""The guided lesson (issue 31): ten short chapters, each setting the app's state (dataset, a recorded run, the step,
the layers switched off) and explaining one idea beside the live widget it is about.

Paced like LLM Visualization: a chapter opens with a few sentences and a **Next** button; Next shows the action (the
widget, already set); **Next chapter** moves on. Three chapters ask the learner to commit to a guess before the
answer appears (:mod:`ui.lesson_guesses`); the running score is kept for the session. The chapter is in the URL
(``?chapter=N``), so an instructor can link one. Everything comes from the store and the recorded pack: no chapter
waits for training, and a chapter whose recorded run is not there says so in a line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import streamlit as st

from . import cached_store, lesson_chapters, lesson_guesses, links, state, widgets
from .lesson_data import Ctx, context

CHAPTER_KEY = "lesson_chapter"


@dataclass(frozen=True)
class Chapter:
    slug: str
    title: str
    #: the few sentences before the action (Markdown; may name the lesson's dataset through ``{dataset}``)
    intro: str
    action: Callable[[Ctx], None]
    #: the name of the guess this chapter scores (None: no guess)
    guess: str | None = None


CHAPTERS: tuple[Chapter, ...] = (
    Chapter("sentence", "What one layer does to a sentence", lesson_chapters.SENTENCE_INTRO, lesson_chapters.sentence),
    Chapter("signals", "Twelve signals in five families", lesson_chapters.SIGNALS_INTRO, lesson_chapters.signals),
    Chapter("guess-layer", "Your guess: which layer can go first?", lesson_guesses.LAYER, lesson_guesses.layer,
            guess="layer"),
    Chapter("ranker", "Why a learned ranker, and what SHAP says about it", lesson_chapters.RANKER_INTRO,
            lesson_chapters.ranker),
    Chapter("guess-duel", "Your guess: the forest or the best single signal?", lesson_guesses.DUEL,
            lesson_guesses.duel, guess="duel"),
    Chapter("noise", "Noise: how sure is the measured truth?", lesson_chapters.NOISE_INTRO, lesson_chapters.noise),
    Chapter("recovery", "Recovery: fine-tuning after each removal", lesson_chapters.RECOVERY_INTRO,
            lesson_chapters.recovery),
    Chapter("guess-kd", "Your guess: what does distillation win back?", lesson_guesses.KD, lesson_guesses.kd,
            guess="kd"),
    Chapter("size", "The accuracy-to-size trade-off", lesson_chapters.SIZE_INTRO, lesson_chapters.size),
    Chapter("merging", "Pruning against merging", lesson_chapters.MERGING_INTRO, lesson_chapters.merging),
)
GUESSES = tuple(c.guess for c in CHAPTERS if c.guess)


def _parse_chapter(raw: str) -> int:
    """A link's chapter (its number or slug), opened on its live view: an instructor links a view, not a text."""
    slugs = [c.slug for c in CHAPTERS]
    if raw in slugs:
        n = slugs.index(raw) + 1
    else:
        n = int(raw)  # ValueError: not a chapter
    if not 1 <= n <= len(CHAPTERS):
        nearest = min(max(n, 1), len(CHAPTERS))
        links.notice(f"The link's chapter {n} does not exist (chapters 1–{len(CHAPTERS)}): showing chapter {nearest}.")
        n = nearest
    _open(n)
    return n


def current() -> int:
    n = int(st.session_state.get(CHAPTER_KEY, 1))
    return min(max(n, 1), len(CHAPTERS))


def go(n: int) -> None:
    st.session_state[CHAPTER_KEY] = min(max(n, 1), len(CHAPTERS))


def _opened_key(n: int) -> str:
    return f"lesson_open_{n}"


def _header(ctx: Ctx, n: int) -> Any:
    chapter = CHAPTERS[n - 1]
    top, right = st.columns([3, 1], vertical_alignment="bottom")
    top.progress(n / len(CHAPTERS), text=f"**Chapter {n} of {len(CHAPTERS)}** · {chapter.title}")
    slot = right.container(key="lesson_score")  # filled after the chapter: a reveal counts at once
    if ctx.runs.dataset is not None:
        others = [state.dataset_label(d) for d in ctx.runs.datasets if d != ctx.dataset]
        st.caption(f"The lesson reads recorded runs of **{ctx.runs.model}** on **{ctx.dataset_label()}**"
                   + (f" (also recorded: {', '.join(others)}; pick one in the sidebar)" if others else "") + ".")
    return slot


def _nav(n: int) -> None:
    st.divider()
    back, jump, nxt = st.columns([1, 2, 1], vertical_alignment="bottom")
    back.button("Back", key="lesson_back", icon=":material/arrow_back:", disabled=n == 1, on_click=go, args=(n - 1,),
                width="stretch")
    with jump:
        st.selectbox("Jump to a chapter", range(1, len(CHAPTERS) + 1), index=n - 1, key=f"lesson_jump_{n}",
                     format_func=lambda i: f"{i}. {CHAPTERS[i - 1].title}", on_change=_jump, args=(f"lesson_jump_{n}",),
                     label_visibility="collapsed")
    if n < len(CHAPTERS):
        nxt.button("Next chapter", key="lesson_next_chapter", type="primary", icon=":material/arrow_forward:",
                   on_click=go, args=(n + 1,), width="stretch")
    else:
        nxt.button("Start again", key="lesson_restart", icon=":material/replay:", on_click=_restart, width="stretch")


def _jump(key: str) -> None:
    go(int(st.session_state[key]))


def _restart() -> None:
    st.session_state[lesson_guesses.SCORE_KEY] = {}
    for k in [k for k in st.session_state if str(k).startswith(("lesson_open_", "lesson_guess_", "lesson_shown_"))]:
        del st.session_state[k]
    go(1)


def _open(n: int) -> None:
    st.session_state[_opened_key(n)] = True


def _unknown_runs(ctx: Ctx) -> None:
    """A ``?run=`` the store does not hold (deleted, or from another machine): say so, show the lesson's runs."""
    asked = widgets.query_run_ids()
    missing = [i for i in asked if cached_store.get_run(i) is None]
    if missing:
        links.notice(f"Run(s) {', '.join(missing)} from the link are not in this store: the lesson shows the recorded "
                     f"runs of {ctx.dataset_label()} instead.")


def draw() -> None:
    """The lesson page's body."""
    links.value("chapter", CHAPTER_KEY, _parse_chapter, lambda v: str(int(v)), "chapter")
    st.session_state.setdefault(CHAPTER_KEY, 1)
    ctx = context()
    _unknown_runs(ctx)
    if ctx.runs.dataset is not None:  # the chapter sets the app's model and dataset (the sidebar follows)
        state.set_model(ctx.model)
        state.set_dataset(ctx.dataset)
    n = current()
    score_slot = _header(ctx, n)
    chapter = CHAPTERS[n - 1]
    st.markdown(f"## {n}. {chapter.title}")
    with st.container(key="lesson_intro"):
        st.markdown(chapter.intro.format(dataset=ctx.dataset_label()))
    if not st.session_state.get(_opened_key(n)):
        st.button("Next", key=f"lesson_go_{n}", type="primary", icon=":material/arrow_downward:", on_click=_open,
                  args=(n,), help="Show the live view this chapter is about.")
    else:
        with st.container(key="lesson_action", border=True):
            chapter.action(ctx)
    _nav(n)
    score_slot.markdown(f"**{lesson_guesses.score_line()}**")  # .st-key-lesson_score
    if n == len(CHAPTERS) and len(lesson_guesses.score()) == len(GUESSES):
        st.success(f"Lesson done. {lesson_guesses.score_line()}. Every guess was scored against a measurement with "
                   "its interval; the bank's other seeds show how much of a good guess was luck.",
                   icon=":material/school:")
