"""Paper-shaped tables from the run store: per dataset x strategy, the accuracy at each depth, the best
accuracy over depth, after distillation, and the accuracy-to-size ratio. The CLI and the Compare page
both use these functions, so the numbers are computed in one place."""

from __future__ import annotations

from typing import Any

import pandas as pd

from core.runs import artifacts
from core.runs.store import RunStore


def run_report(store: RunStore, run_id: str) -> dict[str, Any]:
    """Everything about one run, JSON-ready: config, status, steps, summary."""
    run = store.get_run(run_id)
    if run is None:
        raise ValueError(f"no run {run_id!r}")
    steps = store.steps(run_id)
    row = run.to_dict()
    return {"run": {k: row[k] for k in ("id", "kind", "name", "model", "dataset", "strategy", "status",
                                         "created_at", "started_at", "finished_at", "error")},
            "config": run.config, "summary": store.read_json(run_id, artifacts.SUMMARY) or run.summary,
            "steps": steps.to_dict(orient="records")}


def compare_table(store: RunStore, run_ids: list[str] | None = None, kind: str = "prune") -> pd.DataFrame:
    """One row per finished (or partly finished) run: the paper's table shape.

    Columns: run_id, dataset, model, strategy, teacher, then ``acc@L`` for each number of remaining layers
    L (test accuracy after removing down to L layers and fine-tuning), ``best`` (maximum accuracy over
    pruning depth) and ``best_layers``, ``after_kd``, ``ratio`` (accuracy-to-size ratio of the final model,
    after KD when run: relative accuracy / relative parameters).
    """
    runs = [r for r in store.list_runs(kind=kind) if run_ids is None or r.id in run_ids]
    rows = []
    for run in runs:
        steps = store.steps(run.id)
        if steps.empty:
            continue
        summary = store.read_json(run.id, artifacts.SUMMARY) or run.summary
        row: dict[str, Any] = {"run_id": run.id, "dataset": run.dataset, "model": run.model,
                               "strategy": run.strategy, "status": str(run.status),
                               "teacher": float(steps.iloc[0]["test_accuracy"])}
        for _, s in steps.iloc[1:].iterrows():
            row[f"acc@{int(s['n_layers'])}"] = float(s["test_accuracy"])
        pruned = steps.iloc[1:]
        if not pruned.empty:
            best = pruned.loc[pruned["test_accuracy"].idxmax()]
            row["best"] = float(best["test_accuracy"])
            row["best_layers"] = int(best["n_layers"])
        row["after_kd"] = (summary.get("after_kd") or {}).get("test_accuracy")
        row["ratio"] = summary.get("ratio")
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    depth_cols = sorted([c for c in frame.columns if c.startswith("acc@")], key=lambda c: -int(c[4:]))
    lead = ["run_id", "dataset", "model", "strategy", "status", "teacher"]
    tail = [c for c in ("best", "best_layers", "after_kd", "ratio") if c in frame.columns]
    return frame[lead + depth_cols + tail].sort_values(["dataset", "strategy"]).reset_index(drop=True)
