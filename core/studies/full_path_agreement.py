"""Do the full-path study's rankings repeat? (issue 29 item 7, "which strategy leaves the best small model").

:mod:`core.studies.full_path_tests` asks whether the choice of layers matters *within* a tree (one dataset and seed,
one teacher) beyond test-row noise, and compares strategies pair by pair over datasets. This module asks the
question in between: **is the order of the strategies a property of the strategies, or does it change from tree to
tree?** A strategy that is truly better is ahead on most trees; if every tree ranks the strategies in its own order,
no strategy is better, however large the spread inside one tree.

From the accuracies in ``full_path.csv`` (one budget, the strategies measured in every tree; ranks 1 = most accurate,
ties averaged), per stage (after KD; before KD, after the last fine-tuning):

- ``datasets``: Kendall's coefficient of concordance W over the datasets, each dataset's accuracy the mean over its
  seeds (the project's unit: a dataset weighs the same whatever its seed count). W = 1: every dataset ranks the
  strategies in the same order; W = 0: no agreement. It is Friedman's chi-square (ties corrected) divided by
  m (k - 1) (m datasets, k strategies).
- ``trees``: the same over trees, each seed a block of its own (more blocks, but a dataset's seeds share its data,
  so they are not independent: read it beside the datasets row, not instead of it).
- ``seeds``: Spearman's rho between two seeds of the same dataset, averaged over the pairs of its seeds, then over
  datasets: how well one seed's order predicts another's (1: the same order, 0: none, < 0: reversed). Pairs where a
  seed scores every strategy the same are left out.

p-values are permutation tests of "no agreement": each block's ranks shuffled among the strategies (the exact null of
Friedman's test, also for few blocks, where its chi-square approximation is poor), one-sided (more agreement than
chance). These ranks carry the test rows' noise too: two strategies a few test rows apart are ordered by chance;
:mod:`core.studies.full_path_tests` measures that noise, this module the order's repeatability.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata, tiecorrect

from core.paths import atomic_write_text
from core.stats.datasets import permutation_p
from core.studies.full_path import default_cap

AGREEMENT_FILE = "full_path_agreement.csv"
STAGES = ("after_kd", "before_kd")
PERMUTATIONS = 5000
ALPHA = 0.05
#: fewer strategies than this measured in every tree: no ranking to speak of
MIN_STRATEGIES = 3


def accuracy_table(full: pd.DataFrame | None, model: str, cap: int | None, stage: str = "after_kd") -> pd.DataFrame:
    """Accuracy (0-1) per tree (rows: dataset, seed) and strategy (columns) at ``stage``, only the strategies
    measured in every tree of ``model`` at budget ``cap``; empty when fewer than :data:`MIN_STRATEGIES`."""
    if full is None or full.empty or stage not in full.columns:
        return pd.DataFrame()
    f = full[(full["model"] == model) & ((full["train_cap"] == cap) if cap is not None else True)]
    f = f.dropna(subset=[stage])
    if f.empty:
        return pd.DataFrame()
    table = f.pivot_table(index=["dataset", "seed"], columns="strategy", values=stage, aggfunc="mean")
    table = table.dropna(axis=1)  # a strategy missing in one tree cannot be ranked against the others there
    return table if table.shape[1] >= MIN_STRATEGIES else pd.DataFrame()


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks within each row (1 = highest value; ties get their average rank)."""
    return rankdata(-np.atleast_2d(values), axis=1)


def kendall_w(r: np.ndarray) -> float:
    """Kendall's W of a blocks x strategies matrix of within-block ranks, corrected for ties (Friedman's chi-square
    over m (k - 1)); NaN when every block ties every strategy."""
    m, k = r.shape
    return float(_w(r[None], _tie_correction(r))[0]) if m >= 1 and k >= 2 else float("nan")


def _tie_correction(r: np.ndarray) -> float:
    """Friedman's tie correction: 1 - sum(t^3 - t) / (m k (k^2 - 1)), the mean of each block's own correction."""
    return float(np.mean([tiecorrect(row) for row in r]))


def _w(r: np.ndarray, correction: float) -> np.ndarray:
    """W of each matrix in a stack (..., m, k); a block's shuffle keeps its ties, so ``correction`` is shared."""
    m, k = r.shape[-2:]
    if correction <= 0:
        return np.full(r.shape[0], np.nan)
    chi2 = (12.0 / (m * k * (k + 1)) * (r.sum(axis=-2) ** 2).sum(axis=-1) - 3.0 * m * (k + 1)) / correction
    return chi2 / (m * (k - 1))


