"""The Playground's offer for a recorded run (issue 30 item 4): the pack ships no weights, so its teacher and
compressed model are not here. One click reruns the recorded configuration as an ordinary background run (the job
layer's worker): its teacher is fine-tuned first and cached, so it opens in the Playground as soon as the run's first
step is stored (layer switching works on it), and the compressed model once the run finishes. The estimate of the
time comes from this machine's own finished runs of the model, else from the recorded run (measured where it was
recorded, and said so)."""

from __future__ import annotations

import statistics

import streamlit as st

from core.pruning.config import PruneConfig
from core.runs.record import Run, RunStatus

from . import cached_store, state, widgets

RERUN_KEY = "pg_rerun"
POLL_S = 2.0


def recorded_runs() -> list[Run]:
    """The recorded pruning runs, random-forest fusion on the selected dataset first."""
    found = [r for r in cached_store.runs(kind="prune") if r.recorded]
    return sorted(found, key=lambda r: (r.dataset != state.dataset(), r.strategy != "rf_fusion"))


def rerun_config(run: Run) -> dict:
    """The recorded run's configuration as a run of one's own (its study's bookkeeping left out)."""
    return PruneConfig.from_dict(run.config).to_dict()


def _minutes(seconds: list[float]) -> str:
    return f"about {statistics.median(seconds) / 60:.0f} min"


def estimate(run: Run) -> str:
    """How long its teacher and the whole run take: from this machine's finished runs of the model, else from the
    recorded run itself (on the machine that recorded it)."""
    own = [cached_store.run_summary(r).timings for r in cached_store.own_runs(kind="prune", status="done",
                                                                                model=run.model)]
    teach = [float(t["teacher"]) for t in own if t.get("teacher", 0) > 60]  # a teacher trained, not read from cache
    total = [float(t["total"]) for t in own if t.get("total")]
    if teach and total:
        return (f"Here: the teacher {_minutes(teach)}, a whole run {_minutes(total)} (from {len(total)} run(s) of "
                f"{run.model} on this machine).")
    timings = cached_store.run_summary(run).timings
    precision = cached_store.run_summary(run).precision or "its precision"
    if timings.get("teacher") and timings.get("total"):
        return (f"On the machine that recorded it ({precision}): the teacher took {timings['teacher'] / 60:.0f} min, "
                f"the whole run {timings['total'] / 60:.0f} min; no run of {run.model} has finished here yet to say "
                "how long it takes on this one (a CPU without bf16 units takes about twice as long).")
    return "No timing is known for this model here yet."


def _progress(run_id: str) -> None:
    run = cached_store.get_run(run_id)
    if run is None:
        st.session_state.pop(RERUN_KEY, None)
        return
    widgets.run_progress(run, "Check the model and dataset on the Setup page, then try again.",
                         "Cancelled: nothing to open.")
    teacher_ready = not cached_store.steps(run).empty  # step 0 is stored once the teacher is cached
    was = st.session_state.get(f"{RERUN_KEY}_state")
    now = (teacher_ready, run.status == RunStatus.DONE)
    st.session_state[f"{RERUN_KEY}_state"] = now
    if was is not None and was != now:
        st.rerun()  # the teacher (or the compressed model) can be opened now: redraw the page's choices
    if teacher_ready and run.active:
        st.caption("Its teacher is cached: choose it in the list above to switch its layers while the run prunes.")


def offer(title: str) -> bool:
    """Draw the offer for the recorded runs (False when there are none). ``title`` heads it."""
    runs = recorded_runs()
    if not runs:
        return False
    st.markdown(f"**{title}**")
    by_id = {r.id: r for r in runs}
    run = by_id[st.selectbox("Recorded run", list(by_id), format_func=lambda i: widgets.run_label(by_id[i]),
                             key="pg_recorded")]
    widgets.recorded_badge(run)
    st.caption("Recorded runs ship without their weights (they stay out of git): the teacher and the compressed model "
               "are not on this machine. Rerun it here as an ordinary background run: it fine-tunes the teacher first "
               "(cached, then it opens here and its layers can be switched off), then prunes as recorded. "
               + estimate(run))
    active = widgets.any_active(cached_store.own_runs())
    if st.button("Rerun it here", key="pg_rerun_btn", icon=":material/replay:", type="primary", disabled=active,
                 help="Other runs are training: wait for them to finish first." if active else None):
        try:
            st.session_state[RERUN_KEY] = cached_store.submit("prune", [rerun_config(run)])[0]
        except Exception as exc:  # e.g. the store folder is read-only
            widgets.show_error("Could not start the run", exc, "Check that the run store folder is writable.")
    rerun = st.session_state.get(RERUN_KEY)
    if rerun:
        polling = bool((found := cached_store.get_run(rerun)) and found.active)
        st.fragment(_progress, run_every=POLL_S if polling else None)(rerun)
    return True
