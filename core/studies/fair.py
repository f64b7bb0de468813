"""Fair baselines for the paper check (issue 29): random as its expectation, and each single signal's direction
decided without the data it is scored on.

* **Random as an expectation.** A uniformly random removal's one-step regret is a random variable over the step's
  candidates; its expectation is exactly the mean regret over the candidates (:func:`expected_random`, and
  :func:`expected_random_held_out` for held-out halves), its spread the standard deviation over the candidates
  (``regret_sd``). One seeded draw (what ``rank_layers("random", seed)`` gives and what a run that removes a random
  layer actually does) is one sample of it: a table that scores one draw judges every strategy against a baseline
  that is luckier or unluckier than random is. :func:`draw_sd` is how far one seeded draw of a whole table's mean
  typically lands from the expectation.
* **Directions learned leave-one-dataset-out.** Each of the twelve signals prunes either its lowest or its highest
  value first. The registry fixes one (``SignalInfo.direction``, set in its first version before any measurement,
  with the reason in ``direction_reason``): the *a priori* rule. The paper check also learns it the way fusion
  learns: for the dataset being scored, on exactly the rows fusion may train on
  (:func:`core.fusion.choose_training_rows`, never a row of that dataset), the direction whose choices lose fewer
  accuracy points against each training step's best removal (mean over the training datasets of their mean over
  steps; a tie keeps the registry's). :func:`learned_directions` returns it per (model, dataset) with both
  directions' training regrets, so the page can show what picked it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NotRequired, TypedDict

import numpy as np
import pandas as pd

from core.fusion import choose_training_rows
from core.signals import SIGNAL_KEYS, get_info
from core.stats.datasets import sign_flip_test
from core.studies.regret import cluster_interval
from core.studies.regret import draw_sd as draw_sd  # re-exported: the random baseline's spread lives with it

ORACLE = "oracle_accuracy"
LOWEST, HIGHEST = "lowest", "highest"
DIRECTIONS = (LOWEST, HIGHEST)
#: how a single signal's direction was decided (column ``direction_rule`` of the one-step table)
LEARNED = "learned leave-one-dataset-out"
A_PRIORI = "a priori (registry; no other dataset to learn from)"


# ------------------------------------------------------------------------------------------------- random
def expected_random(acc: np.ndarray) -> dict[str, float]:
    """The exact expectation of a uniformly random removal scored on the same rows: mean regret over the
    candidates (accuracy points), its standard deviation over them, and the expected top-1 hit rate (the share of
    candidates at the best accuracy). ``acc``: each candidate's accuracy."""
    a = np.asarray(acc, dtype=float)
    regret = 100.0 * (a.max() - a)
    return {"regret_points": float(regret.mean()), "regret_sd": float(regret.std()),
            "top1": float(np.mean(a >= a.max() - 1e-12))}


