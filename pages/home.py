"""Home: what the app does, and a first run with one click (offline, embedded model and data)."""

from __future__ import annotations

import statistics

import streamlit as st

from core.runs.record import RunStatus
from ui import cached_store, router, state, theme, widgets

router.ensure_routed()  # a cold server's first deep link runs this file without app.py

widgets.page_header(":material/content_cut: Layer-pruning explorer",
                    "Watch a 12-layer BERT lose its layers one by one, and see why each one goes.")

left, right = st.columns([3, 2], gap="large")
with left:
    st.markdown(
        """
Pick a BERT-family model and a text-classification dataset. The app fine-tunes the model once (the
**teacher**), then removes one encoder layer per step:

1. **Measure**: twelve layer-importance **signals** in five families (activation, mutual information,
   gradient, weight, attention), computed in one instrumented pass.
2. **Decide**: a single signal, a baseline, or a **fusion ranker** (random forest or linear regression)
   trained to predict what removing each layer costs; **SHAP** explains its choice. The **oracle**
   (actually removing each layer and measuring) is the truth every strategy is judged against.
3. **Recover**: fine-tune after each removal, then **distil** from the unpruned teacher.

Everything runs offline on this machine: the embedded 12-layer model *multilingual-e5-small* ships
inside a Python package, and so do several datasets. Based on *Strategic Fusion Optimizes Transformer
Compression* (arXiv 2501.03273).
"""
    )

state.init()  # after the text above, so it paints before the engine's first (slow) imports
with left, st.container(border=True):
    st.markdown("**Already measured here, before your first run**")
    for line in cached_store.first_open_lines(state.dataset_label):
        st.markdown(f"- {line}")
    if (pack := cached_store.pack()) is not None and (recorded := pack.list_runs(kind="prune")):
        st.markdown(f"- **{len(recorded)} recorded runs** ship with the app ("
                    f"{len({r.dataset for r in recorded})} dataset(s) × {len({r.strategy for r in recorded})} "
                    f"strateg{'y' if len({r.strategy for r in recorded}) == 1 else 'ies'}, "
                    f"{', '.join(sorted({r.model for r in recorded}))}, made {pack.made[:10]}): Signals, Fusion & SHAP "
                    "and Compare show them now, and Live pruning replays them step by step.")
    elif cached_store.pack_problem():
        st.warning(cached_store.pack_problem(), icon=":material/inventory_2:")
    widgets.page_link("pages/paper.py", "Paper check: every claim, the one-step table and the plots",
                      ":material/fact_check:")
model_key = state.model()
dataset_key = state.dataset()
runs = cached_store.own_runs(kind="prune")  # the recorded runs (shipped with the app) are not "here"


def _typical_minutes(model: str) -> str:
    """A time estimate from this machine's own finished runs of the same model and budget (none: say so)."""
    b = state.budgets()
    totals = []
    for run in runs:
        cfg = run.config
        same = (run.model == model and (cfg.get("data") or {}).get("train_cap") == b["train_cap"]
                and cfg.get("layers_to_remove") == b["layers_to_remove"])
        if not (run.status == RunStatus.DONE and same):
            continue
        total = cached_store.run_summary(run).total_seconds
        if total:
            totals.append(float(total))
    if not totals:
        return ("No run of this model with these budgets has finished here yet; its teacher is fine-tuned once, "
                "then cached")
    return f"About {statistics.median(totals) / 60:.0f} min here, judging by {len(totals)} earlier run(s)"


with right:
    with st.container(border=True):
        st.subheader("Start here")
        st.markdown(f"**{state.model_label(model_key)}**  \non **{state.dataset_label(dataset_key)}**, "
                    f"strategy **{theme.strategy_label('rf_fusion')}**")
        st.caption(_typical_minutes(model_key) + ". Change model, dataset and budgets on the Setup page.")
        if st.button("Start my first pruning run", type="primary", width="stretch", key="home_start",
                     icon=":material/play_arrow:"):
            ids = widgets.start_runs(["rf_fusion"])
            if ids:
                widgets.go_live(ids)
        st.divider()
        st.markdown("**Instant demo**: the tiny random 12-layer BERT on the synthetic keywords task, texts cut "
                    f"to {state.TINY_DEMO['max_length']} tokens so the keyword is sometimes lost (seconds per step; "
                    "for trying the pipeline, not for findings).")
        if st.button("Run the tiny demo", width="stretch", key="home_tiny", icon=":material/bolt:"):
            demo = dict(state.TINY_DEMO)
            ids = widgets.start_runs(["rf_fusion"], model_key=demo.pop("model"), dataset_key=demo.pop("dataset"),
                                     **demo)
            if ids:
                widgets.go_live(ids)

active = [r for r in runs if r.active]
if active:
    st.subheader("Running now")
    for run in active:
        last = cached_store.store().last_event(run.id)
        st.markdown(f"- {widgets.run_label(run)}: {last.message if last else 'waiting for the worker'}")
    widgets.empty_state("Open the Live pruning page to watch them.", widgets.LIVE_PAGE, "Live pruning")

st.subheader("Recent runs")
if not runs and cached_store.pack() is not None:
    widgets.empty_state("No runs yet of your own: start one above, or first watch a recorded run replayed step by "
                        "step on Live pruning.", widgets.LIVE_PAGE, "Live pruning: replay a recorded run")
elif not runs:
    widgets.empty_state("No runs yet. Start one above (the tiny demo finishes in about a minute), or set "
                        "up your own model and dataset first.", "pages/setup.py", "Setup")
else:
    for run in runs[:6]:
        found = cached_store.final_intervals(run) if run.status == RunStatus.DONE else None
        result = ""
        if found is not None and found.final is not None:
            result = f": final test accuracy {found.final.text()}"
            if found.vs_teacher is not None:
                result += f", {found.vs_teacher.sentence()}"
        st.markdown(f"- {widgets.run_label(run)}{result}")
    st.caption(f"{len(runs)} pruning run(s) in the store at `{cached_store.shown_root()}`. "
               "See them all on Runs & export. "
               "Brackets: 95 % intervals (Wilson over the test rows; the difference to the teacher paired on the same "
               "rows, within noise when it contains 0).")

with st.expander("The pages, in order"):
    st.markdown(
        """
- **Setup**: model card (layers, hidden size, parameters per layer), dataset (embedded, hub, or your CSV)
  with a preview, and budgets (rows, sequence length, epochs, seed).
- **Live pruning**: start one strategy or several side by side; watch the layers go, the accuracy curve
  against the oracle, the signal heatmap and the ranker's predictions, live; replay finished runs.
- **Signals**: the twelve signals per layer and step, how well each agrees with the oracle, and what each
  one means (formula, intuition).
- **Fusion & SHAP**: why the random forest picked a layer (waterfall), which signals matter (beeswarm),
  linear coefficients, ranker quality and training protocol.
- **Studies**: a grid of runs (datasets × strategies × seeds) in the background, sharing identical work;
  watch its cells, cancel, resume after a restart.
- **Compare**: the paper's table across strategies and datasets (one study or all runs), curves, distillation
  gains, Pareto plots.
- **Paper check**: the paper's claims next to ours, with the one-step table, rank heatmap and regret bars,
  from shipped reference results (nothing to run).
- **Runs & export**: list, filter, delete; download a pruned model as a plain Hugging Face folder.
- **FFN merging**: the second compression method (arXiv 2501.06126): share one feed-forward block across a
  window of layers, see which layers are alike (CKA heatmap), and compare with pruning at the same budget.
"""
    )
