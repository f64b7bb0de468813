"""Small reusable pieces of page: the layer strip, run pickers, status badges, starting runs, errors.

Widgets here read the store through :mod:`ui.cached_store` and never compute a model.
"""

from __future__ import annotations

import html
import time
import uuid
from collections.abc import Iterable
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitAPIException

from core.config import ConfigError
from core.jobs.cancel import cancel_run as _cancel_run
from core.runs.events import Stage, stage_label
from core.runs.record import Run, RunStatus

from . import cached_store, state, theme

LIVE_PAGE = "pages/live.py"
RUN_PARAM = "run"

#: Material icons (rendered by Streamlit's own font, so they show on machines without emoji fonts)
STATUS_ICONS = {"queued": ":material/hourglass_top:", "running": ":material/sync:", "done": ":material/check_circle:",
                "failed": ":material/error:", "cancelled": ":material/cancel:", "interrupted": ":material/warning:"}
PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def chart(fig: Any, key: str) -> None:
    """A Plotly figure with our template (not Streamlit's theme, which would override the colours)."""
    st.plotly_chart(fig, theme=None, key=key, config=PLOTLY_CONFIG)


def param_count(n: float) -> str:
    """A parameter count a person reads at a glance: 4,224 or 1.18 M."""
    return f"{n / 1e6:.2f} M" if abs(n) >= 100_000 else f"{int(n):,}"


def page_header(title: str, subtitle: str) -> None:
    st.markdown(theme.CSS, unsafe_allow_html=True)
    st.title(title)
    st.caption(subtitle)


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def layer_strip_html(n_original: int, removed_order: Iterable[int], next_layer: int | None = None) -> str:
    """HTML for a row of ``n_original`` layer cells: removed ones greyed out with the order they went in,
    the layer about to go (``next_layer``) outlined."""
    order = {int(layer): i + 1 for i, layer in enumerate(removed_order)}
    cells = []
    for layer in range(n_original):
        if layer in order:
            cls, tag = "layer-cell layer-removed", f"{ordinal(order[layer])} out"
        else:
            cls, tag = "layer-cell layer-kept", "kept"
        if next_layer is not None and layer == next_layer and layer not in order:
            cls += " layer-next"
            tag = "next"
        title = f"layer {layer}: " + (f"removed {ordinal(order[layer])}" if layer in order else "kept")
        cells.append(f'<div class="{cls}" title="{html.escape(title)}"><span class="idx">L{layer}</span>'
                     f'<span class="tag">{tag}</span></div>')
    return '<div class="layer-strip">' + "".join(cells) + "</div>"


def layer_strip(n_original: int, removed_order: Iterable[int], next_layer: int | None = None) -> None:
    st.markdown(layer_strip_html(n_original, removed_order, next_layer), unsafe_allow_html=True)


def family_legend(families: Iterable[str]) -> None:
    chips = "".join(f'<span class="legend-chip" style="background:{theme.family_color(f)}">'
                    f"{html.escape(theme.family_label(f))}</span>" for f in families)
    st.markdown(chips, unsafe_allow_html=True)


def run_label(run: Run) -> str:
    """``[done] Random-forest fusion · e5-small · TREC · 07 Dec 14:02 · 811412``; a recorded run (shipped with the
    app) reads ``[recorded] ... · 07 Dec 2026 · ...`` with the day it finished."""
    what = theme.strategy_label(run.strategy) if run.kind == "prune" else run.kind
    if run.recorded:
        when = time.strftime("%d %b %Y", time.gmtime(run.finished_at or run.created_at))
        return f"[recorded] {what} · {run.model} · {state.dataset_label(run.dataset)} · {when} · {run.id[-6:]}"
    when = time.strftime("%d %b %H:%M", time.localtime(run.created_at))
    return f"[{run.status}] {what} · {run.model} · {state.dataset_label(run.dataset)} · {when} · {run.id[-6:]}"