def expected_random_held_out(correct: np.ndarray, halves: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """:func:`expected_random` on held-out halves: each candidate's regret on each half against that half's best,
    both halves averaged, then the mean (and standard deviation) over the candidates. ``correct``: the (candidates
    x examples) correctness matrix."""
    regret = np.zeros(correct.shape[0])
    top1 = np.zeros(correct.shape[0])
    for score_on in halves:
        acc = correct[:, score_on].mean(axis=1)
        regret += 100.0 * (acc.max() - acc) / len(halves)
        top1 += (acc >= acc.max() - 1e-12) / len(halves)
    return {"regret_points": float(regret.mean()), "regret_sd": float(regret.std()), "top1": float(top1.mean())}


# ---------------------------------------------------------------------------------------------- directions
def direction_scores(step: pd.DataFrame, key: str, direction: str) -> np.ndarray:
    """Higher = removed first, for signal ``key`` pruned from its ``direction`` end (rows in ``step``'s order).
    Ties go to the lower position first, as :func:`core.signals.rank_layers` does: with the registry's direction
    this is exactly the order the runs use."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    values = step[key].to_numpy(dtype=float)
    oriented = values if direction == LOWEST else -values
    layer = step["layer"].to_numpy()
    order = np.lexsort((layer, oriented))  # by value, then by position
    scores = np.empty(len(values))
    scores[order] = -np.arange(len(values), dtype=float)
    return scores


def step_regrets(rows: pd.DataFrame, keys: Iterable[str] = SIGNAL_KEYS) -> pd.DataFrame:
    """For every (dataset, run, step) of profile ``rows``: the regret (accuracy points, on the rows' own oracle) of
    pruning each signal's lowest and its highest value first; columns ``<key>__lowest``, ``<key>__highest``."""
    out = []
    for (dataset, run_id, step_no), step in rows.groupby(["dataset", "run_id", "step"], sort=True):
        step = step.sort_values("layer")
        acc = step[ORACLE].to_numpy(dtype=float)
        row: dict[str, object] = {"dataset": dataset, "run_id": run_id, "step": step_no}
        for key in keys:
            for direction in DIRECTIONS:
                chosen = int(np.argmax(direction_scores(step, key, direction)))
                row[f"{key}__{direction}"] = 100.0 * (acc.max() - acc[chosen])
        out.append(row)
    return pd.DataFrame(out)


@dataclass(frozen=True)
class DirectionChoice:
    """The direction one signal is scored with on one dataset, and what decided it: ``rule`` (:data:`LEARNED` or
    :data:`A_PRIORI`), the registry's direction, both directions' mean regret on the training rows (NaN when not
    learned) and the training datasets."""

    key: str
    direction: str
    rule: str
    registry: str
    train_lowest: float = float("nan")
    train_highest: float = float("nan")
    train_datasets: tuple[str, ...] = ()


def learn_direction(regrets: pd.DataFrame, key: str) -> DirectionChoice:
    """The direction of ``key`` with the lower mean regret over ``regrets`` (:func:`step_regrets` of the training
    rows: mean over datasets of each dataset's mean over steps); a tie keeps the registry's."""
    registry = get_info(key).direction
    if regrets.empty:
        return DirectionChoice(key, registry, A_PRIORI, registry)
    per = regrets.groupby("dataset")[[f"{key}__{LOWEST}", f"{key}__{HIGHEST}"]].mean().mean()
    low, high = float(per.iloc[0]), float(per.iloc[1])
    direction = registry if abs(low - high) < 1e-12 else (LOWEST if low < high else HIGHEST)
    return DirectionChoice(key, direction, LEARNED, registry, low, high,
                           tuple(sorted(str(d) for d in regrets["dataset"].unique())))


def learned_directions(bank: pd.DataFrame, fusion_profiles: pd.DataFrame,
                       keys: Iterable[str] = SIGNAL_KEYS) -> dict[tuple[str, str], dict[str, DirectionChoice]]:
    """Per (model, dataset) of ``bank``: each signal's :class:`DirectionChoice`, learned on the rows fusion may
    train on for that dataset (``fusion_profiles`` through :func:`core.fusion.choose_training_rows`: other datasets
    only, weak teachers left out). Where fusion would not train leave-one-dataset-out (one dataset profiled), the
    registry's direction is kept and the rule says so."""
    keys = tuple(keys)
    out: dict[tuple[str, str], dict[str, DirectionChoice]] = {}
    for (model, dataset), _ in bank.groupby(["model", "dataset"], sort=True):
        train, protocol = choose_training_rows(fusion_profiles, str(model), str(dataset), None, 0)
        lodo = protocol.name.startswith("leave_one_dataset_out")
        regrets = step_regrets(train, keys) if lodo and len(train) else pd.DataFrame()
        out[(str(model), str(dataset))] = {k: learn_direction(regrets, k) for k in keys}
    return out


def direction_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per (model, signal) of a one-step table: the registry's direction, what the rule picked on each dataset
    (``learned_lowest`` of ``datasets``), and the mean regret over datasets with its 95 % interval (bootstrap over
    datasets and steps) of the picked direction (``regret``), of always pruning the lowest value first
    (``regret_lowest``) and of always the highest (``regret_highest``); ``train_lowest``/``train_highest``: both
    directions' regret on the training rows, averaged over the held-out datasets."""
    if table.empty or "direction" not in table.columns:
        return pd.DataFrame()
    rows = []
    signals = table[table["direction"].notna()]
    for (model, key), t in signals.groupby(["model", "strategy"], sort=True):
        per = t.groupby("dataset").agg(direction=("direction", "first"), rule=("direction_rule", "first"))
        row: dict[str, object] = {"model": model, "strategy": key, "registry": get_info(str(key)).direction,
                                  "datasets": len(per), "seeds": int(t["seed"].nunique()),
                                  "learned_lowest": int((per["direction"] == LOWEST).sum()),
                                  "rule": ", ".join(sorted(set(per["rule"])))}
        for column, name in (("regret_points", "regret"), ("regret_lowest", "regret_lowest"),
                             ("regret_highest", "regret_highest")):
            ci = cluster_interval([g[column].to_numpy() for _, g in t.groupby("dataset")])
            row.update({name: ci.estimate, f"{name}_low": ci.low, f"{name}_high": ci.high})
        for column in ("train_regret_lowest", "train_regret_highest"):
            row[column.replace("regret_", "")] = float(t.groupby("dataset")[column].first().mean())
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.sort_values(["model", "regret"]).reset_index(drop=True) if len(out) else out


def direction_text(row: pd.Series | dict) -> str:
    """What picked a signal's direction, in words: "lowest on 8 of 8 datasets (registry: lowest)"."""
    n, low = int(row["datasets"]), int(row["learned_lowest"])
    picked = (f"lowest on all {n} datasets" if low == n else f"highest on all {n} datasets" if low == 0
              else f"lowest on {low}, highest on {n - low} of {n} datasets")
    return f"{picked} (registry, a priori: {row['registry']})"


class SelectedDifference(TypedDict):
    """The selected single signal's regret minus another strategy's (points; > 0: the pick loses more) over
    datasets, with the exact sign-flip test over the dataset means and how many of them are above 0."""

    estimate: float
    low: float
    high: float
    sign_flip_p: float
    datasets_above: int


class SelectedSingle(TypedDict):
    """"The best single signal" picked without the scored dataset (:func:`selected_single`): the pick per dataset,
    its mean regret with the 95 % interval over ``datasets``, and where measured its difference to RF fusion and to
    random (expected)."""

    picks: dict[str, str]
    regret: float
    low: float
    high: float
    datasets: int
    minus_rf: NotRequired[SelectedDifference]
    minus_random: NotRequired[SelectedDifference]


def selected_single(bank: pd.DataFrame, table: pd.DataFrame, fusion_profiles: pd.DataFrame | None = None
                    ) -> SelectedSingle | None:
    """"The best single signal", chosen without the scored dataset: for each dataset, the (signal, end) with the
    lowest mean regret on the rows fusion may train on for it, scored with that end's column of the one-step
    table (``regret_lowest``/``regret_highest``: held-out where the table is). Picking the best of twelve signals
    on the scored table itself is optimistic; this is what such a pick is worth on a dataset it never saw. Returns
    the picks, the mean regret with its 95 % interval (bootstrap over datasets, then steps) and, where RF fusion
    was scored, the paired difference to it with the exact sign-flip test over dataset means; None without a
    leave-one-dataset-out fold or when the table lacks the picked signal (it needs all twelve)."""
    fusion_profiles = bank if fusion_profiles is None else fusion_profiles
    picks: dict[str, str] = {}
    groups: list[np.ndarray] = []
    diffs: dict[str, list[np.ndarray]] = {"rf_fusion": [], "random": []}
    for (model, dataset), _ in bank.groupby(["model", "dataset"], sort=True):
        train, protocol = choose_training_rows(fusion_profiles, str(model), str(dataset), None, 0)
        if not protocol.name.startswith("leave_one_dataset_out") or not len(train):
            return None
        per = step_regrets(train).drop(columns=["run_id", "step"]).groupby("dataset").mean().mean()
        key, end = str(per.idxmin()).split("__")
        picks[str(dataset)] = f"{key} ({end} first)"
        mine = table[(table["dataset"] == dataset) & (table["strategy"] == key)].sort_values(["seed", "step"])
        if mine.empty or f"regret_{end}" not in mine.columns:
            return None
        groups.append(mine[f"regret_{end}"].to_numpy())
        for other, found in diffs.items():
            rows = table[(table["dataset"] == dataset) & (table["strategy"] == other)].sort_values(["seed", "step"])
            if len(rows) == len(mine):
                found.append(groups[-1] - rows["regret_points"].to_numpy())
    ci = cluster_interval(groups)
    out = SelectedSingle(picks=picks, regret=ci.estimate, low=ci.low, high=ci.high, datasets=len(groups))
    for other, found in diffs.items():  # this pick's regret minus RF's / random's: > 0, the pick loses more
        if len(found) == len(groups) and len(groups) > 1:
            d = cluster_interval(found)
            flip = sign_flip_test([x.mean() for x in found])
            minus = SelectedDifference(estimate=d.estimate, low=d.low, high=d.high, sign_flip_p=flip.p,
                                       datasets_above=flip.positive)
            if other == "rf_fusion":
                out["minus_rf"] = minus
            else:
                out["minus_random"] = minus
    return out
