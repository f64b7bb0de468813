"""The Studies page's tables and numbers: cell counts, the cell table a person reads, the list of studies, and
an honest time estimate from this machine's own finished runs. Plain pandas in, plain values out: nothing here
calls streamlit or starts anything.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from core.data.truncation import relative_cost
from core.runs.record import PruneSummary, Run, RunStatus
from core.stats import over_seeds

from . import theme

#: the order a person reads a study's cells in, and the colour of each status (the table's status column)
STATUS_ORDER = ("running", "waiting", "done", "failed", "cancelled", "interrupted")
STATUS_COLORS = {"running": "#FFF3C4", "waiting": "#EEF0F3", "done": "#D5F5E3", "failed": "#FADBD8",
                 "cancelled": "#E5E8E8", "interrupted": "#FDEBD0"}


def counts(cells: pd.DataFrame) -> dict[str, int]:
    """How many cells are done / running / waiting / failed (cancelled and interrupted runs count as failed:
    they did not finish and a resume redoes them), and the total."""
    status = cells["status"] if not cells.empty else pd.Series(dtype=str)
    out = {"done": int((status == "done").sum()), "running": int((status == "running").sum()),
           "waiting": int((status == "waiting").sum()),
           "failed": int(status.isin(("failed", "cancelled", "interrupted")).sum())}
    out["total"] = int(len(status))
    return out


def fraction_done(c: Mapping[str, int]) -> float:
    return c["done"] / c["total"] if c["total"] else 0.0


def cell_rows(cells: pd.DataFrame, dataset_label: Any = str) -> pd.DataFrame:
    """The cell table as shown: running cells first, then waiting, done, failed; strategy and dataset names;
    the current step and message of a running cell."""
    if cells.empty:
        return pd.DataFrame(columns=["status", "strategy", "dataset", "seed", "step", "message", "run"])
    order = {s: i for i, s in enumerate(STATUS_ORDER)}
    frame = cells.assign(_o=[order.get(s, len(order)) for s in cells["status"]])
    frame = frame.sort_values(["_o", "dataset", "seed"], kind="stable")
    step = pd.array([None if pd.isna(v) else int(v) for v in frame["step"]], dtype="Int64")
    return pd.DataFrame({"status": frame["status"].to_numpy(),
                         "strategy": [theme.strategy_label(s) for s in frame["strategy"]],
                         "dataset": [dataset_label(d) for d in frame["dataset"]],
                         "seed": frame["seed"].astype(int).to_numpy(), "step": step,
                         "message": frame["message"].fillna("").to_numpy(),
                         "run": frame["run_id"].fillna("").to_numpy()})


def with_results(rows: pd.DataFrame, finals: Mapping[str, Any]) -> pd.DataFrame:
    """The cell table with each finished cell's final test accuracy and its difference to the teacher, both with
    their 95 % intervals (``finals``: run id -> :class:`core.runs.noise.FinalIntervals`)."""
    acc, vs = [], []
    for run_id in rows["run"] if "run" in rows else []:
        f = finals.get(run_id)
        acc.append(f.final.text() if f is not None and f.final is not None else "")
        vs.append(f.vs_teacher.signed() if f is not None and f.vs_teacher is not None else "")
    out = rows.copy()
    at = list(out.columns).index("message") if "message" in out.columns else len(out.columns)
    out.insert(at, "final acc [95 %]", acc)
    out.insert(at + 1, "final − teacher", vs)
    return out


def over_seeds_table(cells: pd.DataFrame, finals: Mapping[str, Any], dataset_label: Any = str) -> pd.DataFrame:
    """Per dataset and strategy, the final test accuracy over the finished seeds: the mean with its t interval
    and spread (``core.stats.over_seeds``), or the one seed's Wilson interval."""
    rows = []
    done = cells[(cells["status"] == "done") & cells["run_id"].notna()] if not cells.empty else cells
    for (dataset, strategy), g in done.groupby(["dataset", "strategy"], sort=True):
        found = [finals[r] for r in g["run_id"] if r in finals and finals[r].final is not None]
        if not found:
            continue
        if len(found) == 1:
            text = f"{found[0].final.text()} (1 seed)"
        else:
            text = str(over_seeds([f.final.accuracy for f in found]))
        rows.append({"dataset": dataset_label(dataset), "strategy": theme.strategy_label(strategy),
                     "seeds": len(found), "final acc over seeds [95 %]": text})
    return pd.DataFrame(rows, columns=["dataset", "strategy", "seeds", "final acc over seeds [95 %]"])


def status_style(value: Any) -> str:
    """CSS for one cell of the status column (pandas ``Styler.map``)."""
    color = STATUS_COLORS.get(str(value))
    return f"background-color: {color}; color: #1B1F24" if color else ""


