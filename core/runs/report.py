"""Paper-shaped tables from the run store: per dataset x strategy, the accuracy at each depth, the best
accuracy over depth, after distillation, and the accuracy-to-size ratio. The CLI and the Compare page
both use these functions, so the numbers are computed in one place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from core.jsontypes import JSONObject
from core.runs import artifacts, noise
from core.runs.record import MergeSummary, PruneSummary, Run, summary_of
from core.runs.store import RunStore

#: the run row's columns a report keeps
REPORT_COLUMNS = ("id", "kind", "name", "model", "dataset", "strategy", "status", "created_at", "started_at",
                  "finished_at", "error")


@dataclass(frozen=True)
class RunReport:
    """Everything about one run: its record (config and status), its summary and its steps table."""

    run: Run
    summary: PruneSummary | MergeSummary
    steps: pd.DataFrame

    def to_dict(self) -> JSONObject:
        """JSON-ready (the report a person downloads): the run's row, config, summary as stored, steps."""
        row = self.run.to_dict()
        return {"run": {k: row[k] for k in REPORT_COLUMNS}, "config": self.run.config,
                "summary": self.summary.to_dict(), "steps": self.steps.to_dict(orient="records")}


def run_report(store: RunStore, run_id: str) -> RunReport:
    """Everything about one run (:class:`RunReport`)."""
    run = store.get_run(run_id)
    if run is None:
        raise ValueError(f"no run {run_id!r}")
    return RunReport(run, summary_of(run.kind, store.read_json(run_id, artifacts.SUMMARY) or run.summary),
                     store.steps(run_id))


def run_intervals(store: RunStore, run_id: str) -> noise.PruneIntervals:
    """Every test accuracy of a stored pruning run with its interval (:func:`core.runs.noise.prune_intervals`)."""
    run = store.get_run(run_id)
    if run is None:
        raise ValueError(f"no run {run_id!r}")
    summary = store.read_json(run_id, artifacts.SUMMARY) or run.summary
    return noise.prune_intervals(run_id, store.steps(run_id), summary, store.read_outcomes,
                                 noise.test_size(store.events(run_id)))


@dataclass(frozen=True)
class Ranking:
    """The runs of one dataset ranked by test accuracy at ``n_layers`` layers (the deepest depth every one of
    them reached), each compared with the leader."""

    dataset: str
    n_layers: int
    ranked: list[noise.Ranked]

    def sentence(self) -> str:
        return f"At {self.n_layers} layers: " + noise.rank_sentence(self.ranked)

    def lines(self) -> list[str]:
        """The heading (``At 10 layers``) and one line per place (:func:`core.runs.noise.rank_lines`)."""
        return [f"At {self.n_layers} layers", *noise.rank_lines(self.ranked)]


def rankings(store: RunStore, run_ids: list[str], label: Callable[[str], str] = str) -> list[Ranking]:
    """Per dataset, the pruning runs of ``run_ids`` ranked at the deepest depth all of them reached (two runs of
    the same strategy are told apart by their id); paired comparisons where the runs kept outcomes on the same
    test rows. Datasets with fewer than two runs past the teacher are left out."""
    by_dataset: dict[str, list[Run]] = {}
    for run_id in run_ids:
        run = store.get_run(run_id)
        if run is not None and run.kind == "prune":
            by_dataset.setdefault(run.dataset, []).append(run)
    out = []
    for dataset, runs in sorted(by_dataset.items()):
        found = [(r, run_intervals(store, r.id)) for r in runs]
        found = [(r, f) for r, f in found if f.final_step]
        finals = [f.final_step for _, f in found if f.final_step is not None]
        if len(found) < 2:
            continue
        step = min(finals)
        steps0 = store.steps(found[0][0].id)
        at = steps0[steps0["step"] == step]
        n_layers = int(at["n_layers"].iloc[0]) if len(at) and "n_layers" in at else -step
        names = [label(r.strategy) for r, _ in found]
        entries = [(name if names.count(name) == 1 else f"{name} ({r.id[-6:]})", f.steps[step])
                   for name, (r, f) in zip(names, found) if step in f.steps]
        out.append(Ranking(dataset, n_layers, noise.rank(entries)))
    return out


def with_intervals(store: RunStore, table: pd.DataFrame) -> pd.DataFrame:
    """:func:`compare_table`'s accuracies (``teacher``, ``acc@L``, ``best``, ``after_kd``) as text with their
    95 % intervals (``0.894 [0.882, 0.905]``), for printing; the numbers stay in :func:`compare_table`."""
    if table.empty:
        return table
    out = table.copy().astype({c: object for c in table.columns if c.startswith("acc@")
                               or c in ("teacher", "best", "after_kd")})
    for i, row in table.iterrows():
        found = run_intervals(store, row["run_id"])
        steps = store.steps(row["run_id"])
        by_layers = {int(s["n_layers"]): int(s["step"]) for _, s in steps.iterrows()} if "n_layers" in steps else {}
        for col in out.columns:
            if col.startswith("acc@") and pd.notna(row[col]):
                m = found.steps.get(by_layers.get(int(col[4:]), -1))
                out.at[i, col] = m.text() if m is not None else f"{row[col]:.3f}"
        if pd.notna(row.get("teacher")) and found.teacher is not None:
            out.at[i, "teacher"] = found.teacher.text()
        if "best" in table and pd.notna(row.get("best")):
            m = found.steps.get(by_layers.get(int(row["best_layers"]), -1))
            out.at[i, "best"] = m.text() if m is not None else f"{row['best']:.3f}"
        if "after_kd" in table and pd.notna(row.get("after_kd")):
            out.at[i, "after_kd"] = found.after_kd.text() if found.after_kd is not None else f"{row['after_kd']:.3f}"
    return out


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
        summary = PruneSummary.of(store.read_json(run.id, artifacts.SUMMARY) or run.summary)
        row: dict[str, str | int | float | None] = {"run_id": run.id, "dataset": run.dataset, "model": run.model,
                                                    "strategy": run.strategy, "status": str(run.status),
                                                    "teacher": float(steps.iloc[0]["test_accuracy"])}
        for _, s in steps.iloc[1:].iterrows():
            row[f"acc@{int(s['n_layers'])}"] = float(s["test_accuracy"])
        pruned = steps.iloc[1:]
        if not pruned.empty:
            best = pruned.loc[pruned["test_accuracy"].idxmax()]
            row["best"] = float(best["test_accuracy"])
            row["best_layers"] = int(best["n_layers"])
        row["after_kd"] = summary.after_kd_accuracy
        row["ratio"] = summary.ratio
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    depth_cols = sorted([c for c in frame.columns if c.startswith("acc@")], key=lambda c: -int(c[4:]))
    lead = ["run_id", "dataset", "model", "strategy", "status", "teacher"]
    tail = [c for c in ("best", "best_layers", "after_kd", "ratio") if c in frame.columns]
    return frame[lead + depth_cols + tail].sort_values(["dataset", "strategy"]).reset_index(drop=True)
