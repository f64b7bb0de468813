"""Live pruning: start runs, watch them (a fragment polls the run store), cancel, replay finished runs.

The run ids live in the URL (``?run=<id>[,<id>...]``), so a reload or a second tab re-attaches. The page
never waits on a run: the worker process writes to the store and the fragment re-reads it every
``POLL_S`` seconds while a run is active.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.fusion import read_choice
from core.models.registry import MODELS
from core.pruning.config import PruneConfig, strategy_keys
from core.runs import artifacts, noise
from core.runs.record import PruneSummary, Run
from core.signals import SIGNAL_KEYS
from core.teacher import teacher_lines
from ui import bounds, links, plots, replay, router, state, tables, theme, widgets
from ui import cached_store as ustore

router.ensure_routed()  # a cold server's first deep link runs this file without app.py

POLL_S = 1.5

state.init()
widgets.page_header("Live pruning", "One layer per step: signals → choice → removal → fine-tuning, then "
                                    "distillation. Runs continue in the background if you leave this page.")


# ------------------------------------------------------------------------------------------ start
def _start_form() -> None:
    keys = list(strategy_keys())
    b = state.budgets()
    with st.form("start_form", border=False):
        c1, c2, c3 = st.columns([3, 1, 1])
        chosen = c1.multiselect("Strategies (several run one after another, sharing the cached teacher)", keys,
                                default=["rf_fusion"], format_func=theme.strategy_label, key="live_strategies")
        layers = bounds.number_input(c2, "Layers to remove", PruneConfig.BOUNDS["layers_to_remove"],
                                     b["layers_to_remove"], hi=bounds.removable_layers(state.model()),
                                     key="live_layers")
        epochs = bounds.number_input(c3, "Epochs per step", PruneConfig.BOUNDS["step_epochs"], b["step_epochs"], 0.5,
                                     key="live_epochs")
        st.caption(f"Model **{state.model_label(state.model())}**, dataset **{state.dataset_label(state.dataset())}**"
                   " (change them in the sidebar; rows, length, seed and distillation on the Setup page).")
        submitted = st.form_submit_button("Start", type="primary", icon=":material/play_arrow:")
    if submitted:
        ids = widgets.start_runs(list(chosen), layers_to_remove=int(layers), step_epochs=float(epochs))
        if ids:
            st.session_state["attached_runs"] = ids
            widgets.set_query_runs(ids)
            st.rerun()


all_runs = ustore.runs(kind="prune")
by_id = {r.id: r for r in all_runs}
requested = widgets.query_run_ids()
missing = [i for i in requested if i not in by_id]
attached = [i for i in requested if i in by_id]
if missing:
    st.error(f"Run(s) {', '.join(missing)} from the address are not in the store at `{ustore.shown_root()}`: "
             "they may have been deleted. Pick another run in the sidebar, or start a new one below.")
if not requested:
    attached = [i for i in st.session_state.get("attached_runs", []) if i in by_id]
if not attached and not requested and all_runs:
    active = [r for r in all_runs if r.active]
    own = [r for r in all_runs if not r.recorded]
    if active or own:
        first = (active or own)[0]
        attached = [r.id for r in own if first.group_id and r.group_id == first.group_id] or [first.id]
        attached = sorted(attached, key=lambda i: by_id[i].created_at)
    else:  # a fresh store: replay a recorded run (random-forest fusion on the selected dataset when there is one)
        fits = sorted(all_runs, key=lambda r: (r.dataset != state.dataset(), r.strategy != "rf_fusion"))
        attached = [fits[0].id]

with st.expander("Start a new run", expanded=not attached, key=links.advanced_key("live_start")):
    _start_form()

def _watch() -> None:
    """Attach to the run picked in the sidebar (with the other runs of its group, side by side)."""
    picked = by_id.get(st.session_state.get("live_switch"))
    if picked is None:
        return
    group = [r.id for r in all_runs if picked.group_id and r.group_id == picked.group_id and not picked.recorded]
    ids = sorted(group or [picked.id], key=lambda i: by_id[i].created_at)
    st.session_state["attached_runs"] = ids
    widgets.set_query_runs(ids)


if all_runs:
    with st.sidebar:
        st.session_state["live_switch"] = attached[0] if attached else None
        st.selectbox("Watch another run", [r.id for r in all_runs], key="live_switch", on_change=_watch,
                     format_func=lambda i: widgets.run_label(by_id[i]), placeholder="pick a run")

if not attached:
    if not missing:
        widgets.empty_state("No run yet: pick strategies above and press Start. The tiny model on the keywords "
                            "dataset finishes in a minute or two; the 12-layer e5 model takes minutes per step.")
    router.stop_page()

if sorted(requested) != sorted(attached):
    widgets.set_query_runs(attached)


# ------------------------------------------------------------------------------------------ panel
def _n_original(run: Run, steps: pd.DataFrame) -> int:
    if not steps.empty and "n_layers" in steps:
        return int(steps.iloc[0]["n_layers"])
    spec = MODELS.get(run.model)
    return spec.num_layers if spec is not None else 12


def _view_step(run: Run, steps: pd.DataFrame, compact: bool) -> int:
    """The step to show: the latest while running; once finished, the narrated replay (play, speed, slider and a
    caption per step: ui.replay), or a plain slider beside other runs."""
    latest = int(steps["step"].max()) if not steps.empty else 0
    if run.active or latest == 0:
        return latest
    if not compact:
        links.number("step", replay.step_key(run.id), list(range(latest + 1)), "step")  # ?step= opens the replay there
        view = replay.controls(run, latest)
        replay.caption(run, view)
        return view
    return int(st.slider("Replay: step", 0, latest, latest, key=f"replay_side_{run.id}",
                         help="Slide back to see the run as it was after each step."))


def _detail_step(run: Run, view: int) -> int:
    """While running: the step in progress (its choice is already stored); in replay: the step viewed."""
    if run.active and view + 1 in ustore.artifact_steps(run.id, artifacts.CHOICE):
        return view + 1
    return view


def _details(run: Run, steps: pd.DataFrame, shown: int) -> None:
    """Heatmap of the signals and the ranker's predictions at step ``shown``."""
    if shown == 0:
        st.caption("Signals and the ranker's choice appear once step 1 has been computed.")
        return
    choice = ustore.choice(run.id, shown)
    chosen = choice.get("layer")
    signals = ustore.step_table(run.id, shown, artifacts.SIGNALS_TABLE)
    heat_col, pred_col = st.columns([3, 2])
    with heat_col:
        if signals is None:
            st.caption(f"Step {shown}: signals are being computed…")
        else:
            data = tables.heatmap_data(signals, list(SIGNAL_KEYS), _n_original(run, steps))
            widgets.chart(plots.signal_heatmap(data, f"Signals at step {shown} (L{chosen} chosen)"
                                               if chosen is not None else f"Signals at step {shown}", chosen),
                          key=f"heat_{run.id}_{shown}")
    with pred_col:
        fusion = read_choice(choice)
        if fusion is not None:
            widgets.chart(plots.predicted_vs_measured(fusion, f"Ranker vs oracle at step {shown}"),
                          key=f"pred_{run.id}_{shown}")
            proto, sentence = tables.protocol_text(fusion)
            st.caption(f"Training protocol: **{proto}**. {sentence}")
        else:
            oracle = ustore.step_table(run.id, shown, artifacts.ORACLE_TABLE)
            widgets.chart(plots.oracle_bars(oracle, chosen, f"Oracle at step {shown}: accuracy without each layer"),
                          key=f"orc_{run.id}_{shown}")


