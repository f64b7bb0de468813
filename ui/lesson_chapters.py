"""The lesson's explaining chapters (the guessing ones are :mod:`ui.lesson_guesses`): each an intro (a few sentences,
shown before Next) and an action (the live widget, set to the chapter's state). Numbers come from the store, the
pack and ``data/reference``; none is written into the text."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from core.lesson import course, reference
from core.lesson.readings import available
from core.models.registry import MODELS
from core.playground import LENS_DEFINITION
from core.pruning.narrate import shap_pushes
from core.runs.handout import compression_points
from core.runs.pack import budget_text
from core.runs.record import Run
from core.signals import FAMILIES
from core.signals import SIGNALS as SIGNALS_BY_KEY

from . import cached_store, lesson_data, lesson_plots, links, plots, state, tables, theme, widgets
from . import playground_plots as pg_plots
from .lesson_data import Ctx
from .report_plots import compression_bubbles

SIGNALS_PAGE, FUSION_PAGE, LIVE_PAGE = "pages/signals.py", "pages/fusion.py", "pages/live.py"


def run_line(run: Run | None) -> None:
    """Which run a chapter stands on: strategy, model, dataset, seed, budget, and recorded or the user's own."""
    if run is None:
        return
    seed = run.config.get("seed", (run.config.get("data") or {}).get("seed"))
    note = cached_store.recorded_note(run)
    st.caption(f"{theme.strategy_label(run.strategy)} · {run.model} · {state.dataset_label(run.dataset)} · "
               f"seed {seed} (one seed) · " + (f"{widgets.RECORDED_BADGE} {note}" if note
                                               else f"{budget_text(run.config)} · your run {run.id}"))


def missing(ctx: Ctx, what: str) -> None:
    """The one line a chapter shows when its recorded run is not in the pack (yet)."""
    st.info(f"The recorded {what} run of {ctx.model} on {ctx.dataset_label()} is not in the "
            "pack yet (the recorded runs are still being computed; they appear here when the pack is remade). "
            "The other chapters work from what is there.", icon=":material/hourglass_top:")


def open_page(page: str, label: str, run: Run, **params: str | int) -> None:
    """A link that opens the full page on the same view (a link that reopens a view)."""
    try:
        st.page_link(page, label=label, icon=":material/open_in_new:",
                     query_params={"run": run.id, **{k: str(v) for k, v in params.items()}})
    except (StreamlitAPIException, KeyError):  # pages not registered (a page run on its own)
        pass


# ------------------------------------------------------------------------------------------ 1 a sentence
SENTENCE_INTRO = (
    "A BERT encoder reads a sentence through a stack of layers: each layer rewrites every word's vector a little, "
    "and a small classifier reads the last one. **Pruning removes whole layers.** Before any measurement, feel what "
    "one layer does: pick a sentence, switch one layer off, and watch the prediction, and how it forms layer by "
    "layer.")


