"""The shipped reference results the lesson quotes, read from ``data/reference`` (never written into its text):
the oracle's reliability study, the one-step check on the profile bank (held-out halves) and the full-path study.

Every reader returns None when its file (or the rows asked for) is not there, so a chapter can say what is missing
instead of failing. Nothing here is computed again: the numbers are the files'.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.paths import PROJECT_ROOT
from core.stats import Interval

REFERENCE_DIR = PROJECT_ROOT / "data" / "reference"
RELIABILITY_CSV = "oracle_reliability.csv"
RELIABILITY_JSON = "oracle_reliability.json"
ONE_STEP = "one_step.csv"
ONE_STEP_OVERALL = "one_step_overall.csv"
FULL_PATH = "full_path.csv"
NOISE_FLOOR = "noise_floor"


def _csv(folder: Path | None, name: str) -> pd.DataFrame | None:
    path = (folder or REFERENCE_DIR) / name
    try:
        return pd.read_csv(path)
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Reliability:
    """The step-1 oracle's reliability at ``val_rows`` validation rows, the mean over ``datasets``: per score
    (accuracy, loss, kl), Spearman between two halves of the rows and between two seeds, and the regrets."""

    val_rows: int
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    repeats: int | None
    model: str
    table: pd.DataFrame  # index: score; columns spearman_halves, spearman_n, regret, spearman_seeds, regret_seeds
    #: per score: the dataset means' lowest and highest Spearman across seeds
    spread: pd.DataFrame

    def value(self, score: str, column: str) -> float:
        return float(self.table.loc[score, column])


def reliability(val_rows: int, folder: Path | None = None) -> Reliability | None:
    """The reliability study's figures at ``val_rows`` rows (the nearest size it measured), or None."""
    frame = _csv(folder, RELIABILITY_CSV)
    if frame is None or frame.empty or "spearman_seeds" not in frame:
        return None
    sizes = sorted(int(v) for v in frame["val_rows"].unique())
    size = min(sizes, key=lambda v: (abs(v - val_rows), v))
    rows = frame[frame["val_rows"] == size]
    columns = [c for c in ("spearman_halves", "spearman_n", "regret", "spearman_seeds", "regret_seeds") if c in rows]
    table = rows.groupby("score", sort=False)[columns].mean()
    spread = rows.groupby("score", sort=False)["spearman_seeds"].agg(["min", "max"])
    meta: dict = {}
    try:
        meta = json.loads(((folder or REFERENCE_DIR) / RELIABILITY_JSON).read_text())
    except (OSError, ValueError):
        pass
    runs = meta.get("runs") or []
    return Reliability(val_rows=size, datasets=tuple(str(d) for d in rows["dataset"].unique()),
                       seeds=tuple(int(s) for s in meta.get("seeds") or ()), repeats=meta.get("repeats"),
                       model=str(runs[0]["model"]) if runs else "", table=table, spread=spread)


def reliability_curve(folder: Path | None = None) -> pd.DataFrame | None:
    """Mean over datasets per (validation rows, score): the Spearman of two halves and of two seeds."""
    frame = _csv(folder, RELIABILITY_CSV)
    if frame is None or frame.empty:
        return None
    return frame.groupby(["val_rows", "score"], as_index=False)[["spearman_n", "spearman_seeds"]].mean()


@dataclass(frozen=True)
class Regret:
    """A strategy's one-step regret (points) on held-out halves of the bank, with its interval and what it rests on."""

    strategy: str
    interval: Interval
    datasets: int
    steps: int


def _overall(folder: Path | None, model: str) -> pd.DataFrame | None:
    frame = _csv(folder, ONE_STEP_OVERALL)
    if frame is None or frame.empty:
        return None
    return frame[frame["model"] == model]


def overall_regret(model: str, strategy: str, folder: Path | None = None) -> Regret | None:
    """``strategy``'s mean one-step regret over the bank's datasets (``noise_floor``: the oracle's own)."""
    frame = _overall(folder, model)
    if frame is None:
        return None
    row = frame[frame["strategy"] == strategy]
    if row.empty:
        return None
    r = row.iloc[0]
    return Regret(strategy, Interval(float(r["regret"]), float(r["low"]), float(r["high"]), method="bootstrap over "
                  "datasets", n=int(r["datasets"])), int(r["datasets"]), int(r["steps"]))


def best_single_signal(model: str, candidates: list[str], folder: Path | None = None) -> str | None:
    """Of ``candidates``, the strategy with the lowest overall one-step regret on the bank (None: none listed)."""
    frame = _overall(folder, model)
    if frame is None:
        return None
    listed = frame[frame["strategy"].isin(candidates)].sort_values("regret")
    return str(listed.iloc[0]["strategy"]) if not listed.empty else None


@dataclass(frozen=True)
class DuelInBank:
    """Two strategies' one-step regrets per (dataset, seed, step) of the bank's held-out check: how often each
    picked the cheaper removal, overall and on one dataset."""

    a: str
    b: str
    dataset: str
    #: on ``dataset``: steps where a had the lower regret, b had, and ties; and the seeds they span
    here: tuple[int, int, int]
    seeds_here: int
    #: over every dataset of the bank
    everywhere: tuple[int, int, int]
    datasets: int


def duel_in_bank(model: str, dataset: str, a: str, b: str, folder: Path | None = None) -> DuelInBank | None:
    frame = _csv(folder, ONE_STEP)
    if frame is None or frame.empty:
        return None
    keys = ["dataset", "seed", "step"]
    mine = frame[frame["model"] == model]
    wide = mine[mine["strategy"].isin([a, b])].pivot_table(index=keys, columns="strategy", values="regret_points")
    if a not in wide or b not in wide:
        return None
    wide = wide.dropna()

    def counts(part: pd.DataFrame) -> tuple[int, int, int]:
        d = part[a] - part[b]
        return int((d < -1e-9).sum()), int((d > 1e-9).sum()), int((d.abs() <= 1e-9).sum())
    here = wide[wide.index.get_level_values("dataset") == dataset]
    return DuelInBank(a=a, b=b, dataset=dataset, here=counts(here),
                      seeds_here=len(set(here.index.get_level_values("seed"))), everywhere=counts(wide),
                      datasets=len(set(wide.index.get_level_values("dataset"))))


@dataclass(frozen=True)
class KdInStudy:
    """What distillation won back (after KD minus before, points) in the full-path study, one value per run."""

    strategy: str
    gains: pd.DataFrame  # dataset, seed, gain_points

    @property
    def mean(self) -> float:
        return float(self.gains["gain_points"].mean())


def kd_in_study(model: str, strategy: str, folder: Path | None = None) -> KdInStudy | None:
    frame = _csv(folder, FULL_PATH)
    if frame is None or frame.empty or not {"before_kd", "after_kd"} <= set(frame.columns):
        return None
    mine = frame[(frame["model"] == model) & (frame["strategy"] == strategy)].dropna(subset=["before_kd", "after_kd"])
    if mine.empty:
        return None
    gains = pd.DataFrame({"dataset": mine["dataset"], "seed": mine["seed"],
                          "gain_points": 100 * (mine["after_kd"] - mine["before_kd"])}).reset_index(drop=True)
    return KdInStudy(strategy, gains)