def _metrics(steps: pd.DataFrame, view: int, run: Run) -> None:
    if steps.empty:
        return
    teacher = steps.iloc[0]
    now = steps[steps["step"] == view].iloc[-1]
    found = ustore.prune_intervals(run)
    c = st.columns(4)

    def text(step: int, value: float) -> str:
        m = found.steps.get(step)
        return m.text() if m is not None else f"{value:.3f}"

    c[0].metric("Teacher accuracy", text(0, teacher.get("test_accuracy", float("nan"))),
                help="Test accuracy with its 95 % Wilson interval.")
    vs = found.vs_teacher.get(view)
    if vs is not None:
        delta, color = f"{vs.signed()} vs teacher", "off" if vs.within_noise else "normal"
    else:
        delta, color = f"{now.get('test_accuracy', float('nan')) - teacher.get('test_accuracy', float('nan')):+.3f}", \
            "normal"
    c[1].metric(f"After step {view}" if view else "Before pruning", text(view, now.get("test_accuracy", float("nan"))),
                delta if view else None, delta_color=color, delta_arrow="off" if color == "off" else "auto",
                help="The change against the teacher on the same test rows, with its paired 95 % interval "
                     "(bootstrap); **within noise** when it contains 0." if view else None)
    c[2].metric("Layers", f"{int(now['n_layers'])}", f"-{view}" if view else None, delta_color="off")
    if "params_total" in now and teacher.get("params_total"):
        c[3].metric("Parameters", widgets.param_count(now["params_total"]),
                    f"{now['params_total'] / teacher['params_total'] - 1:+.0%}" if view else None, delta_color="off")
    summary = PruneSummary.of(ustore.summary(run))
    after, before = summary.after_kd_accuracy, summary.before_kd_accuracy
    if after is not None and view == int(steps["step"].max()):
        kd, last = found.after_kd, found.steps.get(found.final_step or view)
        before_text = last.text() if last is not None else f"{before if before is not None else float('nan'):.3f}"
        lines = [f"After distillation from the teacher: test accuracy **{kd.text() if kd else f'{after:.3f}'}** "
                 f"(before: {before_text})."]
        if found.kd_vs_before is not None:
            lines.append(f"Distillation: {found.kd_vs_before.sentence()}.")
        if found.kd_vs_teacher is not None:
            lines.append(f"Against the teacher: {found.kd_vs_teacher.sentence()}.")
        st.success("  \n".join(lines))
    precision = summary.precision or (teacher.get("precision") if "precision" in steps else None)
    if isinstance(precision, str) and precision:
        st.caption(f"Ran in **{precision}** (setting: {run.config.get('precision', 'auto')}).")


