"""FFN merging (Verma, Murray, Duh, arXiv 2501.06126): start a merge run, watch it, and read its result.

A merge run (``core.merging.loop.merge_events``, run by the same background worker as pruning) chooses a window of
consecutive layers, aligns their FFN neurons, averages and ties them, fine-tunes and distils, then prunes
the matched number of whole layers with the same budget. This page shows the stored FFN similarity
heatmap, the window choice, accuracy against parameters removed for both methods, and exports the merged
model. The run id lives in the URL (``?run=<id>``) like on the Live page.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from core.config import ConfigError
from core.merging.config import DEFAULT_WINDOW_SIZE, REFERENCES, MergeConfig
from core.merging.verdict import recovered_stage
from core.models.registry import MODELS
from core.runs import artifacts, noise
from core.runs.export import model_zip_bytes
from core.runs.record import MergeSummary, Run, RunStatus
from core.train import DistillConfig
from ui import bounds, links, merge_plots, router, state, widgets
from ui import cached_store as ustore

router.ensure_routed()  # a cold server's first deep link runs this file without app.py

POLL_S = 2.0
SELECTION_LABELS = {"accuracy": "validation accuracy after merging (measured, our default)",
                    "similarity": "FFN similarity, mean CKA (no evaluation: fast)"}

state.init()
widgets.page_header("Feed-forward merging", "A second way to shrink a transformer: instead of removing whole "
                                            "layers, share one feed-forward block across several layers.")

with st.expander("How merging works", expanded=False):
    st.markdown(
        """
**Merging Feed-Forward Sublayers for Compressed Transformers** (Verma, Murray, Duh; arXiv 2501.06126):

1. **Select** a window of consecutive layers: by the validation accuracy of the merged model without any
   tuning (measured, our default) or by how alike their FFN activations are (linear CKA, no evaluation).
2. **Align**: each layer's FFN neurons are permuted to match the reference layer's, by correlating their
   activations on calibration tokens and solving an assignment problem (Hungarian algorithm). A permuted
   FFN computes exactly the same function.
3. **Merge**: average the aligned weights and **tie** them, so every layer in the window uses one shared
   FFN. Attention and layer norms stay per layer; the depth and the compute stay the same.
4. **Recover**: fine-tune (the FFN stays shared) and distil from the unpruned teacher.

