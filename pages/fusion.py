"""Fusion & SHAP: why the fusion ranker removed each layer, which signals drive it, how good it is.

Everything is drawn from what the run stored per step (``steps/<k>/choice.json``, read as a
``core.fusion.FusionChoice``: the ranker's description, its SHAP values, predictions, the oracle, the protocol).
SHAP explanations are rebuilt as ``shap.Explanation`` objects from the stored numbers: no model or ranker is
re-run here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.fusion import FusionChoice, RankerSummary, read_choice
from core.fusion.quality import RunSteps, quality_by_strategy_and_dataset, quality_rows, run_quality
from core.runs import artifacts
from core.runs.record import Run
from ui import cached_store as ustore
from ui import links, plots, router, state, tables, theme, widgets

router.ensure_routed()  # a cold server's first deep link runs this file without app.py

FUSION = ("rf_fusion", "lr_fusion")

state.init()
widgets.page_header("Fusion & SHAP", "A random forest (and a linear regression) learn from the twelve signals "
                                     "which layer costs least to remove. SHAP shows why they chose as they did.")


@st.cache_data(show_spinner="Drawing SHAP's plot…", max_entries=64)
def _beeswarm(run_id: str, token: str, scale: float, _rows: tables.ShapRows) -> bytes:
    return plots.shap_beeswarm_png(_rows, scale)


@st.cache_data(show_spinner="Drawing SHAP's waterfall…", max_entries=256)
def _waterfall(run_id: str, token: str, index: int, scale: float, _rows: tables.ShapRows) -> bytes:
    return plots.shap_waterfall_png(_rows, index, scale)


def _units(choices: dict[int, FusionChoice]) -> tuple[float, str]:
    """How to show ranker scores: the default target is an accuracy gap (0 = as good as the step's best
    removal), shown in percentage points; any other target is shown as stored."""
    targets = {c.target for c in choices.values() if c.trained}
    return (100.0, "points") if targets <= {"gap"} else (1.0, "")


def _choices(run: Run) -> dict[int, FusionChoice]:
    """Each step's fusion choice, read through :func:`core.fusion.read_choice` (old choice files too)."""
    read = {k: read_choice(ustore.choice(run.id, k)) for k in ustore.artifact_steps(run.id, artifacts.CHOICE)}
    return {k: c for k, c in read.items() if c is not None}


def _ranker_chart(ranker: RankerSummary | None, who: Run | None, step: int, missing: str = "") -> None:
    """A stored ranker's own view of the signals: forest impurity importances or linear coefficients."""
    if ranker is None or who is None:
        st.info(f"To compare, run **{theme.strategy_label(missing)}** on the same model and dataset "
                "(Live pruning, several strategies side by side).", icon="💡")
        return
    label = theme.strategy_label(who.strategy)
    feat = list(ranker.feature_names)
    if ranker.kind == "forest":
        widgets.chart(plots.importance_bars(feat, ranker.weights, f"{label}: impurity importance",
                                            "share of variance reduction"), key=f"side_{who.id}")
    else:
        widgets.chart(plots.importance_bars(feat, ranker.weights, f"{label}: coefficients", ranker.weight_label,
                                            signed=True), key=f"side_{who.id}")
        alpha = ranker.params.get("alpha")
        st.caption(f"{'Ridge, alpha ' + format(alpha, 'g') if alpha else 'Least squares'}; intercept "
                   f"{ranker.intercept or 0:.3f}. Positive: a higher (normalised) value makes removal look cheaper.")
    trained_on = f" on {ranker.n_train_rows} layer-steps" if ranker.n_train_rows else ""
    st.caption(f"Run `{who.id}` · ranker trained for step {step}{trained_on}.")


runs = [r for r in ustore.runs(kind="prune") if r.strategy in FUSION]
if not runs:
    widgets.empty_state("No fusion run yet. Start a run with the *Random-forest fusion* (or linear) strategy on "
                        "the Live pruning page; the explanations appear after its first step.",
                        widgets.LIVE_PAGE, "Live pruning")
    router.stop_page()

preferred = [r for r in runs if r.model == state.model() and r.dataset == state.dataset()
             and r.strategy == "rf_fusion"]
links.choice("run", "fus_run", [r.id for r in runs], "fusion run")  # ?run= opens that run
run = widgets.pick_run(runs, key="fus_run", default_id=(preferred or runs)[0].id)
widgets.recorded_badge(run)
choices = _choices(run)
rows = tables.shap_rows(choices)
token = ustore.version(run)
scale, unit = _units(choices)
steps = ustore.steps(run)

tab_global, tab_why, tab_side, tab_quality = st.tabs(
    ["Which signals matter", "Why this layer?", "Forest vs linear", "Ranker quality & protocol"])

with tab_global:
    if rows is None:
        first = choices.get(min(choices)) if choices else None
        proto = tables.protocol_text(first)[1] if first else ""
        st.info("No SHAP values stored for this run yet. At the first step of the first run there is nothing "
                "to train the ranker on, so layers are ranked by the signal vote and there is nothing to "
                f"explain. {proto} Later steps (or a second run on another dataset) train the ranker.",
                icon="💡")
    else:
        mean_abs = np.abs(rows.values).mean(axis=0)
        if not mean_abs.any():
            st.info("Every SHAP value is zero: the ranker predicts the same score for every layer, because in its "
                    "training rows every removal measured the same oracle accuracy (a task this easy loses nothing "
                    "whichever layer goes). A harder dataset or a larger model gives the ranker something to learn.",
                    icon="💡")
        left, right = st.columns(2)
        with left:
            widgets.chart(plots.importance_bars(rows.feature_names, mean_abs * scale,
                                                "Global importance: mean |SHAP value|",
                                                "mean |SHAP|" + (" (acc. points)" if unit else "")),
                          key="fus_global")
            st.caption(f"Over {len(rows.steps)} (step, layer) rows from {len(set(rows.steps))} step(s): each bar is "
                       "the signal's mean absolute effect on the ranker's predicted score"
                       + (" (accuracy points)" if unit else "") + ". Bars are coloured by signal family.")
        with right:
            st.image(_beeswarm(run.id, token, scale, rows),
                     caption="SHAP beeswarm: one dot per (step, layer); colour = the signal's normalised value "
                             "(red high, blue low); right of 0 = pushes the layer towards removal"
                             + (" (SHAP values in accuracy points)." if unit else "."))

