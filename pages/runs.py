"""Runs & export: list and filter every stored run, delete runs, download a pruned model (a zip of a plain
Hugging Face folder) and a run's report (JSON, and its steps as CSV); the deployment check of a finished run:
its ONNX export (offered only when parity with PyTorch holds) and the deploy benchmark (teacher vs compressed,
PyTorch vs ONNX Runtime), both run by a background worker (started through ``core.jobs.deploy``) while a fragment
polls."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from core.deploy.bench import read_bench
from core.deploy.bench_result import COMPARISONS, BenchResult, DeployBenchConfig
from core.deploy.onnx_export import offered_onnx, read_parity
from core.jobs.deploy import deploy_job, start_deploy
from core.jobs.slots import max_jobs
from core.paths import shown_path
from core.runs import noise
from core.runs.export import model_zip_bytes
from core.runs.record import PruneSummary, Run, RunStatus
from core.runs.report import run_report
from ui import bounds, links, plots, router, state, theme, widgets
from ui import cached_store as ustore
from ui.report import download_button as report_button

router.ensure_routed()  # a cold server's first deep link runs this file without app.py

DEPLOY_POLL_S = 1.5

state.init()
widgets.page_header("Runs & export", "Everything in the run store: filter, inspect, delete, and take a pruned "
                                     "model with you.")

runs = ustore.runs()
own_count = sum(not r.recorded for r in runs)
st.caption(f"Your store: `{shown_path(Path(ustore.root()))}` ({own_count} run(s))"
           + (f" · {len(runs) - own_count} recorded run(s) shipped with the app (`{shown_path(found.root)}`, made "
              f"{found.made[:10]}): listed after yours, marked **recorded**, read-only"
              if (found := ustore.pack()) is not None else ""))
if ustore.pack_problem():
    st.warning(ustore.pack_problem(), icon=":material/inventory_2:")
if not runs:
    widgets.empty_state("The store is empty. Start a run on the Home or Live pruning page.", widgets.LIVE_PAGE,
                        "Live pruning")
    router.stop_page()

f = st.columns(5)
statuses = sorted({str(r.status) for r in runs})
pick_status = f[0].multiselect("Status", statuses, default=statuses, key="runs_status")
pick_kind = f[1].multiselect("Kind", sorted({r.kind for r in runs}), default=sorted({r.kind for r in runs}),
                             key="runs_kind")
pick_model = f[2].multiselect("Model", sorted({r.model for r in runs}), key="runs_model",
                              placeholder="all models")
pick_ds = f[3].multiselect("Dataset", sorted({r.dataset for r in runs}), key="runs_ds",
                           format_func=state.dataset_label, placeholder="all datasets")
pick_st = f[4].multiselect("Strategy", sorted({r.strategy for r in runs}), key="runs_st",
                           format_func=theme.strategy_label, placeholder="all strategies")
shown = [r for r in runs if r.status in pick_status and r.kind in pick_kind
         and (not pick_model or r.model in pick_model) and (not pick_ds or r.dataset in pick_ds)
         and (not pick_st or r.strategy in pick_st)]


places = ustore.queue_places()  # the waiting jobs: their place in the store's one queue, when they should start


def _row(run: Run) -> dict[str, Any]:
    summary = ustore.run_summary(run)
    found = ustore.final_intervals(run)
    took = run.seconds
    return {"run": run.id, "status": str(run.status),
            "queue": places[run.job_id].short if run.job_id in places else "", "recorded": ustore.recorded_note(run),
            "strategy": theme.strategy_label(run.strategy) if run.kind == "prune" else run.strategy,
            "teacher acc": found.teacher.text() if found.teacher else _bare(summary.teacher_accuracy),
            "final acc": found.final.text() if found.final else _bare(summary.final_accuracy),
            "final − teacher": found.vs_teacher.signed() if found.vs_teacher else "",
            "kind": run.kind,
            "model": run.model, "dataset": state.dataset_label(run.dataset),
            "precision": summary.precision or "",
            "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(run.created_at)),
            "minutes": round(took / 60, 1) if took else None,
            "layers left": summary.final_layers if isinstance(summary, PruneSummary) else None,
            "weak teacher": "⚠ pruned anyway" if summary.weak_teacher else "",
            "error": run.error or ""}


def _bare(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


st.dataframe(pd.DataFrame([_row(r) for r in shown]).drop(columns=[] if places else ["queue"], errors="ignore"),
             hide_index=True,
             column_config={"queue": st.column_config.TextColumn(
                 help=f"A waiting run's place in the one job queue (at most {max_jobs()} heavy job(s) at once on this "
                      "machine) and when it should start, from this store's finished runs of its model"),
                 "final − teacher": st.column_config.TextColumn(
                 help="Final model minus its teacher on the same test rows, paired 95 % interval; within noise "
                      "when it contains 0"),
                 "precision": st.column_config.TextColumn(help="The precision the run ran in (resolved from its "
                                                               "setting; empty for runs from before the setting)"),
                 "recorded": st.column_config.TextColumn(help="A recorded run shipped with the app: the day it "
                                                              "finished, its budget and precision. Read-only.")})
st.caption(f"{len(shown)} of {len(runs)} run(s) shown. " + noise.METHOD_NOTE)

by_id = {r.id: r for r in runs}
left, right = st.columns(2, gap="large")
with left:
    st.subheader("Export")
    links.choice("run", "runs_export", [r.id for r in shown], "run")  # ?run= opens that run's export
    run = widgets.pick_run(shown, key="runs_export", label="Run to export") if shown else None
    if run is None:
        st.info("No run matches the filters.", icon="💡")
    else:
        report = run_report(ustore.store(), run.id)
        steps = report.steps
        c1, c2, c3 = st.columns(3)
        c1.download_button("Report (JSON)", json.dumps(report.to_dict(), indent=1, default=str).encode(),
                           f"{run.id}-report.json", "application/json", key="dl_json", width="stretch")
        c2.download_button("Steps (CSV)", steps.to_csv(index=False).encode(), f"{run.id}-steps.csv",
                           "text/csv", key="dl_csv", width="stretch", disabled=steps.empty)
        if ustore.has_model(run.id):
            rid = run.id
            noun = "Merged" if run.kind == "merge" else "Pruned"
            c3.download_button(f"{noun} model (zip)", lambda: model_zip_bytes(ustore.store(), rid),
                               f"{rid}-model.zip", "application/zip", key="dl_zip", type="primary", width="stretch")
            st.caption("The zip holds a plain Hugging Face folder (config, safetensors weights, tokenizer): "
                       "`AutoModelForSequenceClassification.from_pretrained(folder)` loads it without this project. "
                       f"Or from a shell: `python -m core export {rid} DIR`.")
        else:
            c3.button("Pruned model (zip)", disabled=True, key="dl_zip_off", width="stretch")
            st.caption("Recorded runs ship without their weights (they stay out of git): start the same "
                       "configuration on Live pruning to get the model." if run.recorded
                       else "Only finished runs have a saved model." if run.status != RunStatus.DONE
                       else "This run stored no model folder.")
        report_button(ustore.store(), [run.id], key="dl_html")
        with st.expander("Configuration"):
            st.json(run.config, expanded=False)

with right:
    st.subheader("Delete")
    deletable = [r.id for r in shown if not r.active and not r.recorded]  # recorded runs are read-only
    doomed = st.multiselect("Runs to delete", deletable, key="runs_delete",
                            format_func=lambda i: widgets.run_label(by_id[i]),
                            help="Running runs cannot be deleted: cancel them on the Live page first. Recorded "
                                 "runs (shipped with the app) are read-only and not offered.")
    sure = st.checkbox("Yes, delete them with their artifacts and models", key="runs_sure")
    if st.button("Delete", disabled=not (doomed and sure), key="runs_delete_btn"):
        failed = []
        for run_id in doomed:
            try:
                ustore.store().delete_run(run_id)
            except Exception as exc:  # e.g. it started running meanwhile
                failed.append(f"{run_id}: {exc}")
        ustore.clear()
        for key in ("runs_delete", "runs_sure"):
            st.session_state.pop(key, None)
        if failed:
            st.error("Some runs were not deleted: " + "; ".join(failed) + ". Cancel them first, then retry.")
        else:
            st.toast(f"Deleted {len(doomed)} run(s).")
            st.rerun()


# ------------------------------------------------------------------------------------------ deployment check
BENCH_COLUMNS = {"batch": "batch", "seq": "tokens", "teacher_torch_ms": "teacher PyTorch ms",
                 "compressed_torch_ms": "compressed PyTorch ms", "speedup_torch": "PyTorch ×",
                 "teacher_ort_ms": "teacher ORT ms", "compressed_ort_ms": "compressed ORT ms", "speedup_ort": "ORT ×",
                 "ort_vs_teacher_torch": "ORT vs PyTorch teacher ×", "compressed_int8_ms": "compressed int8 ms",
                 "speedup_int8": "int8 × (vs teacher ORT)", "ideal": "ideal ×"}


def _bench_result(result: BenchResult) -> None:
    table = result.table()
    st.dataframe(table[[c for c in BENCH_COLUMNS if c in table]].rename(columns=BENCH_COLUMNS), hide_index=True,
                 column_config={v: st.column_config.NumberColumn(format="%.2f") for k, v in BENCH_COLUMNS.items()
                                if k not in ("batch", "seq")})
    widgets.chart(plots.deploy_speedups(table), key=f"deploy_chart_{result.run_id}")
    stats = result.stats
    texts = result.texts
    diffs = stats.differences
    measured: dict[str, noise.Measured | None] = {}
    if stats.intervals:  # kept with per-example outcomes: Wilson intervals and paired differences
        shown = {k: stats.text(k) for k in stats.accuracy}
        paired = ("" if not diffs else " Differences are paired on the same texts (bootstrap over them) and read "
                  "within noise when their interval contains 0: "
                  + "; ".join(f"{COMPARISONS[k][2]} vs {COMPARISONS[k][3]}: {d.verdict}" for k, d in diffs.items())
                  + ".")
    else:  # a result stored before outcomes were kept: Wilson from the accuracy and the parity texts, unpaired
        measured = {k: noise.measured(v, n=texts) for k, v in stats.accuracy.items()}
        shown = {k: m.text() for k, m in measured.items() if m}
        paired = ""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(result.created_at))
    st.caption(f"Measured {when}: median of {result.config.repeats} interleaved rounds per shape, "
               f"{result.threads} thread(s), random token ids without padding; teacher {result.teacher_layers} "
               f"layers, compressed {result.compressed_layers} ({result.distinct_ffns} distinct FFNs). Ideal = "
               "teacher layers / compressed layers (merged FFNs save no compute). Test accuracy "
               + (f"(95 % Wilson over {texts:,} test texts): " if texts else ": ")
               + ", ".join(f"{k.replace('_', ' ')} {text}" for k, text in shown.items()) + "." + paired)
    if stats.int8_lost:
        if (d := diffs.get("int8_vs_float32")) is not None:
            sentence = f"; {d.verdict} (paired)."
        else:
            diff = noise.compare(measured["compressed_int8"], measured["compressed_ort"], "int8", "float32")
            sentence = f"; {diff.sentence()}." if diff else "."
        st.warning(f"int8 quantization lost accuracy: {shown['compressed_int8']} vs {shown['compressed_ort']} in "
                   "float32" + sentence)
    if result.other_runs_active:
        st.warning(f"{len(result.other_runs_active)} other run(s) were training during this measurement: "
                   "the timings are noisy. Measure again when the machine is quiet.")


def _onnx_part(run_id: str, busy: bool) -> None:
    store = ustore.store()
    record = read_parity(store, run_id)
    path = offered_onnx(store, run_id)
    if record is not None and path is not None:
        p, f = record.parity, record.ffn_weights
        st.download_button("ONNX model (.onnx)", lambda: path.read_bytes(), f"{run_id}.onnx",
                           "application/octet-stream", key="dl_onnx", type="primary", width="stretch")
        st.caption(f"Parity on {p.texts} test texts: max |logit difference| {p.max_abs_diff:.1e} "
                   f"(≤ {p.atol:g}), predictions identical. {f.ffn_weight_initializers} FFN weight matrices "
                   f"in the file for {f.distinct_ffns} distinct FFN(s) in {f.layers} layers. Inputs "
                   "`input_ids`, `attention_mask` (int64, any batch and length); output `logits`. "
                   f"From a shell: `python -m core export {run_id} DIR --onnx`.")
        return
    if record is not None and not record.passed:
        p = record.parity
        st.error(f"The ONNX export failed parity and is not offered: max |logit difference| "
                 f"{p.max_abs_diff:.1e} (threshold {p.atol:g}), {p.prediction_mismatches} of "
                 f"{p.texts} predictions differ.")
    if st.button("Export to ONNX (checks parity)", key="deploy_export", disabled=busy, width="stretch"):
        start_deploy(store, run_id, "export")
        st.rerun()


def deploy_panel(run_id: str) -> None:
    store = ustore.store()
    job = deploy_job(store, run_id)
    busy = bool(job and job.active)
    if job is not None and busy:
        what = "ONNX export" if job.task == "export" else "Deploy benchmark"
        place = ustore.job_place("deploy", run_id) if job.status == RunStatus.QUEUED else None  # waits for a slot
        st.progress(min(max(float(job.progress or 0.0), 0.0), 1.0),
                    text=f"**{what}** · {place.text if place else job.message}")
    elif job is not None and job.status in (RunStatus.FAILED, RunStatus.INTERRUPTED) and job.error:
        st.error(f"The last deploy job ({job.task}) {job.status}: {job.error}")
    c1, c2 = st.columns(2, gap="large")
    with c1:
        _onnx_part(run_id, busy)
    with c2:
        with st.form("deploy_form", border=False):
            f1, f2 = st.columns(2)
            repeats = bounds.number_input(f1, "Rounds per shape", DeployBenchConfig.BOUNDS["repeats"],
                                          DeployBenchConfig.repeats, key="deploy_repeats")
            int8 = f2.checkbox("Add int8 (ONNX Runtime dynamic)", key="deploy_int8")
            go_bench = st.form_submit_button("Measure deploy speed", disabled=busy, width="stretch")
        if go_bench:
            start_deploy(store, run_id, "bench", repeats=int(repeats), int8=bool(int8))
            st.rerun()
    result = read_bench(store, run_id)
    if result is not None:
        _bench_result(result)
    elif not busy:
        st.caption("No deploy benchmark yet for this run: it times teacher and compressed model in PyTorch and "
                   "ONNX Runtime at batch 1/8/32 × 32/128 tokens (a few minutes for e5-small).")
    key = f"deploy_polling_{run_id}"
    if st.session_state.get(key) and not busy:
        st.session_state[key] = False
        st.rerun()  # the job ended: stop polling, show its result
    st.session_state[key] = busy


if run is not None and ustore.has_model(run.id):
    st.subheader("Deployment check")
    st.caption("Is the compressed model faster where it will run? The `latency_ms` stored with each step of a run "
               "is measured while the machine trains (one 32 × 32 batch in PyTorch), so it drifts with the load; "
               "this benchmark measures teacher and compressed model side by side, in PyTorch and ONNX Runtime.")
    if widgets.any_active(runs):
        st.info("Runs are training now: a benchmark started meanwhile shares the CPU with them.", icon="⏳")
    job_now = deploy_job(ustore.store(), run.id)
    polling = bool(job_now and job_now.active)
    st.fragment(deploy_panel, run_every=DEPLOY_POLL_S if polling else None)(run.id)
