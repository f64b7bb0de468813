"""Compare: the paper-style table across strategies and datasets, accuracy-vs-depth curves, before/after
distillation, and Pareto plots of accuracy against parameters and measured latency."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.runs import noise
from core.runs.record import RunStatus
from core.runs.report import Ranking, compare_table, rankings, with_intervals
from core.studies.records import list_studies
from ui import cached_store, links, plots, router, state, study_view, tables, theme, widgets
from ui.report import download_button as report_button

router.ensure_routed()  # a cold server's first deep link runs this file without app.py

state.init()
widgets.page_header("Compare", "Every stored pruning run side by side: which strategy keeps the most accuracy "
                               "at each depth, what distillation wins back, and what it costs.")


@st.cache_data(show_spinner=False, max_entries=32)
def _table(root: str, key: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    return compare_table(cached_store.store(), [run_id for run_id, _ in key])


@st.cache_data(show_spinner=False, max_entries=32)
def _table_text(root: str, key: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    """The table's accuracies with their 95 % intervals, as text."""
    return with_intervals(cached_store.store(), _table(root, key))


@st.cache_data(show_spinner=False, max_entries=32)
def _rankings(root: str, key: tuple[tuple[str, str], ...]) -> list[Ranking]:
    return rankings(cached_store.store(), [run_id for run_id, _ in key], theme.strategy_label)


runs = [r for r in cached_store.runs(kind="prune") if r.status not in (RunStatus.QUEUED, RunStatus.FAILED)]
if not runs:
    widgets.empty_state("Nothing to compare yet. Start runs on the Live pruning page: several strategies on the "
                        "same model and dataset make the most useful comparison.", widgets.LIVE_PAGE, "Live pruning")
    router.stop_page()

# finished study runs, grouped by study (group_id = study id, cell_id set): pick one to see only its runs
studies = {s.id: s for s in list_studies(cached_store.store())}
run_study = study_view.study_of_runs(runs, list(studies.values()))
in_studies = [sid for sid in studies if any(r.group_id == sid and r.id in run_study for r in runs)]
if in_studies:
    links.choice("study", "cmp_study", in_studies, "study")  # ?study= opens that study's runs
    picked = st.selectbox("Study", [None, *in_studies], key="cmp_study",
                          format_func=lambda s: "All runs" if s is None else study_view.study_label(studies[s]),
                          help="The runs of one study (started on the Studies page); All runs shows every run.")
    if picked is not None:
        runs = [r for r in runs if r.group_id == picked and r.id in run_study]

models = sorted({r.model for r in runs})
f1, f2, f3, f4 = st.columns([1, 2, 2, 1])
model_default = state.model() if state.model() in models else models[0]
model = f1.selectbox("Model", models, index=models.index(model_default), key="cmp_model")
of_model = [r for r in runs if r.model == model]
datasets = sorted({r.dataset for r in of_model})
chosen_ds = f2.multiselect("Datasets", datasets, default=datasets, format_func=state.dataset_label, key="cmp_ds")
strategies = sorted({r.strategy for r in of_model}, key=theme.strategy_label)
chosen_st = f3.multiselect("Strategies", strategies, default=strategies, format_func=theme.strategy_label,
                           key="cmp_st")
finished_only = f4.toggle("Finished only", value=False, key="cmp_done",
                          help="Hide runs that are still running or stopped early.")
selected = [r for r in of_model if r.dataset in chosen_ds and r.strategy in chosen_st
            and (r.status == RunStatus.DONE or not finished_only)]
if not selected:
    st.info("No run matches these filters: widen them above.", icon="💡")
    router.stop_page()

key = tuple(sorted((r.id, cached_store.version(r)) for r in selected))
table = _table(cached_store.root(), key)
steps = cached_store.all_steps(selected)
meta = {r.id: r for r in selected}
summaries = {r.id: cached_store.run_summary(r) for r in selected}

st.subheader("The table")
if table.empty:
    st.info("The selected runs have no finished step yet.", icon="💡")