def sentence(ctx: Ctx) -> None:
    found, problem = lesson_data.readings(ctx.model, ctx.dataset)
    note = ""
    if found is None and problem is None:
        for model, dataset in available():
            found, problem = lesson_data.readings(model, dataset)
            if found is not None:
                note = (f"No readings ship for {ctx.dataset_label()} yet: these are {state.dataset_label(dataset)}'s "
                        f"({model}). ")
                break
    if found is None:
        st.info((problem or f"No precomputed readings ship for {ctx.model} on {ctx.dataset_label()} yet "
                 "(scripts/make_readings.py makes them from a cached teacher).")
                + " With a finished run of your own, the Playground reads any sentence.",
                icon=":material/hourglass_top:")
        widgets.page_link("pages/playground.py", "Playground", ":material/science:")
        return
    texts = [s.text for s in found.sentences]
    links.choice("text", "lesson_sentence", texts, "sentence")
    links.number("off", "lesson_off", list(found.layers), "layer")
    text = st.radio("A sentence", texts, key="lesson_sentence")
    off = st.pills("Switch one layer off (click again to switch it back on)", list(found.layers),
                   selection_mode="single", key="lesson_off", format_func=lambda i: f"L{i}")
    i = texts.index(text)
    full, without = found.reading(i, None), (found.reading(i, off) if off is not None else None)
    names = found.label_names
    cols = st.columns(3)
    cols[0].metric(f"All {len(found.layers)} layers", full.label(names), f"p = {max(full.probs):.2f}",
                   delta_color="off", delta_arrow="off", border=True)
    if without is not None:
        k = full.probs.index(max(full.probs))
        cols[1].metric(f"Without L{off}", without.label(names), f"p({full.label(names)}) = {without.probs[k]:.2f} "
                       f"({without.probs[k] - full.probs[k]:+.2f})", delta_color="off", delta_arrow="off", border=True)
    expected = found.sentences[i].expected
    if expected:
        cols[2].metric("A reader would say", expected, border=True)
    reading = without if without is not None else full
    widgets.chart(pg_plots.formation_lines(lesson_plots.lens_frame(reading, names), names,
                                           [off] if off is not None else []), key="lesson_formation")
    flips = sum(s.off[k].label(names) != s.full.label(names) for s in found.sentences for k in found.layers)
    top = {s.text: s.full.probs.index(max(s.full.probs)) for s in found.sentences}
    drops = [(s.full.probs[top[s.text]] - s.off[k].probs[top[s.text]], k, s.text)
             for s in found.sentences for k in found.layers]
    worst = max(drops)
    small = sum(d < 0.05 for d, _, _ in drops)
    st.markdown(f"Over these {len(found.sentences)} sentences × {len(found.layers)} layers, switching one layer off "
                f"changes the answer **{flips}** time(s) in {len(drops)}, and **{small}** switches move the answer's "
                f"probability by less than 0.05; the largest drop is **{worst[0]:.2f}**, without L{worst[1]} on "
                f"*{worst[2]}*. Most layers can go at little cost on a given sentence and a few cannot: finding them "
                "without trying each one is what the rest of the lesson is about.")
    st.caption(note + f"Precomputed from the teacher (fine-tuned {found.model}, teacher "
               f"{found.meta.get('teacher_key')}, {found.meta.get('precision')}, made {found.meta.get('made')}), one "
               f"sentence and one forward pass each: the model with the layer removed, no retraining. "
               + LENS_DEFINITION)


# ------------------------------------------------------------------------------------------ 2 signals
SIGNALS_INTRO = (
    "Removing each layer and measuring is exact but slow: twelve evaluations per step. The paper instead computes "
    "**twelve cheap signals** per layer in one instrumented pass, in five families: **activation** (how strongly a "
    "layer fires), **mutual information** (how much it says about the label, or repeats its neighbour), "
    "**gradient** (how much the loss reacts to it), **weight** (the size and spread of its parameters) and "
    "**attention** (how focused its heads are). Each one is a guess at how much a layer matters.")


def signals(ctx: Ctx) -> None:
    run = ctx.runs.forest or ctx.runs.any
    data = lesson_data.heatmap(run, 1) if run is not None else None
    frame = cached_store.step_table(run.id, 1, "signals") if run is not None and data is not None else None
    if run is None or data is None:
        found = lesson_data.bank_step(ctx.model, ctx.dataset)
        if found is None:
            missing(ctx, "random-forest fusion")
            return
        lesson_data.bank_line(ctx, found)
        frame = found.signals
        data = tables.heatmap_data(frame, list(SIGNALS_BY_KEY), len(frame))
    else:
        run_line(run)
    widgets.family_legend(FAMILIES)
    widgets.chart(plots.signal_heatmap(data, "Step 1: each signal across the twelve layers (min → max per signal)"),
                  key="lesson_heatmap_signals")
    keys = list(SIGNALS_BY_KEY)
    links.choice("signal", "lesson_signal", keys, "signal", label=lambda k: SIGNALS_BY_KEY[k].display_name)
    key = st.selectbox("Read one signal", keys, key="lesson_signal",
                       format_func=lambda k: SIGNALS_BY_KEY[k].display_name)
    info = SIGNALS_BY_KEY[key]
    first = None
    if frame is not None and key in frame:
        score = tables.prune_first_score(frame, key, info.direction)
        first = int(frame.loc[score.idxmin(), "original_layer"])
    with st.container(border=True):
        st.markdown(f"**{info.display_name}** · family {theme.family_label(info.family)} · origin {info.origin}")
        st.latex(info.formula_latex)
        st.markdown(info.intuition)
        st.markdown(f"Pruned first: the layer with the **{info.direction}** value"
                    + (f": at step 1 here, **L{first}**." if first is not None else "."))
    if run is not None:
        open_page(SIGNALS_PAGE, "Open this heatmap on the Signals page", run, step=1, signal=key)



