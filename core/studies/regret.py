"""The one-step table's regrets with their intervals: how it was scored (held-out halves or the same rows), the
mean regret per strategy with a bootstrap interval over steps and datasets, and the paired difference between two
strategies (or a strategy and the noise floor). What the paper check's claims are built from
(:mod:`core.studies.paper`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.stats import Interval, paired_mean_difference
from core.stats.intervals import bootstrap_interval

#: the noise-floor row's strategy key: the oracle of the other half (pick on A, score on B, and back)
NOISE_FLOOR = "noise_floor"
#: how a one-step table was scored (column ``scoring``)
HELD_OUT = "held-out halves"
SAME_ROWS = "same rows (optimistic)"
SAME_ROWS_TEXT = "picked and scored on the same rows (optimistic)"
#: strategies that never take part in the per-dataset ranking (reference rows)
REFERENCE_ROWS = ("oracle", NOISE_FLOOR)
#: bootstrap resamples of the paper check's intervals (steps are few: 4,000 as core.stats)
_RESAMPLES = 4000


def held_out(table: pd.DataFrame) -> bool:
    """Whether a one-step table was scored on held-out halves (every non-oracle row)."""
    if "scoring" not in table.columns:
        return False
    rest = table[table["strategy"] != "oracle"]
    return bool(len(rest)) and bool((rest["scoring"] == HELD_OUT).all())


def scoring_text(table: pd.DataFrame) -> str:
    """One phrase for how a one-step table's regrets were scored."""
    if held_out(table):
        return ("scored on held-out halves: each choice scored on validation examples the noise-floor oracle did "
                "not use to pick, against the best removal on those examples, both ways averaged")
    if "scoring" in table.columns and (table["scoring"] == HELD_OUT).any():
        n = int(table.loc[table["scoring"] == HELD_OUT, ["dataset", "seed", "step"]].drop_duplicates().shape[0])
        return (f"mixed: {n} step(s) on held-out halves, the rest {SAME_ROWS_TEXT}; remake the bank so every "
                "path stores its oracle outcomes")
    return SAME_ROWS_TEXT


# ------------------------------------------------------------------------------------------ intervals
def _mean_interval(values: np.ndarray, seed: int = 0) -> Interval:
    """The mean of per-step values with a 95 % BCa bootstrap interval over steps (seeded)."""
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if x.size < 2 or np.all(x == x[0]):
        return Interval(mean, mean, mean, method="bootstrap over steps", n=int(x.size))
    low, high = bootstrap_interval((x,), lambda v, axis=-1: np.mean(v, axis=axis), 0.95, _RESAMPLES, seed)
    return Interval(mean, min(low, mean), max(high, mean), method="bootstrap over steps", n=int(x.size))


def cluster_interval(groups: list[np.ndarray], seed: int = 0, level: float = 0.95) -> Interval:
    """The mean over groups (datasets) of each group's mean over its units (steps), with a two-level percentile
    bootstrap: datasets resampled with replacement, then steps within each drawn dataset. With one dataset it is
    a bootstrap over its steps."""
    groups = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not groups:
        raise ValueError("cluster_interval: no values")
    estimate = float(np.mean([g.mean() for g in groups]))
    if all(np.all(g == groups[0][0]) for g in groups):
        return Interval(estimate, estimate, estimate, level, "bootstrap over datasets and steps", len(groups))
    rng = np.random.default_rng(seed)
    k = len(groups)
    which = rng.integers(0, k, size=(_RESAMPLES, k))
    means = np.empty((_RESAMPLES, k))
    for j, g in enumerate(groups):  # each dataset's resampled step-means, drawn once per resample
        means[:, j] = g[rng.integers(0, g.size, size=(_RESAMPLES, g.size))].mean(axis=1)
    draws = np.take_along_axis(means, which, axis=1).mean(axis=1)
    alpha = (1 - level) / 2
    low, high = (float(v) for v in np.quantile(draws, [alpha, 1 - alpha]))
    return Interval(estimate, min(low, estimate), max(high, estimate), level, "bootstrap over datasets and steps",
                    k)


def _per_step(table: pd.DataFrame, strategy: str) -> pd.Series:
    """One strategy's regret per (model, dataset, seed, step)."""
    t = table[table["strategy"] == strategy]
    return t.set_index(["model", "dataset", "seed", "step"])["regret_points"]


def paired_regret(table: pd.DataFrame, a: str, b: str, dataset: str | None = None, seed: int = 0) -> Interval | None:
    """Regret of ``b`` minus regret of ``a`` on the same steps (> 0: ``a`` loses fewer points), with a paired
    bootstrap interval over the steps (of ``dataset``, else over datasets and steps); None when they share no
    step."""
    t = table if dataset is None else table[table["dataset"] == dataset]
    both = pd.concat([_per_step(t, a).rename("a"), _per_step(t, b).rename("b")], axis=1, join="inner")
    if both.empty:
        return None
    if dataset is not None:
        return paired_mean_difference(both["b"].to_numpy(), both["a"].to_numpy(), n_resamples=_RESAMPLES,
                                      seed=seed)
    d = (both["b"] - both["a"])
    return cluster_interval([g.to_numpy() for _, g in d.groupby(level="dataset")], seed=seed)


