"""Aggregation over seeds and over datasets.

- :func:`over_seeds`: the mean of a score over seeds, its spread (sample standard deviation, min and max) and a
  Student-t interval of the mean (the seeds are few, so the t quantile, not the normal one; with 2 seeds the
  interval is honestly wide).
- :func:`over_datasets`: the mean of a per-dataset value (e.g. a regret or a paired difference) with a bootstrap
  interval over datasets.
- :func:`win_count`: how many per-dataset differences are wins or losses *beyond noise* (their interval excludes
  0) and how many are ties, with an exact sign test of wins against losses; this is what "first on k of n"
  claims count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from core.stats.intervals import LEVEL, RESAMPLES, Interval, as_vector, beyond_noise, bootstrap_interval, check_level


@dataclass(frozen=True)
class SeedSummary:
    """A score over seeds: ``mean``, sample standard deviation ``sd`` (0 for one seed), ``low``/``high`` the
    smallest and largest seed's value, and the t ``interval`` of the mean (``None`` for one seed: one value
    carries no estimate of its own noise)."""

    mean: float
    sd: float
    minimum: float
    maximum: float
    n: int
    interval: Interval | None

    def __str__(self) -> str:
        if self.interval is None:
            return f"{self.mean:.3f} (1 seed)"
        return f"{self.interval} (sd {self.sd:.3f}, {self.n} seeds)"


def over_seeds(values: Sequence[float] | np.ndarray, level: float = LEVEL) -> SeedSummary:
    """Mean, spread and Student-t interval (``n - 1`` degrees of freedom) of one score measured at several
    seeds. Raises ``ValueError`` for no values."""
    x = as_vector("values", values)
    check_level(level)
    n, mean = int(x.size), float(x.mean())
    if n == 1:
        return SeedSummary(mean, 0.0, mean, mean, 1, None)
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return SeedSummary(mean, sd, float(x.min()), float(x.max()), n,
                       Interval(mean, mean - half, mean + half, level, "t over seeds", n))


def over_datasets(values: Sequence[float] | np.ndarray, level: float = LEVEL, *, n_resamples: int = RESAMPLES,
                  seed: int = 0) -> Interval:
    """Mean of one value per dataset with a bootstrap interval over datasets (seeded). With a single dataset
    the interval is the point itself: there is nothing to resample."""
    x = as_vector("values", values)
    check_level(level)
    mean = float(x.mean())
    if x.size == 1 or np.all(x == x[0]):
        return Interval(mean, mean, mean, level, "bootstrap over datasets", int(x.size))
    low, high = bootstrap_interval((x,), lambda v, axis=-1: np.mean(v, axis=axis), level, n_resamples, seed)
    return Interval(mean, min(low, mean), max(high, mean), level, "bootstrap over datasets", int(x.size))


@dataclass(frozen=True)
class WinCount:
    """Per-dataset differences ``A - B`` sorted into ``wins`` (interval above 0), ``losses`` (below 0) and
    ``ties`` (containing 0); ``sign_p`` is the exact two-sided sign test of wins against losses (ties left
    out; 1.0 when there are none)."""

    wins: int
    losses: int
    ties: int
    sign_p: float

    @property
    def n(self) -> int:
        return self.wins + self.losses + self.ties

    def __str__(self) -> str:
        return (f"ahead beyond noise on {self.wins} of {self.n}, behind on {self.losses}, "
                f"{self.ties} within noise")


def win_count(differences: Iterable[Interval]) -> WinCount:
    """Count the wins, losses and ties (within noise) of a list of difference intervals, one per dataset."""
    items = list(differences)
    if not items:
        raise ValueError("win_count needs at least one difference interval")
    wins = sum(1 for i in items if beyond_noise(i) and i.estimate > 0)
    losses = sum(1 for i in items if beyond_noise(i) and i.estimate < 0)
    ties = len(items) - wins - losses
    p = float(stats.binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else 1.0
    return WinCount(wins, losses, ties, p)
