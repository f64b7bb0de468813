"""Pure pandas transforms from stored tables to what a plot draws (no streamlit, no torch).

They reshape and summarise numbers the engine stored: a heatmap matrix, per-signal agreement with the
oracle, a Pareto front, SHAP rows gathered across steps. Kept apart from the page code so they are tested
directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from core.runs.record import PruneSummary, Run, RunSummary

if TYPE_CHECKING:
    from core.fusion import FusionChoice
    from core.runs.noise import PruneIntervals

ORACLE_COL = "oracle_accuracy"


def present(frame: pd.DataFrame | None, keys: Iterable[str]) -> list[str]:
    """The ``keys`` that are columns of ``frame``, in the order of ``keys``."""
    if frame is None:
        return []
    return [k for k in keys if k in frame.columns]


def score_column(key: str) -> str:
    return f"score__{key}"


def prune_first_score(frame: pd.DataFrame, key: str, direction: str) -> pd.Series:
    """The direction-adjusted score of signal ``key`` (lower = pruned first): the stored ``score__key``
    column when present, else the raw value oriented by the registry's ``direction``."""
    col = score_column(key)
    if col in frame.columns:
        return frame[col].astype(float)
    raw = frame[key].astype(float)
    return -raw if direction == "highest" else raw


@dataclass(frozen=True)
class HeatmapData:
    """Signals x original layers: ``normalised`` in [0, 1] per signal (NaN for removed layers) and the
    ``raw`` values for hover text."""

    keys: list[str]
    layers: list[int]
    normalised: np.ndarray
    raw: np.ndarray


def heatmap_data(signals: pd.DataFrame, keys: Sequence[str], n_original: int | None = None) -> HeatmapData:
    """Min-max normalise each signal across the layers still present, on the original layer axis."""
    keys = present(signals, keys)
    n = int(n_original or (int(signals["original_layer"].max()) + 1 if len(signals) else 0))
    layers = list(range(n))
    raw = np.full((len(keys), n), np.nan)
    for _, row in signals.iterrows():
        j = int(row["original_layer"])
        if 0 <= j < n:
            raw[:, j] = [float(row[k]) for k in keys]
    norm = np.full_like(raw, np.nan)
    for i in range(len(keys)):
        values = raw[i]
        finite = np.isfinite(values)
        if not finite.any():
            continue
        lo, hi = np.nanmin(values), np.nanmax(values)
        norm[i, finite] = 0.5 if hi - lo <= 1e-12 * max(1.0, abs(hi)) else (values[finite] - lo) / (hi - lo)
    return HeatmapData(keys=list(keys), layers=layers, normalised=norm, raw=raw)


def signal_oracle_agreement(profiles: pd.DataFrame, directions: Mapping[str, str]) -> pd.DataFrame:
    """Spearman correlation between each signal's prune-first order and the oracle, per (run, step).

    For each step the signal's "remove first" order (negated score) is correlated with the oracle accuracy
    after removing each layer (higher = better to remove): +1 means the signal ranks layers exactly as the
    oracle does. Returns one row per signal: mean and median rho over steps, the share of steps where the
    signal's first pick is among the oracle's best, and the number of steps used.
    """
    keys = [k for k in directions if k in profiles.columns]
    if profiles.empty or ORACLE_COL not in profiles.columns or not keys:
        return pd.DataFrame(columns=["signal", "mean_rho", "median_rho", "top1", "steps"])
    rows = []
    groups = list(profiles.groupby(["run_id", "step"], sort=True).indices.values())  # row positions per step
    oracle_all = profiles[ORACLE_COL].astype(float).to_numpy()
    for key in keys:
        rhos, hits = [], []
        order_all = -prune_first_score(profiles, key, directions[key]).to_numpy()
        for idx in groups:
            oracle, order = oracle_all[idx], order_all[idx]
            if len(idx) < 2 or not np.isfinite(order).all() or not np.isfinite(oracle).all():
                continue
            hits.append(bool(oracle[int(np.argmax(order))] >= oracle.max() - 1e-12))
            if np.ptp(order) > 0 and np.ptp(oracle) > 0:
                rhos.append(float(spearmanr(order, oracle).statistic))
        rows.append({"signal": key, "mean_rho": float(np.mean(rhos)) if rhos else np.nan,
                     "median_rho": float(np.median(rhos)) if rhos else np.nan,
                     "top1": float(np.mean(hits)) if hits else np.nan, "steps": len(rhos)})
    return pd.DataFrame(rows)


def pareto_mask(cost: Sequence[float], quality: Sequence[float]) -> np.ndarray:
    """True for points no other point beats (lower or equal cost and higher or equal quality, one strictly)."""
    c, q = np.asarray(cost, dtype=float), np.asarray(quality, dtype=float)
    mask = np.ones(len(c), dtype=bool)
    for i in range(len(c)):
        dominated = (c <= c[i]) & (q >= q[i]) & ((c < c[i]) | (q > q[i]))
        mask[i] = not dominated.any()
    return mask