# ------------------------------------------------------------------------------------------ 4 the ranker
@st.cache_data(show_spinner="Drawing SHAP's waterfall…", max_entries=32)
def _waterfall(run_id: str, step: int, index: int, scale: float, _rows: tables.ShapRows) -> bytes:
    return plots.shap_waterfall_png(_rows, index, scale)


RANKER_INTRO = (
    "No single signal wins on every dataset, so the paper **learns** a ranker: a random forest reads all twelve "
    "signals of a layer (as ranks within the step) and predicts what removing it costs. It learns from layers "
    "measured before (the profile bank shipped with the app), **leave-one-dataset-out**: never from the dataset it "
    "prunes. **SHAP** splits each prediction into one push per signal: which signals made the forest call a layer "
    "cheap to remove?")


def ranker(ctx: Ctx) -> None:
    run = ctx.runs.forest
    if run is None:
        missing(ctx, "random-forest fusion")
        return
    run_line(run)
    step = lesson_data.shap_step(run)
    if step is None:
        st.info("This run's forest stored no SHAP values: at its steps there was nothing to train on yet, so the "
                "twelve signals voted. A run trained on the bank explains every step.", icon=":material/info:")
        return
    found = lesson_data.choice(run, step)
    assert found is not None
    rows = tables.shap_rows({k: lesson_data.choice(run, k) for k in range(step, step + 1)})
    layer = found.chosen_layer
    towards, against = shap_pushes(found, layer)
    scale = 100.0 if found.target == "gap" else 1.0
    left, right = st.columns(2, gap="large")
    with left:
        if rows is not None:
            mean_abs = np.abs(rows.values).mean(axis=0) * scale
            widgets.chart(plots.importance_bars(rows.feature_names, mean_abs, f"Step {step}: mean |SHAP| per signal",
                                                "mean |SHAP value|"), key="lesson_shap_global")
    with right:
        name = SIGNALS_BY_KEY
        st.markdown(f"At step {step} the forest removed **L{layer}**. The signals that pushed it most towards "
                    "removal: " + (", ".join(f"**{name[k].display_name if k in name else k}** ({v * scale:+.2f})"
                                             for k, v in towards) or "none")
                    + ". Against: " + (", ".join(f"{name[k].display_name if k in name else k} ({v * scale:+.2f})"
                                                 for k, v in against) or "none") + ".")
        if rows is not None and layer in rows.layers:
            st.image(_waterfall(run.id, step, rows.layers.index(layer), scale, rows),
                     caption=f"Why L{layer}: the forest's score starts at its average and each signal adds its push.")
        proto, sentence_ = tables.protocol_text(found)
        st.caption(f"Trained with protocol **{proto}**: {sentence_}")
        if found.ranker is not None and found.ranker.n_train_rows:
            st.caption(f"The forest learned from {found.ranker.n_train_rows} measured layer-steps.")
    open_page(FUSION_PAGE, "Open every step's SHAP waterfall on Fusion & SHAP", run, step=step)


# ------------------------------------------------------------------------------------------ 6 noise
NOISE_INTRO = (
    "The oracle is a measurement on a few hundred validation rows, so it is noisy. Two questions say how noisy: do "
    "two halves of the rows order the twelve removals the same way, and do two **seeds** (another split, another "
    "fine-tuned teacher) agree? The project measured both in its reliability study; the figures below are read "
    "from its files.")


