"""How good a fusion ranker's picks were, read from what its runs stored per step.

Each pruning step of a fusion run stores ``ranker_spearman`` (the Spearman correlation of the ranker's scores with
the oracle's measured accuracies over the step's candidate layers) and ``ranker_top1`` (whether the removed layer
was among the oracle's best), measured by :func:`core.fusion.protocol.ranker_quality`. Step 0 is the unpruned
teacher and has neither. This module sums them up per run and per (strategy, dataset).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

QUALITY_COLUMNS = ("ranker_spearman", "ranker_top1")


@dataclass(frozen=True)
class RunSteps:
    """One run's stored step table with the run's identity."""

    run_id: str
    strategy: str
    dataset: str
    steps: pd.DataFrame


@dataclass(frozen=True)
class RankerQuality:
    """One run's ranker quality over its pruning steps (``None`` when no step measured it)."""

    mean_spearman: float | None
    top1_rate: float | None
    steps: int


def quality_rows(runs: Iterable[RunSteps]) -> pd.DataFrame:
    """The pruning steps (step > 0) of every run that stored ``ranker_spearman``, tagged with ``run_id``,
    ``strategy`` and ``dataset``; an empty frame when none did."""
    frames = [r.steps[r.steps["step"] > 0].assign(run_id=r.run_id, strategy=r.strategy, dataset=r.dataset)
              for r in runs if not r.steps.empty and "ranker_spearman" in r.steps]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _mean_spearman(values: pd.Series) -> float:
    return float(pd.to_numeric(values, errors="coerce").mean())


def _top1_rate(values: pd.Series) -> float:
    return float(values.dropna().astype(float).mean())


def run_quality(rows: pd.DataFrame) -> RankerQuality:
    """Mean Spearman and top-1 hit rate over one run's rows of :func:`quality_rows`."""
    if rows.empty:
        return RankerQuality(None, None, 0)
    rho = pd.to_numeric(rows["ranker_spearman"], errors="coerce")
    hits = rows["ranker_top1"].dropna() if "ranker_top1" in rows else pd.Series(dtype=float)
    return RankerQuality(mean_spearman=float(rho.mean()) if rho.notna().any() else None,
                         top1_rate=_top1_rate(hits) if len(hits) else None, steps=len(rows))


def quality_by_strategy_and_dataset(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (strategy, dataset): ``mean_rho``, ``top1`` (hit rate) and ``steps`` over :func:`quality_rows`."""
    if rows.empty:
        return pd.DataFrame(columns=["strategy", "dataset", "mean_rho", "top1", "steps"])
    return rows.groupby(["strategy", "dataset"]).agg(
        mean_rho=("ranker_spearman", _mean_spearman), top1=("ranker_top1", _top1_rate),
        steps=("step", "count")).reset_index()