def styled(rows: pd.DataFrame) -> Any:
    """The cell table coloured by status (a pandas Styler, which ``st.dataframe`` renders)."""
    return rows.style.map(status_style, subset=["status"])


def study_label(study: Any, n_cells: int | None = None) -> str:
    when = time.strftime("%d %b %H:%M", time.localtime(study.created_at))
    cells = n_cells if n_cells is not None else study.config.n_cells
    return f"[{study.status}] {study.name} · {cells} cells · {when} · {study.id[-5:]}"


def studies_frame(studies: Sequence[Any]) -> pd.DataFrame:
    """The earlier studies, newest first: what they ran and how they ended."""
    rows = []
    for s in studies:
        c = s.config
        rows.append({"study": s.name, "status": s.status, "cells": c.n_cells, "models": ", ".join(c.models),
                     "datasets": ", ".join(c.datasets), "strategies": len(c.strategies), "seeds": len(c.seeds),
                     "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(s.created_at)), "id": s.id})
    return pd.DataFrame(rows, columns=["study", "status", "cells", "models", "datasets", "strategies", "seeds",
                                       "started", "id"])


def study_of_runs(runs: Iterable[Run], studies: Sequence[Any]) -> dict[str, str]:
    """run id -> the name of the study it belongs to (runs with ``group_id`` = a study id and a ``cell_id``)."""
    names = {s.id: s.name for s in studies}
    return {r.id: names[r.group_id] for r in runs if r.cell_id and r.group_id in names}


# ------------------------------------------------------------------------------------------------ estimate
@dataclass(frozen=True)
class Estimate:
    """An upper bound on a study's time: per-cell seconds from finished runs, times the cells."""

    seconds: float | None
    per_cell_s: float | None
    runs_used: int
    basis: str
    text: str


def _work(cfg: Mapping[str, Any]) -> float:
    """Training row-epochs of one run (every step's fine-tuning plus distillation: the bulk of a run's time),
    scaled by its sequence length relative to 32 (:func:`core.data.truncation.relative_cost`; an ``auto`` length
    counts as its cap, so the estimate stays an upper bound)."""
    data = cfg.get("data") or {}
    kd = (cfg.get("kd") or {}).get("epochs", 0.0) if cfg.get("distill", True) else 0.0
    epochs = float(cfg.get("layers_to_remove", 1)) * float(cfg.get("step_epochs", 1.0)) + float(kd or 0.0)
    length = data.get("max_length", 32)
    if not isinstance(length, int):
        length = int(data.get("max_auto_length", 128))
    return float(data.get("train_cap", 1)) * max(epochs, 0.5) * relative_cost(length)


def _per_cell(run: Run) -> float | None:
    summary = PruneSummary.of(run.summary)
    total = summary.total_seconds
    if total is None:
        return None
    if run.cell_id:  # a study run's clock is its whole group's: its share is total / strategies
        return total / summary.strategies_in_tree
    return total


def _fmt(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate(runs: Iterable[Run], model: str, cells: int, target: Mapping[str, Any]) -> Estimate:
    """Time for ``cells`` runs of ``model`` at the budget ``target`` (a PruneConfig dict), from this machine's
    finished pruning runs of the same model: the median seconds per training row-epoch, times the target's
    row-epochs, times the cells. Stand-alone runs are preferred (each paid for all its own work, so the result is
    an upper bound: a study's groups share the teacher, signals, oracle and identical fine-tunes); without any,
    earlier study runs count with their share of their group's time."""
    done = [r for r in runs if r.kind == "prune" and r.status == RunStatus.DONE and r.model == model]
    alone = [r for r in done if not r.cell_id]
    pool, basis = (alone, "stand-alone runs") if alone else (done, "earlier study runs (with sharing)")
    rates = []
    for r in pool:
        sec = _per_cell(r)
        if sec is not None:
            rates.append(sec / _work(r.config))
    if not rates:
        return Estimate(None, None, 0, "", f"No finished {model} run on this machine to estimate from yet: run one "
                                           "on the Live pruning page (or a one-cell study) to get an estimate.")
    per_cell = statistics.median(rates) * _work(target)
    total = per_cell * cells
    bound = "an upper bound: the cells of one model, dataset and seed share their work" \
        if basis == "stand-alone runs" else "a rough figure: the budgets and sharing of those studies differ"
    text = (f"About **{_fmt(total)}** for {cells} cell(s) (≈ {_fmt(per_cell)} each), from the median of "
            f"{len(rates)} finished {model} {basis} on this machine, scaled by training rows × epochs × length. "
            f"This is {bound}.")
    return Estimate(total, per_cell, len(rates), basis, text)