def _teacher_check(run: Run) -> None:
    """The sequence length the run used (why, share cut) and its teacher beside the majority-class baseline, with
    the accuracy's interval (core.teacher.teacher_lines over the run's events)."""
    for line in teacher_lines(ustore.store().events(run.id)):
        st.caption(line)


def _run_block(run: Run, compact: bool) -> None:
    steps = ustore.steps(run)
    widgets.run_heading(run, theme.strategy_label(run.strategy), key_prefix="cancel_")
    widgets.run_progress(run, "Check the model and dataset on the Setup page (or lower the budgets) "
                         "and start it again.", "Cancelled. Its finished steps stay in the store.")
    widgets.restart_buttons(run, key_prefix="live_")
    widgets.weak_teacher_note(run)
    _teacher_check(run)
    view = _view_step(run, steps, compact)
    removed = [int(x) for x in (steps[steps["step"] == view].iloc[-1]["removed_order"] or [])] \
        if not steps.empty and "removed_order" in steps else []
    nxt = ustore.choice(run.id, view + 1).get("layer") \
        if run.active else None
    widgets.layer_strip(_n_original(run, steps), removed, nxt)
    _metrics(steps, view, run)
    if steps.empty and not run.active:
        st.caption("This run ended before its first measurement: there is no curve and no step to show.")
        return
    if not compact:
        max_removed = int(run.config.get("layers_to_remove", 0)) or None
        shown = steps[steps["step"] <= view] if not steps.empty else steps
        widgets.chart(plots.accuracy_curve(ustore.prune_intervals(run).with_bounds(shown), run.strategy, max_removed),
                      key=f"curve_{run.id}")
        st.caption(noise.METHOD_NOTE + " Error bars on the test curve: the same intervals.")
        _details(run, steps, _detail_step(run, view))


def panel(ids: list[str]) -> None:
    runs = [r for r in (ustore.get_run(i) for i in ids) if r is not None]
    if not runs:
        st.error("The attached runs were deleted. Start a new run above.")
        return
    active_now = widgets.any_active(runs)
    if len(runs) == 1:
        _run_block(runs[0], compact=False)
    else:
        frames = []
        for run in runs:
            s = ustore.steps(run)
            if not s.empty:
                frames.append(ustore.prune_intervals(run).with_bounds(s).assign(run_id=run.id, strategy=run.strategy))
        merged = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        widgets.chart(plots.curves_by_strategy(merged, title="Side by side: test accuracy vs layers removed"),
                      key="side_curve")
        st.caption(noise.METHOD_NOTE + " Error bars: the same intervals.")
        cols = st.columns(min(len(runs), 3))
        for i, run in enumerate(runs):
            with cols[i % len(cols)]:
                with st.container(border=True):
                    _run_block(run, compact=True)
        tabs = st.tabs([theme.strategy_label(r.strategy) for r in runs])
        for tab, run in zip(tabs, runs):
            with tab:
                steps = ustore.steps(run)
                view = int(steps["step"].max()) if not steps.empty else 0
                _details(run, steps, _detail_step(run, view))
    was_active = st.session_state.get("live_was_active", False)
    st.session_state["live_was_active"] = active_now
    if was_active and not active_now:
        st.rerun()  # switch the panel from polling to replay mode
    if any((old := by_id.get(r.id)) is None or old.status != r.status for r in runs):
        st.rerun()  # a status changed (queued -> running -> ...): redraw the sidebar's run list too


runs_now = [by_id[i] for i in attached]
polling = widgets.any_active(runs_now)
st.fragment(panel, run_every=POLL_S if polling else replay.every(attached))(attached)