Merging *k + 1* FFNs removes *k* FFNs' worth of parameters. The run then removes the number of whole layers
with the closest parameter count (chosen by the greedy oracle) and gives them the same fine-tuning and
distillation: the two methods compared at the same budget.
"""
    )


# ------------------------------------------------------------------------------------------ start
def _n_layers(model_key: str) -> int:
    spec = MODELS.get(model_key)
    return spec.num_layers if spec is not None else 12


@dataclass(frozen=True)
class MergeForm:
    """What the start form chose (the sidebar and the Setup page give the model, the dataset and the budgets)."""

    mode: str  # "auto" (K, windows scored by ``selection``) or "fixed" (``window``)
    k: int
    window: tuple[int, int]
    selection: str
    reference: str
    epochs: float
    distill: bool
    kd_epochs: float
    compare: bool
    calibration: int


def _merge_config(form: MergeForm) -> MergeConfig:
    b = state.budgets()
    data = state.data_config(state.dataset(), b)  # the length mode, auto length and truncation as Live uses them
    return MergeConfig(model=state.model(), dataset=state.dataset(),
                       window=f"{form.window[0]}-{form.window[1]}" if form.mode == "fixed" else None,
                       auto_k=int(form.k) if form.mode == "auto" else None, selection=form.selection,
                       reference=form.reference, epochs=float(form.epochs), distill=bool(form.distill),
                       kd=DistillConfig(epochs=float(form.kd_epochs)), data=data,
                       calibration_size=int(form.calibration), compare_pruning=bool(form.compare),
                       seed=int(b["seed"]), precision=str(b["precision"]))


def _start_form() -> None:
    n = _n_layers(state.model())
    st.caption(f"Model **{state.model_label(state.model())}**, dataset **{state.dataset_label(state.dataset())}** "
               "(change them in the sidebar; rows, length and seed on the Setup page).")
    c1, c2, c3 = st.columns(3, gap="medium")
    mode = c1.radio("Window", ["auto", "fixed"], horizontal=True, key="merge_mode",
                    format_func={"auto": "choose for me", "fixed": "I pick the layers"}.get)
    if mode == "auto":
        k = bounds.number_input(c1, "Layers to merge (K)", MergeConfig.BOUNDS["auto_k"], DEFAULT_WINDOW_SIZE, hi=n,
                                key="merge_k", help=f"Merging K FFNs removes K − 1 FFNs' worth of parameters. Every "
                                f"window of K consecutive layers is scored ({n - 2 + 1} candidates for K = 2).")
        selection = c1.selectbox("Score windows by", list(SELECTION_LABELS), key="merge_selection",
                                 format_func=SELECTION_LABELS.get)
        window = (0, 1)
    else:
        default = (max(0, n // 2 - 2), min(n - 1, n // 2 + 1))
        window = c1.select_slider("Layers (first – last, inclusive)", options=list(range(n)), value=default,
                                  key="merge_window")
        k, selection = window[1] - window[0] + 1, "accuracy"
    reference = c2.selectbox("Align the others to", REFERENCES, key="merge_reference",
                             format_func=lambda r: f"the {r} layer of the window" +
                             (" (the paper's default)" if r == "first" else ""))
    epochs = bounds.number_input(c2, "Fine-tuning epochs", MergeConfig.BOUNDS["epochs"], MergeConfig.epochs, 0.5,
                                 key="merge_epochs")
    calibration = bounds.number_input(c2, "Calibration rows", MergeConfig.BOUNDS["calibration_size"],
                                      MergeConfig.calibration_size, 8, key="merge_calibration",
                                      help="Training rows whose FFN activations drive the alignment and the CKA.")
    distill = c3.toggle("Distil from the teacher", True, key="merge_distill")
    kd_epochs = bounds.number_input(c3, "Distillation epochs", DistillConfig.BOUNDS["epochs"], DistillConfig.epochs,
                                    0.5, key="merge_kd_epochs", disabled=not distill)
    compare = c3.toggle("Compare with pruning at the same budget", True, key="merge_compare",
                        help="Prunes the matched number of whole layers (greedy oracle) and gives them the same "
                             "fine-tuning and distillation. Roughly doubles the run's time.")
    if mode == "fixed" and window[1] <= window[0]:
        st.warning("Pick at least two layers: move the right end of the slider.")
        return
    if st.button("Start merging", type="primary", icon=":material/call_merge:", key="merge_start"):
        try:
            cfg = _merge_config(MergeForm(mode=mode, k=int(k), window=window, selection=selection, reference=reference,
                                          epochs=epochs, distill=distill, kd_epochs=kd_epochs, compare=compare,
                                          calibration=int(calibration)))
        except ConfigError as exc:
            st.error(f"Cannot start: {exc}. Fix the value (or the budgets on the Setup page) and try again.")
            return
        try:
            ids = ustore.submit("merge", [cfg.to_dict()], strategy=cfg.strategy)
        except Exception as exc:  # e.g. a read-only store folder
            widgets.show_error("Could not start the merge run", exc,
                               f"Check that the run store folder `{ustore.shown_root()}` is writable, then try again.")
            return
        widgets.set_query_runs(ids)
        st.rerun()


merges = ustore.runs(kind="merge")
by_id = {r.id: r for r in merges}
requested = [i for i in widgets.query_run_ids() if i in by_id]
unknown = [i for i in widgets.query_run_ids() if i not in by_id]

with st.expander("Start a merge run", expanded=not merges, key=links.advanced_key("merge_start")):
    _start_form()

if unknown and not requested:
    st.warning(f"Run {', '.join(unknown)} from the address is not a merge run in the store at `{ustore.shown_root()}`. "
               "Showing the newest merge run instead.")
if not merges:
    widgets.empty_state("No merge run yet. Start one above: the tiny model on the keywords dataset finishes in "
                        "about a minute; the 12-layer e5 model takes a few minutes per stage on a laptop CPU.")
    router.stop_page()

run = widgets.pick_run(merges, key="merge_run", label="Merge run",
                       default_id=requested[0] if requested else None)
assert run is not None
if widgets.query_run_ids() != [run.id]:
    widgets.set_query_runs([run.id])


# ------------------------------------------------------------------------------------------ panel
def _cells(comparison: pd.DataFrame | None, column: str = "test accuracy [95 %]") -> dict[tuple[str, str], str]:
    """(method, stage) -> ``0.894 [0.882, 0.905]``: the comparison table's accuracies with their intervals (or
    another of its text columns, e.g. ``vs teacher [95 %]``)."""
    if comparison is None or column not in comparison:
        return {}
    return {(r["method"], r["stage"]): r[column] for _, r in comparison.iterrows()}


def _metrics(summary: MergeSummary, steps: pd.DataFrame, comparison: pd.DataFrame | None) -> None:
    c = st.columns(4)
    teacher = summary.teacher_accuracy
    if teacher is None and not steps.empty and "test_accuracy" in steps:  # a run still measuring: step 0's row
        teacher = float(steps["test_accuracy"].iloc[0]) if pd.notna(steps["test_accuracy"].iloc[0]) else None
    cells = _cells(comparison)
    if teacher is not None:
        c[0].metric("Teacher accuracy", cells.get(("teacher", "teacher")) or f"{teacher:.3f}")
    final = summary.final_accuracy if summary.final else None
    if final is not None:
        before = summary.before_kd_accuracy
        stage = recovered_stage(summary) or ("distilled" if summary.after_kd_accuracy is not None else "finetuned")
        vs_teacher = _cells(comparison, "vs teacher [95 %]").get(("merge", stage)) or (
            f"{final - teacher:+.3f}" if teacher is not None else None)
        c[1].metric("Merged, after recovery", cells.get(("merge", stage)) or f"{final:.3f}",
                    f"{vs_teacher} vs teacher" if vs_teacher else None, delta_color="off",
                    help=f"After fine-tuning: {cells.get(('merge', 'finetuned')) or f'{before:.3f}'}"
                    if before is not None else None)
    p = summary.params
    if p:
        c[2].metric("Parameters", widgets.param_count(p["after"]), f"{-p['removed_fraction']:+.1%}", delta_color="off")
        c[3].metric("Unique FFNs", f"{p['unique_ffns_after']}", f"{p['unique_ffns_after'] - p['unique_ffns_before']}",
                    delta_color="off")


def _verdict(run: Run, summary: MergeSummary, comparison: pd.DataFrame | None) -> None:
    pr, final = summary.pruning, summary.final
    if pr is None or not final:
        return
    side = pr.final
    if pr.final_accuracy is None:
        return
    verdict = ustore.merge_verdict(run)
    if verdict is None:
        return
    p_removed = summary.teacher["params_total"] - side["params_total"]
    merged_ms = None if final.get("latency_ms") is None else float(final["latency_ms"])
    stage = recovered_stage(summary)
    cells = _cells(comparison)
    merge_text = cells.get(("merge", stage)) or f"{verdict.merge_accuracy:.3f}"
    prune_text = cells.get(("prune", stage)) or f"{verdict.prune_accuracy:.3f}"
    st.markdown(
        f"**At the same budget:** merging layers {summary.window_label} removes "
        f"{widgets.param_count(summary.params['removed'])} parameters; pruning {pr.depth} whole layer(s) "
        f"({', '.join(f'L{i}' for i in pr.removed_layers)}) removes {widgets.param_count(p_removed)}. "
        f"After the same recovery, test accuracy is **{merge_text}** (merge) vs **{prune_text}** (prune): "
        + verdict.sentence()
        + (f" Pruning also runs faster (latency {pr.latency_ms:.1f} ms vs "
           f"{merged_ms:.1f} ms per batch): merging keeps every layer's compute."
           if pr.latency_ms is not None and merged_ms is not None and pr.latency_ms < merged_ms else ""))


def _overview(run: Run) -> None:
    """Every finished merge run of the same model and dataset: final accuracy vs parameters removed."""
    same = [r for r in merges if r.status == RunStatus.DONE and r.model == run.model
            and r.dataset == run.dataset]
    if len(same) < 2:
        return
    rows, teacher_done = [], False

    def bounds(m: noise.Measured | None) -> dict[str, float]:
        i = m.interval if m is not None else None
        return {"test_low": i.low, "test_high": i.high} if i is not None else {}

    for r in same:
        s = ustore.merge_summary(r)
        if not s.final:
            continue
        sides = noise.merge_sides(r.id, s, ustore.outcomes, ustore.test_size(r))
        if not teacher_done:
            rows.append({"method": "teacher", "params_removed": 0, "test_accuracy": s.teacher_accuracy,
                         "label": "teacher", **bounds(sides["teacher"])})
            teacher_done = True
        rows.append({"method": "merge", "params_removed": s.params["removed"], "test_accuracy": s.final_accuracy,
                     "label": f"merge {s.window_label} · {r.id[-6:]}", **bounds(sides["merge"])})
        pr = s.pruning
        if pr is not None and pr.final:
            rows.append({"method": "prune", "params_removed": s.teacher["params_total"] - pr.final["params_total"],
                         "test_accuracy": pr.final_accuracy, "label": f"prune {pr.depth} layer(s) · {r.id[-6:]}",
                         **bounds(sides["prune"])})
    widgets.chart(merge_plots.merge_runs_overview(rows), key="merge_overview")
    st.caption("Final models only (after fine-tuning and distillation), with 95 % Wilson intervals over the test rows "
               "as error bars. Teachers of runs with other data settings may differ slightly; the first run's "
               "teacher is drawn.")


def _export(run: Run) -> None:
    rid = run.id
    if not ustore.has_model(rid):
        st.caption("The merged model is saved when the run finishes.")
        return
    st.download_button("Merged model (zip)", lambda: model_zip_bytes(ustore.store(), rid), f"{rid}-merged.zip",
                       "application/zip", key="merge_dl", type="primary", icon=":material/download:")
    st.caption("A plain Hugging Face folder: `AutoModelForSequenceClassification.from_pretrained(folder)` loads it "
               "with every layer holding its own copy of the shared FFN (same logits); "
               "`core.merging.ffn.load_merged(folder)` ties the copies again, so the model in memory has fewer unique "
               f"parameters. From a shell: `python -m core export {rid} DIR`.")


def panel(run_id: str) -> None:
    run = ustore.get_run(run_id)
    if run is None:
        st.error("This run was deleted. Pick another one above.")
        return
    widgets.run_heading(run, f"Merge · {run.strategy}", key_prefix="merge_cancel_")
    widgets.run_progress(run, "Check the window and the model, or lower the budgets on the Setup page, "
                         "and start it again.", "Cancelled. What it measured before stopping is shown below.")
    steps = ustore.steps(run)
    summary = ustore.merge_summary(run)
    comparison = ustore.step_table(run.id, 1, artifacts.COMPARISON_TABLE)
    if comparison is not None and not comparison.empty:
        comparison = noise.comparison_intervals(run.id, comparison, ustore.outcomes, ustore.test_size(run))
    _metrics(summary, steps, comparison)
    if summary.precision:
        st.caption(f"Ran in **{summary.precision}** (setting: {run.config.get('precision', 'auto')}).")
    choice = ustore.choice(run.id, 1)
    window = [int(i) for i in (choice or {}).get("window") or []]

    sim_col, win_col = st.columns([1, 1], gap="large")
    with sim_col:
        similarity = ustore.step_table(run.id, 0, artifacts.FFN_SIMILARITY_TABLE)
        widgets.chart(merge_plots.similarity_heatmap(similarity, window), key=f"merge_sim_{run.id}")
        st.caption("Linear CKA between the layers' FFN activations on calibration tokens (1 = the same up to a "
                   "rotation and scale). Bright blocks on the diagonal are mergeable runs of layers"
                   + (f"; the merged window {choice['label']} is outlined." if choice else "."))
    with win_col:
        windows = ustore.step_table(run.id, 1, artifacts.WINDOWS_TABLE)
        selection = (choice or {}).get("selection", run.config.get("selection", "accuracy"))
        widgets.chart(merge_plots.window_scores(windows, selection,
                                                f"Window choice ({selection})" if choice else "Candidate windows"),
                      key=f"merge_win_{run.id}")
        if selection == "accuracy":
            st.caption("Each bar: validation accuracy of the model merged on that window, before any tuning. The "
                       "best window (highlighted) is merged.")
        elif selection == "similarity":
            st.caption("Each bar: mean CKA among the window's layers; the most similar window is merged.")
        else:
            st.caption("A fixed window: chosen by hand, shown with its mean CKA.")

    st.subheader("Prune vs merge at the same budget")
    widgets.chart(merge_plots.prune_vs_merge(comparison), key=f"merge_cmp_{run.id}")
    _verdict(run, summary, comparison)
    st.caption(noise.METHOD_NOTE + " Error bars: the same intervals.")
    if comparison is not None and not comparison.empty:
        with st.expander("Comparison table"):
            shown = comparison.drop(columns=[c for c in ("test_low", "test_high") if c in comparison])
            st.dataframe(shown, hide_index=True,
                         column_config={c: st.column_config.NumberColumn(format="%.4f")
                                        for c in ("val_accuracy", "test_accuracy", "test_macro_f1")})
    alignment = ustore.step_table(run.id, 1, artifacts.ALIGNMENT_TABLE)
    if alignment is not None and not alignment.empty:
        with st.expander("Neuron alignment"):
            st.dataframe(alignment, hide_index=True)
            st.caption("Mean correlation of matched neurons with the reference layer, before (identity order) and "
                       "after the Hungarian assignment, and the fraction of neurons that moved.")
    _overview(run)
    st.subheader("Export")
    _export(run)
    if summary.timings:
        with st.expander("Time per stage (s)"):
            st.dataframe(pd.DataFrame([summary.timings]), hide_index=True)
    with st.expander("Configuration"):
        st.json(run.config, expanded=False)
    was = st.session_state.get("merge_was_active", False)
    st.session_state["merge_was_active"] = run.active
    if was and not st.session_state["merge_was_active"]:
        st.rerun()  # stop polling once the run has finished


active = run.active
st.fragment(panel, run_every=POLL_S if active else None)(run.id)