else:
    show = _table_text(cached_store.root(), key).copy()
    show.insert(0, "strategy name", [theme.strategy_label(s) for s in show["strategy"]])
    show["dataset"] = [state.dataset_label(d) for d in show["dataset"]]
    show["weak teacher"] = ["⚠ yes" if rid in summaries and summaries[rid].weak_teacher else ""
                            for rid in show["run_id"]]
    show["study"] = [run_study.get(rid, "") for rid in show["run_id"]]
    show["recorded"] = [cached_store.recorded_day(meta[rid]) for rid in show["run_id"]]
    show = show[[c for c in show.columns if c != "run_id"] + ["run_id"]]
    acc_cols = [c for c in show.columns if c.startswith("acc@") or c in ("teacher", "best", "after_kd")]
    numeric = [c for c in ["ratio", "best_layers"] if c in show]
    show[numeric] = show[numeric].apply(pd.to_numeric, errors="coerce")
    config = {c: st.column_config.TextColumn(c.replace("acc@", "") + " layers" if c.startswith("acc@") else c)
              for c in acc_cols}
    config["ratio"] = st.column_config.NumberColumn("acc-to-size ratio", format="%.2f",
                                                    help="(accuracy / teacher accuracy) / (parameters / teacher "
                                                         "parameters); our definition, the paper's is not public")
    config["best_layers"] = st.column_config.NumberColumn("best at (layers)", format="%d")
    st.dataframe(show.drop(columns=["strategy"]), hide_index=True, column_config=config)
    st.caption("Test accuracy after removing layers down to N and fine-tuning; **best** is the maximum accuracy "
               "over pruning depth (the paper's headline number); **after_kd** is the final model distilled "
               "from the teacher; **weak teacher** marks runs pruned anyway although their teacher did not beat "
               "the majority-class baseline (their numbers may be noise); **recorded** runs ship with the app "
               "(the day they finished; their budget and precision on Runs & export). " + noise.METHOD_NOTE
               + " **best** is the maximum over depths picked on the same test rows, so it is optimistic.")
    st.download_button("Download the table (CSV)", table.to_csv(index=False).encode(), "compare.csv", "text/csv",
                       key="cmp_csv")
    report_button(cached_store.store(), [r.id for r in selected], key="cmp_report", label="Report of these runs (HTML)",
                  width="content")

ranks = _rankings(cached_store.root(), key)
if ranks:
    st.subheader("Which strategy is ahead")
    for r in ranks:
        head, *places = r.lines()
        st.markdown(f"**{state.dataset_label(r.dataset)}**, {head.lower()}:\n"
                    + "\n".join(f"- {line}" for line in places))
    st.caption("Ranked by test accuracy at the deepest depth every run of the dataset reached; each place compared "
               "with the first on the same test rows (paired bootstrap, 95 %). A place **within noise** of the "
               "first is a tie, not a loss.")

st.subheader("Accuracy as layers are removed")
if steps.empty:
    st.info("No finished step yet.", icon="💡")
else:
    steps = pd.concat([cached_store.prune_intervals(meta[i]).with_bounds(g) for i, g in steps.groupby("run_id")],
                      ignore_index=True)
    steps["strategy"] = [meta[i].strategy for i in steps["run_id"]]
    steps["dataset"] = [meta[i].dataset for i in steps["run_id"]]
    ds_list = sorted(steps["dataset"].unique())
    cols = st.columns(min(len(ds_list), 2))
    for i, ds in enumerate(ds_list):
        with cols[i % len(cols)]:
            widgets.chart(plots.curves_by_strategy(steps[steps["dataset"] == ds],
                                                   title=f"{state.dataset_label(ds)}: test accuracy"),
                          key=f"cmp_curve_{ds}")

st.subheader("What distillation wins back")
widgets.chart(plots.kd_bars(tables.kd_frame(selected, summaries,
                                            {r.id: cached_store.prune_intervals(r) for r in selected})), key="cmp_kd")
st.caption("Error bars: 95 % Wilson intervals over the test rows.")

st.subheader("Accuracy vs size and speed")
intervals = {r.id: cached_store.prune_intervals(r) for r in selected}
points = tables.compare_points(steps, selected, summaries, intervals) if not steps.empty else pd.DataFrame()
if points.empty:
    st.info("No measured models yet.", icon="💡")
else:
    # one Pareto chart at a time: each Plotly chart costs the browser ~0.15 s per page switch (measured)
    cost = st.radio("Cost axis", ["parameters", "measured CPU latency"], horizontal=True, key="cmp_cost")
    if cost == "parameters":
        widgets.chart(plots.pareto_plot(points, "params", "parameters", "Accuracy vs parameters"),
                      key="cmp_pareto_params")
    else:
        widgets.chart(plots.pareto_plot(points, "latency_ms", "CPU latency per batch while training (ms, log)",
                                        "Accuracy vs measured latency", log_x=True), key="cmp_pareto_latency")
    st.caption("Diamonds: teachers; circles: pruned models after each step's fine-tuning; stars: after "
               "distillation; error bars: 95 % Wilson intervals over the test rows. The dashed line is the Pareto "
               "front: no model is both smaller (or faster) and more accurate than a model on it. Latency is the "
               "median CPU time of one fixed batch, measured while the run trained, so a busy machine shows in it; "
               "the deploy benchmark on Runs & export (or `python -m benchmarks deploy RUN_ID`) measures it side "
               "by side, in PyTorch and ONNX Runtime.")