RECORDED_BADGE = ":blue-badge[:material/inventory_2: recorded]"


def recorded_badge(run: Run) -> None:
    """For a recorded run: a badge with the day it was recorded, its budget and precision (read-only)."""
    note = cached_store.recorded_note(run)
    if note:
        st.markdown(f"{RECORDED_BADGE} {note} · shipped with the app, read-only")


def pick_run(runs: list[Run], key: str, label: str = "Run", default_id: str | None = None) -> Run | None:
    """A selectbox over ``runs`` (newest first); returns the chosen run."""
    if not runs:
        return None
    ids = [r.id for r in runs]
    index = ids.index(default_id) if default_id in ids else 0
    by_id = {r.id: r for r in runs}
    chosen = st.selectbox(label, ids, index=index, key=key, format_func=lambda i: run_label(by_id[i]))
    return by_id.get(chosen)


def query_run_ids() -> list[str]:
    """Run ids attached through the URL (``?run=a,b``)."""
    raw = st.query_params.get_all(RUN_PARAM)
    ids: list[str] = []
    for value in raw:
        ids += [v for v in str(value).split(",") if v]
    return ids


def set_query_runs(ids: list[str]) -> None:
    st.query_params[RUN_PARAM] = ",".join(ids)


def go_live(ids: list[str]) -> None:
    """Open the Live page attached to ``ids`` (falls back to a message when pages are not registered,
    e.g. a page file run on its own)."""
    st.session_state["attached_runs"] = list(ids)
    try:
        st.switch_page(LIVE_PAGE, query_params={RUN_PARAM: ",".join(ids)})
    except StreamlitAPIException:
        set_query_runs(ids)
        st.success(f"Started {len(ids)} run(s): {', '.join(ids)}. Open the Live pruning page to watch.")


def start_runs(strategies: list[str], *, model_key: str | None = None, dataset_key: str | None = None,
               **overrides: Any) -> list[str] | None:
    """Validate configs for ``strategies`` and hand them to the runner (one worker, run in order, sharing
    the cached teacher). Shows an ``st.error`` and returns None when a value is invalid."""
    if not strategies:
        st.error("Pick at least one strategy to start a run.")
        return None
    try:
        configs = [state.prune_config(s, model_key, dataset_key, **overrides) for s in strategies]
    except ConfigError as exc:
        st.error(f"Cannot start: {exc}. Fix the value on the Setup page and try again.")
        return None
    group = uuid.uuid4().hex[:8] if len(configs) > 1 else None
    try:
        ids = cached_store.submit("prune", configs, group_id=group)
    except Exception as exc:  # e.g. the store folder is read-only
        st.error(f"Could not start the run ({type(exc).__name__}: {exc}). Check that the run store folder "
                 f"{cached_store.root()} is writable, then try again.")
        return None
    return ids


def cancel_run(run_id: str) -> None:
    _cancel_run(cached_store.store(), run_id)


def any_active(runs: Iterable[Run]) -> bool:
    return any(r.active for r in runs)


def empty_state(message: str, page: str | None = None, label: str | None = None) -> None:
    """An explanation of what to do next, with a link to the page that does it when pages are registered."""
    problem = cached_store.pack_problem()
    st.info(message + (f"\n\n{problem}" if problem else ""), icon="💡")
    if page:
        page_link(page, label or "Go there", "➡️")


def page_link(page: str, label: str, icon: str | None = None) -> None:
    """A link to another page of the app; nothing when the pages are not registered (a page run on its own)."""
    try:
        st.page_link(page, label=label, icon=icon)
    except (StreamlitAPIException, KeyError):
        pass


def show_error(what: str, exc: BaseException, todo: str) -> None:
    st.error(f"{what}: {type(exc).__name__}: {exc}. {todo}")


