"""Runs & export: list and filter every stored run, delete runs, download a pruned model (a zip of a plain
Hugging Face folder) and a run's report (JSON, and its steps as CSV)."""

from __future__ import annotations

import json
import time

import pandas as pd
import streamlit as st

from core.runs.export import model_zip_bytes
from core.runs.report import run_report
from core.runs.store import ACTIVE

from ui import cached_store as ustore
from ui import router, state, theme, widgets

router.ensure_routed()  # a cold server's first deep link runs this file without app.py

state.init()
widgets.page_header("Runs & export", "Everything in the run store: filter, inspect, delete, and take a pruned "
                                     "model with you.")

runs = ustore.runs()
st.caption(f"Store: `{ustore.root()}`")
if not runs:
    widgets.empty_state("The store is empty. Start a run on the Home or Live pruning page.", widgets.LIVE_PAGE,
                        "Live pruning")
    router.stop_page()

f = st.columns(5)
statuses = sorted({r["status"] for r in runs})
pick_status = f[0].multiselect("Status", statuses, default=statuses, key="runs_status")
pick_kind = f[1].multiselect("Kind", sorted({r["kind"] for r in runs}), default=sorted({r["kind"] for r in runs}),
                             key="runs_kind")
pick_model = f[2].multiselect("Model", sorted({r["model"] for r in runs}), key="runs_model",
                              placeholder="all models")
pick_ds = f[3].multiselect("Dataset", sorted({r["dataset"] for r in runs}), key="runs_ds",
                           format_func=state.dataset_label, placeholder="all datasets")
pick_st = f[4].multiselect("Strategy", sorted({r["strategy"] for r in runs}), key="runs_st",
                           format_func=theme.strategy_label, placeholder="all strategies")
shown = [r for r in runs if r["status"] in pick_status and r["kind"] in pick_kind
         and (not pick_model or r["model"] in pick_model) and (not pick_ds or r["dataset"] in pick_ds)
         and (not pick_st or r["strategy"] in pick_st)]


def _row(run: dict) -> dict:
    summary = ustore.summary(run)
    final = (summary.get("after_kd") or summary.get("before_kd") or {}).get("test_accuracy")
    took = (run["finished_at"] - run["started_at"]) if run.get("finished_at") and run.get("started_at") else None
    return {"run": run["id"], "status": run["status"],
            "strategy": theme.strategy_label(run["strategy"]) if run["kind"] == "prune" else run["strategy"],
            "kind": run["kind"],
            "model": run["model"], "dataset": state.dataset_label(run["dataset"]),
            "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(run["created_at"])),
            "minutes": round(took / 60, 1) if took else None,
            "teacher acc": (summary.get("teacher") or {}).get("test_accuracy"), "final acc": final,
            "layers left": summary.get("final_layers"),
            "weak teacher": "⚠ pruned anyway" if summary.get("weak_teacher") else "",
            "error": run.get("error") or ""}


st.dataframe(pd.DataFrame([_row(r) for r in shown]), hide_index=True,
             column_config={"teacher acc": st.column_config.NumberColumn(format="%.3f"),
                            "final acc": st.column_config.NumberColumn(format="%.3f")})
st.caption(f"{len(shown)} of {len(runs)} run(s) shown.")

by_id = {r["id"]: r for r in runs}
left, right = st.columns(2, gap="large")
with left:
    st.subheader("Export")
    run = widgets.pick_run(shown, key="runs_export", label="Run to export") if shown else None
    if run is None:
        st.info("No run matches the filters.", icon="💡")
    else:
        report = run_report(ustore.store(), run["id"])
        steps = pd.DataFrame(report["steps"])
        c1, c2, c3 = st.columns(3)
        c1.download_button("Report (JSON)", json.dumps(report, indent=1, default=str).encode(),
                           f"{run['id']}-report.json", "application/json", key="dl_json", width="stretch")
        c2.download_button("Steps (CSV)", steps.to_csv(index=False).encode(), f"{run['id']}-steps.csv",
                           "text/csv", key="dl_csv", width="stretch", disabled=steps.empty)
        if ustore.has_model(run["id"]):
            rid = run["id"]
            noun = "Merged" if run["kind"] == "merge" else "Pruned"
            c3.download_button(f"{noun} model (zip)", lambda: model_zip_bytes(ustore.store(), rid),
                               f"{rid}-model.zip", "application/zip", key="dl_zip", type="primary", width="stretch")
            st.caption("The zip holds a plain Hugging Face folder (config, safetensors weights, tokenizer): "
                       "`AutoModelForSequenceClassification.from_pretrained(folder)` loads it without this project. "
                       f"Or from a shell: `python -m core export {rid} DIR`.")
        else:
            c3.button("Pruned model (zip)", disabled=True, key="dl_zip_off", width="stretch")
            st.caption("Only finished runs have a saved model." if run["status"] != "done"
                       else "This run stored no model folder.")
        with st.expander("Configuration"):
            st.json(run["config"], expanded=False)

with right:
    st.subheader("Delete")
    deletable = [r["id"] for r in shown if r["status"] not in ACTIVE]
    doomed = st.multiselect("Runs to delete", deletable, key="runs_delete",
                            format_func=lambda i: widgets.run_label(by_id[i]),
                            help="Running runs cannot be deleted: cancel them on the Live page first.")
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
