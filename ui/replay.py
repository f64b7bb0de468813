"""The Live page's narrated replay of a finished pruning run (recorded or the user's own): play and pause, a speed,
a step slider, and one caption per step written from the stored data (:func:`core.pruning.narrate.narrate`).

Playing is the Live page's own polling pattern: the panel is an ``st.fragment`` whose ``run_every`` is the replay's
seconds per step while a replay plays (:func:`every`), and each run of the fragment moves the slider one step on
(:func:`controls`) until the last step, where it stops. Play, pause and a new speed change ``run_every``, so they
rerun the whole page; dragging the slider only reruns the panel.
"""

from __future__ import annotations

import time

import streamlit as st

from core.pruning.narrate import StoredSteps, narrate
from core.runs import artifacts
from core.runs.record import Run

from . import cached_store, theme

#: speed label -> seconds per step
SPEEDS = {"0.5×": 8.0, "1×": 4.0, "2×": 2.0, "4×": 1.0}
DEFAULT_SPEED = "1×"
SPEED_KEY = "replay_speed"
_EVERY_KEY = "_replay_every"  # the run_every the panel was drawn with


def step_key(run_id: str) -> str:
    return f"replay_{run_id}"


def _playing_key(run_id: str) -> str:
    return f"replay_play_{run_id}"


def _tick_key(run_id: str) -> str:
    return f"replay_tick_{run_id}"


def seconds_per_step() -> float:
    return SPEEDS.get(st.session_state.get(SPEED_KEY) or DEFAULT_SPEED, SPEEDS[DEFAULT_SPEED])


def is_playing(run_id: str) -> bool:
    return bool(st.session_state.get(_playing_key(run_id)))


def every(run_ids: list[str]) -> float | None:
    """The panel's ``run_every`` for the replay: seconds per step while one of ``run_ids`` plays, else None."""
    value = seconds_per_step() if any(is_playing(i) for i in run_ids) else None
    st.session_state[_EVERY_KEY] = value
    return value


@st.cache_data(show_spinner=False, max_entries=64)
def _captions(run_id: str, token: str) -> dict[int, str]:
    run = cached_store.get_run(run_id)
    if run is None:
        return {}
    choices = {k: cached_store.choice(run_id, k) for k in cached_store.artifact_steps(run_id, artifacts.CHOICE)}
    stored = StoredSteps(run_id, run.strategy, cached_store.steps(run), choices,
                         distilled=bool(run.config.get("distill", True)))
    return narrate(stored, cached_store.prune_intervals(run), cached_store.outcomes, theme.strategy_label,
                   oracle=lambda k: cached_store.step_table(run_id, k, artifacts.ORACLE_TABLE))


def captions(run: Run) -> dict[int, str]:
    """One caption per stored step of a finished run (step -> Markdown), computed once per change of the run."""
    return _captions(run.id, cached_store.version(run))


def _toggle(run_id: str, latest: int) -> None:
    key = step_key(run_id)
    if is_playing(run_id):
        st.session_state[_playing_key(run_id)] = False
        return
    if int(st.session_state.get(key, latest)) >= latest:
        st.session_state[key] = 0  # at the end: play from the start
    st.session_state[_playing_key(run_id)] = True
    st.session_state[_tick_key(run_id)] = time.monotonic()


def controls(run: Run, latest: int) -> int:
    """Play/pause, speed and the step slider of a finished run; while playing, one step further per
    :func:`seconds_per_step`. Returns the step to show."""
    key, playing = step_key(run.id), is_playing(run.id)
    st.session_state.setdefault(key, latest)
    st.session_state.setdefault(SPEED_KEY, DEFAULT_SPEED)
    if playing:
        now = time.monotonic()
        if now - float(st.session_state.get(_tick_key(run.id), 0.0)) >= 0.8 * seconds_per_step():
            st.session_state[key] = min(int(st.session_state[key]) + 1, latest)
            st.session_state[_tick_key(run.id)] = now
        if int(st.session_state[key]) >= latest:
            st.session_state[_playing_key(run.id)] = False  # the last step: stop here
    play, speed, slider = st.columns([1.2, 2.6, 6.2], vertical_alignment="bottom")
    play.button("Pause" if playing else "Play", key=f"replay_btn_{run.id}", on_click=_toggle, args=(run.id, latest),
                icon=":material/pause:" if playing else ":material/play_arrow:", type="primary", width="stretch",
                help="Replay the run step by step, as it happened, with a caption per step.")
    speed.segmented_control("Speed", list(SPEEDS), key=SPEED_KEY,
                            help=", ".join(f"{k}: {v:g} s per step" for k, v in SPEEDS.items()))
    shown = int(slider.slider("Replay: step", 0, latest, key=key,
                              help="Slide to any step: the charts below show the run as it was after it."))
    wanted = seconds_per_step() if is_playing(run.id) else None
    if wanted != st.session_state.get(_EVERY_KEY):
        st.session_state[_EVERY_KEY] = wanted
        st.rerun()  # play, pause, a new speed or the end: redraw the page with the new timer
    return shown


def caption(run: Run, step: int) -> None:
    """The step's caption, in a box the browser test (and a presenter) can find: ``.st-key-replay_caption``."""
    text = captions(run).get(step)
    if text:
        with st.container(border=True, key="replay_caption"):
            st.markdown(text)