def _seed_pairs(trees: list[tuple[str, int]], r: np.ndarray) -> dict[str, list[tuple[int, int]]]:
    """Per dataset, the pairs of its trees (row indices) that can be correlated (neither ties every strategy)."""
    out: dict[str, list[tuple[int, int]]] = {}
    for d in sorted({t[0] for t in trees}):
        rows = [i for i, t in enumerate(trees) if t[0] == d and np.ptp(r[i]) > 0]
        if len(rows) >= 2:
            out[d] = list(combinations(rows, 2))
    return out


def _mean_rho(r: np.ndarray, pairs: dict[str, list[tuple[int, int]]]) -> np.ndarray:
    """Mean over datasets of the mean Spearman rho over each dataset's seed pairs, for each matrix of a stack."""
    z = r - r.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):  # a tree that ties every strategy is in no pair
        z = z / np.linalg.norm(z, axis=-1, keepdims=True)
    per = [np.mean([(z[:, i] * z[:, j]).sum(axis=-1) for i, j in p], axis=0) for p in pairs.values()]
    return np.mean(per, axis=0)


def _shuffled(r: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` copies of ``r`` with each row's ranks shuffled among the strategies."""
    order = np.argsort(rng.random((n, *r.shape)), axis=-1)
    return np.take_along_axis(np.broadcast_to(r, (n, *r.shape)), order, axis=-1)


def _mean_ranks(r: np.ndarray, strategies: list[str]) -> str:
    means = r.mean(axis=0)
    return "; ".join(f"{strategies[j]} {means[j]:.2f}" for j in np.argsort(means, kind="stable"))


def agreement(full: pd.DataFrame | None, cap: int | None = None, *, permutations: int = PERMUTATIONS,
              seed: int = 0) -> pd.DataFrame:
    """One row per (model, stage, level) at budget ``cap`` (default: the largest in ``full``): the statistic
    (``kendall_w`` or ``spearman``), its permutation p and the 95 % point of its null, the blocks it stands on,
    and the mean rank of each strategy (``mean_ranks``: "key rank; ...", best first). Empty without 2 trees."""
    cap = cap if cap is not None else default_cap(full)
    rows: list[dict[str, Any]] = []
    models = sorted(set(full["model"])) if full is not None and not full.empty else []
    for model in models:
        for stage in STAGES:
            acc = accuracy_table(full, model, cap, stage)
            if len(acc) < 2:
                continue
            rows += _rows(acc, {"model": model, "train_cap": cap, "stage": stage}, permutations, seed)
    return pd.DataFrame(rows)


def _rows(acc: pd.DataFrame, base: dict[str, Any], permutations: int, seed: int) -> list[dict[str, Any]]:
    strategies = [str(s) for s in acc.columns]
    trees = [(str(d), int(s)) for d, s in acc.index]
    datasets = sorted({d for d, _ in trees})
    k = len(strategies)
    common = {**base, "strategies": k, "datasets": len(datasets), "trees": len(trees),
              "seeds": min(sum(t[0] == d for t in trees) for d in datasets),
              "seeds_max": max(sum(t[0] == d for t in trees) for d in datasets), "permutations": permutations}
    rng = np.random.default_rng(seed)
    out = []
    by_dataset = ranks(acc.groupby(level=0).mean().loc[datasets].to_numpy())
    by_tree = ranks(acc.to_numpy())
    for level, r in (("datasets", by_dataset), ("trees", by_tree)):
        correction = _tie_correction(r)
        if len(r) < 2 or correction <= 0:  # one block, or every block ties every strategy: no order to compare
            continue
        observed = float(_w(r[None], correction)[0])
        null = _w(_shuffled(r, rng, permutations), correction)
        out.append({**common, "level": level, "blocks": len(r), "statistic": "kendall_w", "estimate": observed,
                    "null_high": float(np.nanquantile(null, 0.95)), "p": permutation_p(observed, null),
                    "mean_ranks": _mean_ranks(r, strategies), "first": strategies[int(np.argmin(r.mean(axis=0)))],
                    "last": strategies[int(np.argmax(r.mean(axis=0)))]})
    pairs = _seed_pairs(trees, by_tree)
    if pairs:
        observed = float(_mean_rho(by_tree[None], pairs)[0])
        null = _mean_rho(_shuffled(by_tree, rng, permutations), pairs)
        per = {d: float(_mean_rho(by_tree[None], {d: p})[0]) for d, p in pairs.items()}
        out.append({**common, "level": "seeds", "blocks": sum(len(p) for p in pairs.values()),
                    "datasets": len(pairs), "statistic": "spearman", "estimate": observed,
                    "null_high": float(np.quantile(null, 0.95)), "p": permutation_p(observed, null),
                    "per_dataset": "; ".join(f"{d} {v:+.2f}" for d, v in per.items())})
    for row in out:
        row["verdict"] = "beyond noise" if row["p"] < ALPHA else "within noise"
    return out


# ------------------------------------------------------------------------------------------ in words
def agreement_sentence(frame: pd.DataFrame | None, model: str | None = None, stage: str = "after_kd",
                       name: Any = str, label: Any = str) -> str:
    """Whether the strategies' order repeats, in one paragraph (``name``: a strategy key's display name, ``label``
    a dataset's); "" when the frame holds nothing for ``model`` and ``stage``."""
    if frame is None or frame.empty:
        return ""
    f = frame[(frame["stage"] == stage) & ((frame["model"] == model) if model is not None else True)]
    rows = {str(r["level"]): r for r in f.to_dict("records")}
    d = rows.get("datasets") or rows.get("trees")
    if d is None:
        return ""
    where = "datasets (each its mean over seeds)" if d["level"] == "datasets" else "trees"
    text = (f"**Does the order repeat?** Over the {int(d['blocks'])} {where}, the {int(d['strategies'])} "
            f"strategies' ranks agree with Kendall's W = {d['estimate']:.2f} (1: the same order everywhere, 0: none; "
            f"shuffling each block's ranks gives up to {d['null_high']:.2f} in 95 % of {int(d['permutations']):,} "
            f"shuffles, p = {d['p']:.3f}): " + ("more agreement than chance gives" if d["verdict"] == "beyond noise"
                                                else "no more agreement than chance gives") + ". Mean rank (1 = most "
            "accurate): "
            + ", ".join(f"{name(k)} {v}" for k, v in (part.rsplit(" ", 1) for part in str(d["mean_ranks"]).split("; ")))
            + ".")
    t = rows.get("trees")
    if t is not None and d["level"] == "datasets":
        text += (f" Over the {int(t['blocks'])} trees (a dataset's seeds counted as blocks of their own, so not "
                 f"independent): W = {t['estimate']:.2f}, p = {t['p']:.3f}, {t['verdict']}.")
    s = rows.get("seeds")
    if s is not None:
        text += (f" From one seed to another of the same dataset the order correlates with Spearman's rho = "
                 f"{s['estimate']:+.2f} on average ({int(s['blocks'])} seed pair(s) of {int(s['datasets'])} "
                 f"dataset(s): {_per_dataset(str(s['per_dataset']), label)}; p = {s['p']:.3f}, {s['verdict']})"
                 + (": **the order one seed gives is not shown to carry over to another**." if s["verdict"] ==
                    "within noise" else f": the order carries over from seed to seed, {strength(s['estimate'])}."))
    return text


#: Cohen's conventional bands for a correlation (0.1 small, 0.3 medium, 0.5 large), read as words: (upper bound of
#: |rho|, the word, the band as said)
STRENGTH_BANDS = ((0.3, "weakly", "below 0.3"), (0.5, "moderately", "below 0.5"),
                  (float("inf"), "strongly", "of 0.5 or more"))


def strength(rho: float) -> str:
    """How strong a rank correlation is, in words (:data:`STRENGTH_BANDS`; our reading of Cohen's bands)."""
    word, band = next((w, b) for bound, w, b in STRENGTH_BANDS if abs(rho) < bound)
    return f"{word} (|rho| {band}: Cohen's bands for a correlation, our reading)"


def _per_dataset(text: str, label: Any) -> str:
    """"trec +0.29; sms-spam +0.24" with each dataset's display name: "TREC +0.29, SMS spam +0.24"."""
    return ", ".join(f"{label(d)} {v}" for d, v in (part.rsplit(" ", 1) for part in text.split("; ")))


def write_agreement(folder: Path, frame: pd.DataFrame | None) -> None:
    """``full_path_agreement.csv`` in ``folder``; without rows a stale file is removed."""
    path = Path(folder) / AGREEMENT_FILE
    if frame is not None and not frame.empty:
        atomic_write_text(path, frame.to_csv(index=False))
    elif path.is_file():
        path.unlink()