def noise(ctx: Ctx) -> None:
    rel = lesson_data.reliability()
    if rel is None:
        st.info("The reliability study's file (data/reference/oracle_reliability.csv) is not here.", icon="💡")
        return
    acc, kl = rel.value("accuracy", "spearman_seeds"), rel.value("kl", "spearman_seeds")
    cols = st.columns(3)
    spread = rel.spread
    for col, score, value in ((cols[0], "accuracy", acc), (cols[1], "kl", kl)):
        col.metric(f"Two seeds agree, by {'accuracy' if score == 'accuracy' else 'KL'}", f"ρ = {value:.2f}",
                   f"datasets {spread.loc[score, 'min']:.2f} to {spread.loc[score, 'max']:.2f}", delta_color="off",
                   delta_arrow="off", border=True, help="Spearman of the order of the 12 step-1 removals between two "
                   f"seeds, mean over {len(rel.datasets)} datasets.")
    floor = lesson_data.noise_floor(rel.model or ctx.model)
    if floor is not None:
        i = floor.interval
        cols[2].metric("Noise floor of a one-step pick", f"{i.estimate:.2f} points", f"[{i.low:.2f}, {i.high:.2f}], "
                       f"{floor.datasets} datasets", delta_color="off", delta_arrow="off", border=True,
                       help="The oracle's own pick on one half of the rows, scored on the other half.")
    widgets.chart(lesson_plots.reliability_lines(reference.reliability_curve(), rel.val_rows), key="lesson_reliability")
    st.markdown(f"At {rel.val_rows:,} validation rows (the app's default), two seeds order the step-1 removals alike "
                f"at Spearman **{acc:.2f}** by accuracy (datasets {spread.loc['accuracy', 'min']:.2f} to "
                f"{spread.loc['accuracy', 'max']:.2f}) and **{kl:.2f}** by KL (the change of the model's predictions)."
                " So the oracle ranks by KL, and a one-step difference under the noise floor"
                + (f" ({floor.interval.format(2)} points, over {floor.steps} layer-steps of {floor.datasets} datasets)"
                   if floor is not None else "") + " is a tie until an interval says otherwise.")
    st.caption(f"{rel.model}, {', '.join(state.dataset_label(d) for d in rel.datasets)}; seeds "
               f"{', '.join(map(str, rel.seeds)) or 'two'}; {rel.repeats or 'repeated'} random draws per size; the "
               "step-1 oracle only. Source: data/reference/oracle_reliability.csv (python -m core reliability).")


# ------------------------------------------------------------------------------------------ 7 recovery
RECOVERY_INTRO = (
    "Each removal is followed by a short **fine-tuning** of the layers that are left: the model adapts around the "
    "hole. Slide through the forest's run on {dataset}: the strip shows the layers switched off so far, the bars "
    "the validation accuracy right after each removal and after its fine-tuning.")


def recovery(ctx: Ctx) -> None:
    run = ctx.runs.forest or ctx.runs.any
    facts = lesson_data.facts(run)
    if run is None or facts is None or not facts.stories:
        missing(ctx, "random-forest fusion")
        return
    run_line(run)
    steps = [s.step for s in facts.stories]
    links.number("step", "lesson_step", steps, "step")
    step = st.select_slider("Step", steps, key="lesson_step")
    story = next(s for s in facts.stories if s.step == step)
    order = facts.summary.removed_order[:step]
    n = int(facts.steps.iloc[0]["n_layers"])
    nxt = facts.summary.removed_order[step] if step < len(facts.summary.removed_order) else None
    widgets.layer_strip(n, order, nxt)
    with st.container(border=True, key="lesson_story"):
        st.markdown(story.caption())
    widgets.chart(lesson_plots.recovery_bars(facts.stories, step), key="lesson_recovery")
    open_page(LIVE_PAGE, "Replay this run step by step on Live pruning", run, step=step)