def run_heading(run: Run, title: str, key_prefix: str) -> None:
    """A run's title with its status icon, what it runs on, and a Cancel button while it is active."""
    head, button = st.columns([5, 1])  # in a narrow card the button shrinks to its icon, never to a cut word
    head.markdown(f"### {STATUS_ICONS.get(run.status, '')} {title}")
    head.caption(f"{run.model} · {state.dataset_label(run.dataset)} · run `{run.id}`")
    with head:
        recorded_badge(run)
    if run.active and not run.recorded:
        if button.button("", icon=":material/cancel:", key=f"{key_prefix}{run.id}",
                         help="Cancel this run: it stops within one training batch"):
            cancel_run(run.id)
            st.toast("Cancel requested: the worker stops after the current batch.")
            st.rerun()


def weak_teacher_note(run: Run) -> None:
    """A warning on a run that went on with a teacher that did not beat the majority-class baseline."""
    if cached_store.run_summary(run).weak_teacher:
        st.warning("**Weak teacher (pruned anyway).** The teacher did not beat the majority-class baseline, so "
                   "this run's layer choices and accuracies may be noise.", icon=":material/report:")


def _resubmit(run: Run, config: dict[str, Any]) -> None:
    try:
        ids = cached_store.submit(run.kind, [config], group_id=None, strategy=run.strategy)
    except Exception as exc:  # e.g. the store folder is read-only
        show_error("Could not start the run", exc, f"Check that {cached_store.root()} is writable, then try again.")
        return
    st.session_state["attached_runs"] = ids
    set_query_runs(ids)
    st.rerun()


def restart_buttons(run: Run, key_prefix: str) -> None:
    """For a run that ended unfinished: **Start again with the same settings** (its stored config); for one
    the teacher guard stopped, also **Prune anyway** (the same config with ``allow_weak_teacher``)."""
    if run.status not in (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED):
        return
    last = cached_store.store().last_event(run.id)
    weak = last is not None and last.stage == Stage.WEAK_TEACHER
    cols = st.columns(2 if weak else 1)
    if weak and cols[0].button("Prune anyway", key=f"{key_prefix}anyway_{run.id}", icon=":material/warning:",
                               help="Go on with this teacher; the run is flagged 'weak teacher' wherever it is "
                                    "listed or compared."):
        _resubmit(run, {**run.config, "allow_weak_teacher": True})
    if cols[-1].button("Start again with the same settings", key=f"{key_prefix}again_{run.id}",
                       icon=":material/replay:", type="secondary" if weak else "primary"):
        _resubmit(run, dict(run.config))


def run_progress(run: Run, failed_hint: str, cancelled: str) -> None:
    """The run's state from the store: a progress bar with the current stage (its label from
    :class:`core.runs.events.Stage`) and message while it runs, or what happened to it (failed with
    ``failed_hint``, interrupted, ``cancelled``, finished in N min)."""
    status = run.status
    last = cached_store.store().last_event(run.id)
    if status == RunStatus.FAILED and last is not None and last.stage == Stage.WEAK_TEACHER:
        st.warning(f"**Stopped before pruning.** {last.message}", icon=":material/school:")
    elif status == RunStatus.FAILED:
        st.error(f"The run failed: {run.error or (last or {}).get('message')}. {failed_hint}")
    elif status == RunStatus.INTERRUPTED:
        st.warning(f"**Interrupted.** {run.error or 'The worker stopped.'}")
    elif status == RunStatus.CANCELLED:
        st.info(cancelled)
    elif status == RunStatus.DONE:
        took = (run.finished_at or 0) - (run.started_at or 0)
        st.progress(1.0, text=f"**Finished** in {took / 60:.1f} min")
    elif last is None:
        st.progress(0.0, text=cached_store.waiting_text(run))  # waiting for a slot (where, when) or its turn
    else:
        value = min(max(float(last.progress or 0.0), 0.0), 1.0)
        st.progress(value, text=f"**{stage_label(last.stage)}** · {last.message}")