with tab_why:
    if rows is None:
        st.info("Waterfalls need stored SHAP values (see the first tab).", icon="💡")
    else:
        avail = sorted(set(rows.steps))
        c1, c2 = st.columns(2)
        links.number("step", "fus_step", avail, "step")  # ?step= opens that step's waterfall
        step = c1.selectbox("Step", avail, index=len(avail) - 1, key="fus_step")
        in_step = [i for i, s in enumerate(rows.steps) if s == step]
        layers = [rows.layers[i] for i in in_step]
        chosen_layer = choices[step].chosen_layer if step in choices else None
        default = layers.index(chosen_layer) if chosen_layer in layers else 0
        layer = c2.selectbox("Layer (original index)", layers, index=default, key="fus_layer",
                             format_func=lambda l: f"L{l}" + (" (removed at this step)" if l == chosen_layer else ""))
        i = in_step[layers.index(layer)]
        score = float(rows.base_values[i] + rows.values[i].sum()) * scale
        base = float(rows.base_values[i]) * scale
        scores = {rows.layers[j]: float(rows.base_values[j] + rows.values[j].sum()) for j in in_step}
        rank = sorted(scores, key=scores.get, reverse=True).index(layer) + 1
        verdict = ("so it was removed" if layer == chosen_layer
                   else f"while L{chosen_layer} scored highest and was removed")
        what = ("its predicted accuracy gap to the best removal of the step, in points"
                if unit else "higher = cheaper to remove")
        st.markdown(f"**Why L{layer} at step {step}?** The ranker scored it **{score:+.2f}** (rank {rank} of "
                    f"{len(in_step)}; {what}), {verdict}. The waterfall starts at the average score over the "
                    f"ranker's training rows ({base:+.2f}) and adds each signal's push; the grey numbers are the "
                    "signals' normalised values for this layer.")
        st.image(_waterfall(run.id, token, i, scale, rows))
        here = choices.get(step)
        if here is not None and here.measured:
            measured = dict(zip(here.candidates, here.measured))
            st.caption(f"The oracle measured validation accuracy {measured.get(layer, float('nan')):.3f} without "
                       f"L{layer}; the best single removal at this step kept {max(here.measured):.3f}.")

with tab_side:
    step_choices = {k: c for k, c in choices.items() if c.ranker is not None}
    if not step_choices:
        st.info("This run has not trained a ranker yet (see the first tab).", icon="💡")
    else:
        step = st.select_slider("Step", sorted(step_choices), value=max(step_choices), key="fus_side_step")
        ranker = step_choices[step].ranker
        companions = [r for r in ustore.runs(kind="prune") if r.id != run.id and r.strategy in FUSION
                      and r.strategy != run.strategy and r.model == run.model
                      and r.dataset == run.dataset]
        other = None
        if companions:
            other_choices = _choices(companions[0])
            usable = {k: c for k, c in other_choices.items() if c.ranker is not None}
            if usable:
                other = usable.get(step) or usable[max(usable)]
        partner = companions[0] if companions else None
        left, right = st.columns(2)
        with left:
            _ranker_chart(ranker, run, step)
        with right:
            _ranker_chart(other.ranker if other is not None else None, partner, step,
                          missing="lr_fusion" if run.strategy == "rf_fusion" else "rf_fusion")

with tab_quality:
    fusion_runs = [r for r in ustore.runs(kind="prune") if r.strategy in FUSION and r.model == run.model]
    quality = quality_rows(RunSteps(r.id, r.strategy, r.dataset, ustore.steps(r)) for r in fusion_runs)
    this = quality[quality["run_id"] == run.id] if not quality.empty else quality
    c = st.columns(3)
    if not this.empty:
        q = run_quality(this)
        c[0].metric("Mean Spearman ρ with the oracle",
                    f"{q.mean_spearman:.2f}" if q.mean_spearman is not None else "–")
        c[1].metric("Top-1 hit rate", f"{q.top1_rate:.0%}" if q.top1_rate is not None else "–",
                    help="Share of steps where the removed layer was among the oracle's best.")
        c[2].metric("Steps", f"{q.steps}")
    widgets.chart(plots.quality_lines(this), key="fus_quality")
    proto_rows = []
    for k, ch in sorted(choices.items()):
        key, sentence = tables.protocol_text(ch)
        proto_rows.append({"step": k, "removed": f"L{ch.chosen_layer}", "protocol": key, "what it means": sentence})
    if proto_rows:
        st.markdown("**Training protocol per step** (leave-one-dataset-out is the honest one: the ranker never "
                    "sees the dataset it prunes)")
        st.table(pd.DataFrame(proto_rows).set_index("step"))
    if len(fusion_runs) > 1 and not quality.empty:
        summary = quality_by_strategy_and_dataset(quality)
        summary["strategy"] = [theme.strategy_label(s) for s in summary["strategy"]]
        st.markdown(f"**All fusion runs of {run.model}**")
        st.dataframe(summary, hide_index=True,
                     column_config={"mean_rho": st.column_config.NumberColumn("mean ρ", format="%.2f"),
                                    "top1": st.column_config.NumberColumn("top-1 hit rate", format="percent")})