# ------------------------------------------------------------------------------------------ 9 size
SIZE_INTRO = (
    "Compression is a trade: fewer layers make a smaller, faster model and usually cost some accuracy. The chart "
    "*NLP with Transformers* made standard puts each model of a run at its test accuracy and measured latency, the "
    "bubble's area its size on disk: from the teacher, one removal at a time, to the distilled student.")


def size(ctx: Ctx) -> None:
    run = ctx.runs.forest or ctx.runs.any
    facts = lesson_data.facts(run)
    if run is None or facts is None:
        missing(ctx, "random-forest fusion")
        return
    run_line(run)

    points = compression_points(facts, theme.strategy_label)
    widgets.chart(compression_bubbles(points), key="lesson_bubbles")
    teacher, last = points.iloc[0], points.iloc[-1]
    ratio = facts.summary.ratio_after_kd or facts.summary.ratio
    kd = facts.intervals.after_kd or facts.intervals.final
    share = float(last["params"]) / float(teacher["params"]) if pd.notna(last["params"]) else float("nan")
    st.markdown(f"The teacher: {widgets.param_count(teacher['params'])} parameters, test accuracy "
                f"{facts.intervals.teacher.text() if facts.intervals.teacher else teacher['accuracy']}. "
                f"The {last['name']}: {widgets.param_count(last['params'])} ({share:.0%} of the teacher), "
                f"{int(last['n_layers'])} layers, test accuracy {kd.text() if kd else last['accuracy']}."
                + (f" Accuracy-to-size ratio **{float(ratio):.2f}** (our definition: relative accuracy over relative "
                   "size; the paper does not publish its formula)." if ratio else ""))


# ------------------------------------------------------------------------------------------ 10 merging
MERGING_INTRO = (
    "Pruning drops whole layers. The second paper **merges** instead: it picks a window of consecutive layers, "
    "aligns each layer's feed-forward neurons to one reference layer (a Hungarian assignment on their activation "
    "correlations), averages the aligned weights and ties them, so the window shares one feed-forward block while "
    "every attention sublayer stays. At the same parameter budget, which keeps more accuracy?")


def merging(ctx: Ctx) -> None:
    run = ctx.runs.forest or ctx.runs.any
    steps = cached_store.steps(run) if run is not None else pd.DataFrame()
    hidden = getattr(MODELS.get(ctx.model), "hidden_size", None)
    if len(steps) > 1 and hidden:
        per_layer = int(steps.iloc[0]["params_total"] - steps.iloc[1]["params_total"])
        ffn = course.ffn_parameters(per_layer, int(hidden))
        if ffn is not None:
            k = max(2, round(2 * per_layer / ffn) + 1)
            st.markdown(f"In {ctx.model} one layer holds **{per_layer:,}** parameters, **{ffn:,}** of them "
                        f"({ffn / per_layer:.0%}) in its feed-forward sublayer (measured from the recorded run's "
                        f"sizes). Merging a window of K feed-forward blocks removes (K − 1) × {ffn:,}; pruning d "
                        f"layers removes d × {per_layer:,}. So merging {k} feed-forward blocks costs about as many "
                        f"parameters as pruning {round((k - 1) * ffn / per_layer)} whole layers.")
    merges = [r for r in cached_store.runs(kind="merge") if r.status == "done"]
    if not merges:
        st.info("No finished merge run is in the store or the pack yet, so there is no measured answer here: start "
                "one on the FFN merging page (it prunes the same budget beside it and compares both with a paired "
                "interval).", icon=":material/hourglass_top:")
        widgets.page_link("pages/merging.py", "FFN merging", ":material/merge:")
        return
    merge = merges[0]
    verdict = cached_store.merge_verdict(merge)
    run_line(merge)
    if verdict is not None:
        st.markdown(f"Merge run {merge.id} on {state.dataset_label(merge.dataset)}: {verdict.sentence()}")
    open_page("pages/merging.py", "Open this merge run on FFN merging", merge)