def compare_points(steps: pd.DataFrame, runs: Sequence[Run], summaries: Mapping[str, RunSummary],
                   intervals: Mapping[str, PruneIntervals] | None = None) -> pd.DataFrame:
    """One row per model a run produced (each step's fine-tuned model, plus the distilled one), with its
    accuracy, parameters and latency: the points of the Pareto plots. With ``intervals`` (run id -> its
    intervals), each accuracy's 95 % interval as ``low``/``high`` (NaN when unknown)."""
    meta = {r.id: r for r in runs}
    rows = []
    for _, s in steps.iterrows():
        run = meta.get(s["run_id"])
        if run is None:
            continue
        rows.append({"run_id": s["run_id"], "strategy": run.strategy, "dataset": run.dataset,
                     "model": run.model, "stage": "teacher" if int(s["step"]) == 0 else "pruned",
                     "layers_removed": int(s["step"]), "n_layers": s.get("n_layers"),
                     "accuracy": s.get("test_accuracy"), "params": s.get("params_total"),
                     "latency_ms": s.get("latency_ms"), **_bounds(intervals, s["run_id"], int(s["step"]))})
    for run_id, summary in summaries.items():
        run = meta.get(run_id)
        if run is None or not isinstance(summary, PruneSummary) or not summary.after_kd_metrics:
            continue
        after = summary.after_kd_metrics
        removed = len(summary.removed_order)
        rows.append({"run_id": run_id, "strategy": run.strategy, "dataset": run.dataset,
                     "model": run.model, "stage": "after KD", "layers_removed": removed,
                     "n_layers": after.get("num_layers", after.get("n_layers")),
                     "accuracy": after.get("test_accuracy", after.get("accuracy")),
                     "params": after.get("params_total"), "latency_ms": after.get("latency_ms"),
                     **_bounds(intervals, run_id, None)})
    return pd.DataFrame(rows, columns=["run_id", "strategy", "dataset", "model", "stage", "layers_removed",
                                       "n_layers", "accuracy", "params", "latency_ms", "low", "high"])


def _bounds(intervals: Mapping[str, PruneIntervals] | None, run_id: str, step: int | None) -> dict[str, float]:
    """``low``/``high`` of a run's step (``None``: after distillation) from its intervals; NaN when unknown."""
    found = (intervals or {}).get(run_id)
    m = None if found is None else found.after_kd if step is None else found.steps.get(step)
    i = m.interval if m is not None else None
    return {"low": i.low if i else np.nan, "high": i.high if i else np.nan}


def kd_frame(runs: Sequence[Run], summaries: Mapping[str, RunSummary],
             intervals: Mapping[str, PruneIntervals] | None = None) -> pd.DataFrame:
    """Test accuracy before and after distillation per finished run (long format for grouped bars), with each
    one's interval (``low``, ``high``; NaN when unknown) from ``intervals`` (run id -> its intervals)."""
    rows = []
    for run in runs:
        summary = summaries.get(run.id)
        if summary is None:
            continue
        before, after = summary.before_kd_accuracy, summary.after_kd_accuracy
        if before is None or after is None:
            continue
        found = (intervals or {}).get(run.id)
        last = found.steps.get(found.final_step) if found is not None and found.final_step is not None else None
        for when, value, m in (("before KD", before, last), ("after KD", after, found.after_kd if found else None)):
            i = m.interval if m is not None else None
            rows.append({"run_id": run.id, "strategy": run.strategy, "dataset": run.dataset,
                         "when": when, "accuracy": value, "low": i.low if i else np.nan,
                         "high": i.high if i else np.nan})
    return pd.DataFrame(rows, columns=["run_id", "strategy", "dataset", "when", "accuracy", "low", "high"])


@dataclass(frozen=True)
class ShapRows:
    """SHAP values of a fusion ranker gathered over a run's steps: one row per (step, candidate layer)."""

    values: np.ndarray
    data: np.ndarray
    base_values: np.ndarray
    feature_names: list[str]
    steps: list[int]
    layers: list[int]
    chosen: list[bool]


def shap_rows(choices: Mapping[int, FusionChoice | None]) -> ShapRows | None:
    """Concatenate the stored SHAP explanation of every step's fusion choice (``FusionChoice.explanation``)."""
    values, data, base, steps, layers, chosen = [], [], [], [], [], []
    names: list[str] | None = None
    for step in sorted(choices):
        choice = choices[step]
        shap = choice.explanation if choice is not None else None
        if not shap or not shap.get("values"):
            continue
        vals = np.asarray(shap["values"], dtype=float)
        if names is None:
            names = list(shap["feature_names"])
        if list(shap["feature_names"]) != names:
            continue  # a ranker with other features (e.g. depth feature on) cannot share one plot
        row_layers = shap.get("original_layer") or shap.get("row_ids") or list(range(len(vals)))
        values.append(vals)
        data.append(np.asarray(shap["data"], dtype=float))
        base += [float(shap["base_value"])] * len(vals)
        steps += [int(step)] * len(vals)
        layers += [int(x) for x in row_layers]
        chosen += [int(x) == choice.chosen_layer for x in row_layers]
    if not values or names is None:
        return None
    return ShapRows(values=np.vstack(values), data=np.vstack(data), base_values=np.asarray(base),
                    feature_names=names, steps=steps, layers=layers, chosen=chosen)


def protocol_text(choice: FusionChoice | None) -> tuple[str, str]:
    """(protocol name, a sentence) of a step's fusion choice; a dash for a strategy without a ranker."""
    if choice is None:
        return "-", "This strategy does not train a ranker."
    return choice.protocol.name, choice.protocol.description