def summarise_one_step(table: pd.DataFrame) -> pd.DataFrame:
    """Per (model, dataset, strategy): mean over steps within each seed, then mean, min and max over seeds, the
    number of seeds and steps, and the rank by mean regret among the strategies (1 = best; the oracle and the
    noise floor are reference rows, not ranked). ``regret_low``/``regret_high``: a 95 % bootstrap interval of the
    mean regret over the dataset's steps (all seeds); ``vs_floor`` (with ``vs_floor_low``/``_high``): the regret
    minus the noise floor's on the same steps, paired (held-out tables only); ``scoring``: how it was scored."""
    per_seed = table.groupby(["model", "dataset", "strategy", "seed"]).agg(
        regret=("regret_points", "mean"), top1=("top1", "mean"), spearman=("spearman", "mean"),
        steps=("step", "nunique")).reset_index()
    g = per_seed.groupby(["model", "dataset", "strategy"])
    out = g.agg(regret=("regret", "mean"), regret_min=("regret", "min"), regret_max=("regret", "max"),
                top1=("top1", "mean"), top1_min=("top1", "min"), top1_max=("top1", "max"),
                spearman=("spearman", "mean"), seeds=("seed", "nunique"), steps=("steps", "sum")).reset_index()
    lows, highs, vs, vs_low, vs_high = [], [], [], [], []
    floor = held_out(table)
    for r in out.itertuples():
        mine = table[(table["model"] == r.model) & (table["dataset"] == r.dataset) & (table["strategy"] == r.strategy)]
        ci = _mean_interval(mine["regret_points"].to_numpy())
        lows.append(ci.low)
        highs.append(ci.high)
        d = (paired_regret(table[table["model"] == r.model], NOISE_FLOOR, r.strategy, r.dataset)
             if floor and r.strategy not in REFERENCE_ROWS else None)
        vs.append(d.estimate if d is not None else np.nan)
        vs_low.append(d.low if d is not None else np.nan)
        vs_high.append(d.high if d is not None else np.nan)
    out = out.assign(regret_low=lows, regret_high=highs, vs_floor=vs, vs_floor_low=vs_low, vs_floor_high=vs_high,
                     scoring=HELD_OUT if floor else SAME_ROWS)
    ranked = out[~out["strategy"].isin(REFERENCE_ROWS)].copy()
    ranked["rank"] = ranked.groupby(["model", "dataset"])["regret"].rank(method="min")
    # ties on regret are broken by top-1 then Spearman, so the rank is the one a reader would give
    ranked = ranked.sort_values(["model", "dataset", "regret", "top1", "spearman"], ascending=[True, True, True,
                                                                                              False, False])
    ranked["position"] = ranked.groupby(["model", "dataset"]).cumcount() + 1
    out = out.merge(ranked[["model", "dataset", "strategy", "rank", "position"]], how="left",
                    on=["model", "dataset", "strategy"])
    return out.sort_values(["model", "dataset", "position"]).reset_index(drop=True)


def regret_over_datasets(table: pd.DataFrame) -> pd.DataFrame:
    """Per (model, strategy): the mean over datasets of the mean regret over each dataset's steps, with a 95 %
    bootstrap interval over datasets and steps (:func:`cluster_interval`); for held-out tables also the paired
    difference to the noise floor (``vs_floor``, > 0: above the floor) and the scoring; for the random baseline
    (scored as its expectation) ``draw_sd``, the standard deviation of one seeded draw's mean around it. The noise
    floor is a row of its own (strategy ``noise_floor``); the oracle row is left out (it is not scored)."""
    rows: list[dict[str, object]] = []
    if table.empty or "strategy" not in table.columns:  # a bank without profiles: nothing to summarise
        return pd.DataFrame(rows)
    floor = held_out(table)
    for (model, strategy), t in table[table["strategy"] != "oracle"].groupby(["model", "strategy"], sort=True):
        groups = [g["regret_points"].to_numpy() for _, g in t.groupby("dataset")]
        ci = cluster_interval(groups)
        d = paired_regret(table[table["model"] == model], NOISE_FLOOR, strategy) \
            if floor and strategy != NOISE_FLOOR else None
        rows.append({"model": model, "strategy": strategy, "regret": ci.estimate, "low": ci.low, "high": ci.high,
                     "datasets": len(groups), "steps": int(len(t)), "seeds": int(t["seed"].nunique()),
                     # the random baseline is its expectation; how far one seeded draw of this mean would land
                     "draw_sd": draw_sd(t) if "regret_sd" in t.columns and t["regret_sd"].notna().all()
                     else np.nan,
                     "vs_floor": d.estimate if d is not None else np.nan,
                     "vs_floor_low": d.low if d is not None else np.nan,
                     "vs_floor_high": d.high if d is not None else np.nan,
                     "scoring": HELD_OUT if floor else SAME_ROWS})
    out = pd.DataFrame(rows)
    return out.sort_values(["model", "regret"]).reset_index(drop=True) if len(out) else out


def draw_sd(rows: pd.DataFrame) -> float:
    """The standard deviation of one seeded random draw's mean regret around the expectation, for one-step rows of
    the expected random baseline (columns ``dataset``, ``regret_sd``): the mean over datasets of each dataset's mean
    over its steps, the draws independent across steps, so its variance is the sum over datasets and steps of
    ``regret_sd**2 / (datasets**2 * steps_of_that_dataset**2)``."""
    if rows.empty or "regret_sd" not in rows.columns:
        return float("nan")
    per = rows.groupby("dataset")["regret_sd"].agg(lambda s: float(np.sum(np.square(s))) / len(s) ** 2)
    return float(np.sqrt(per.sum()) / len(per))
