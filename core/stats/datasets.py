"""Tests at the level of datasets: is a difference between two strategies seen across datasets, and how many
datasets and seeds would show it.

- :func:`sign_flip_test`: the exact two-sided sign-flip (permutation) test of one mean difference per dataset
  (``scipy.stats.permutation_test`` with one sample: under the null each dataset's difference is as likely
  positive as negative; with up to :data:`EXACT_UP_TO` datasets every one of the ``2**n`` sign patterns is
  enumerated, so the p-value is exact). With ``n`` datasets the smallest possible p-value is ``2 / 2**n``
  (0.0078 for 8): a test over datasets cannot be more certain than its number of datasets allows.
- :func:`variance_components`: the between-dataset and between-seed variances of a difference measured per
  (dataset, seed), by one-way random-effects ANOVA (method of moments: ``sigma_seed^2 = MS_within``,
  ``sigma_dataset^2 = max(0, (MS_between - MS_within) / n0)``).
- :func:`datasets_needed`: a planning estimate, not a measurement: the fewest datasets at which a two-sided
  one-sample t-test over dataset means (level 5 %), each dataset measured at ``seeds`` seeds, would separate a
  true difference equal to the observed one with probability ``power`` (80 %), taking the observed variances
  as the true ones (power of the noncentral t, ``scipy.stats.nct``). The t-test over dataset means is the
  large-sample counterpart of the sign-flip test; the count starts where the sign-flip test can reach the level at
  all (6 datasets for 5 %: ``2 / 2**5 > 0.05``). Treating the observed difference and variances as true makes
  this optimistic for a difference that was itself a lucky draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from core.stats.intervals import as_vector

#: enumerate every sign pattern up to this many datasets (2**16 = 65,536 patterns); a seeded Monte Carlo beyond
EXACT_UP_TO = 16
#: the power a "would be separated at" statement asks for, and the test's level
POWER = 0.8
ALPHA = 0.05
#: no statement beyond this many datasets ("more than ...")
MAX_DATASETS = 1000


@dataclass(frozen=True)
class SignFlip:
    """The two-sided sign-flip test of the mean of per-dataset differences: ``p``, the number of datasets ``n``,
    how many differences are positive/negative, whether every pattern was enumerated (``exact``) and the
    smallest p-value ``n`` datasets allow (``min_p``)."""

    mean: float
    p: float
    n: int
    positive: int
    negative: int
    exact: bool

    @property
    def min_p(self) -> float:
        return min(1.0, 2.0 / 2 ** self.n) if self.n else 1.0

    def __str__(self) -> str:
        kind = "exact" if self.exact else "Monte Carlo"
        return (f"sign-flip p = {self.p:.3g} ({kind}, {self.n} datasets: {self.positive} above 0, "
                f"{self.negative} below)")


def permutation_p(observed: float, null: Sequence[float] | np.ndarray) -> float:
    """One-sided permutation p-value: (1 + the null draws at or above ``observed``) / (1 + the draws), counting the
    observed arrangement as one of them so p is never 0; non-finite draws are left out."""
    draws = np.asarray(null, dtype=float)
    draws = draws[np.isfinite(draws)]
    return float((1 + np.sum(draws >= observed - 1e-12)) / (draws.size + 1))


def sign_flip_test(differences: Sequence[float] | np.ndarray, *, seed: int = 0) -> SignFlip:
    """Exact (up to :data:`EXACT_UP_TO` datasets) two-sided sign-flip test that the per-dataset ``differences``
    are centred on 0, statistic: their mean. All-zero differences give p = 1."""
    x = as_vector("differences", differences)
    n = int(x.size)
    pos, neg = int((x > 0).sum()), int((x < 0).sum())
    if np.all(x == 0):
        return SignFlip(0.0, 1.0, n, pos, neg, True)
    if n < 2:  # one dataset: its two sign patterns have the same |mean|, so p = 1 (scipy needs two values)
        return SignFlip(float(x.mean()), 1.0, n, pos, neg, True)
    exact = n <= EXACT_UP_TO
    res = stats.permutation_test((x,), lambda v, axis=-1: np.mean(v, axis=axis), permutation_type="samples",
                                 vectorized=True, n_resamples=np.inf if exact else 100_000,
                                 alternative="two-sided", rng=np.random.default_rng(seed))
    return SignFlip(float(x.mean()), float(min(1.0, res.pvalue)), n, pos, neg, exact)


def seed_words(low: int, high: int | None = None) -> str:
    """"1 seed", "3 seeds", or "1-2 seeds" when ``high`` (the largest count per dataset) exceeds ``low``."""
    if high is not None and high > low:
        return f"{low}-{high} seeds"
    return f"{low} seed{'s' if low > 1 else ''}"


@dataclass(frozen=True)
class Components:
    """A difference measured per (dataset, seed): its grand ``mean`` (of dataset means), the between-dataset
    variance ``dataset_var`` and the between-seed (within-dataset) variance ``seed_var``, from ``datasets`` and
    ``seeds`` (per dataset: the smallest count; ``seeds_max`` the largest, where the counts differ)."""

    mean: float
    dataset_var: float
    seed_var: float
    datasets: int
    seeds: int
    seeds_max: int | None = None

    @property
    def seeds_text(self) -> str:
        """"2 seeds", or "1-2 seeds" while some datasets have fewer seeds than others."""
        return seed_words(self.seeds, self.seeds_max)

    def se(self, datasets: int, seeds: int) -> float:
        """The standard error of the mean over ``datasets`` dataset means, each over ``seeds`` seeds."""
        return math.sqrt((self.dataset_var + self.seed_var / seeds) / datasets)


def variance_components(values: Sequence[Sequence[float]]) -> Components:
    """One-way random-effects ANOVA of per-(dataset, seed) values: ``values[d]`` holds dataset ``d``'s value at
    each of its seeds. Method of moments with ``n0`` (the ANOVA's effective seeds per dataset for unequal counts);
    the seed variance needs a dataset with two seeds or more (else it is 0 and the dataset variance carries all)."""
    groups = [np.asarray(v, dtype=float) for v in values if len(v)]
    if not groups:
        raise ValueError("variance_components: no values")
    k = len(groups)
    sizes = np.array([g.size for g in groups], dtype=float)
    means = np.array([g.mean() for g in groups])
    total = sizes.sum()
    grand = float(np.sum(sizes * means) / total)
    within_df = total - k
    ms_within = float(sum(((g - g.mean()) ** 2).sum() for g in groups) / within_df) if within_df > 0 else 0.0
    if k < 2:
        return Components(float(means.mean()), 0.0, ms_within, k, int(sizes.min()), int(sizes.max()))
    ms_between = float(np.sum(sizes * (means - grand) ** 2) / (k - 1))
    n0 = (total - np.sum(sizes ** 2) / total) / (k - 1)
    dataset_var = max(0.0, float((ms_between - ms_within) / n0))
    return Components(float(means.mean()), dataset_var, ms_within, k, int(sizes.min()), int(sizes.max()))


def t_power(effect: float, se: float, datasets: int, alpha: float = ALPHA) -> float:
    """Power of a two-sided one-sample t-test over ``datasets`` dataset means when the true mean is ``effect``
    and the standard error of the mean is ``se`` (noncentral t with ``datasets - 1`` degrees of freedom)."""
    if datasets < 2:
        return 0.0
    if se <= 0:  # no noise at all: any non-zero difference is seen
        return 1.0 if effect != 0 else 0.0
    df = datasets - 1
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    nc = abs(effect) / se
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def datasets_needed(c: Components, seeds: int, power: float = POWER, alpha: float = ALPHA) -> int | None:
    """The fewest datasets (each at ``seeds`` seeds) at which the observed mean difference would be separated
    with probability ``power`` (see the module doc); None when even :data:`MAX_DATASETS` would not do (or the
    difference is 0)."""
    if c.mean == 0:
        return None
    first = next(n for n in range(1, 64) if 2.0 / 2 ** n <= alpha)  # where a sign-flip test can reach alpha
    for d in range(max(2, first), MAX_DATASETS + 1):
        if t_power(c.mean, c.se(d, seeds), d, alpha) >= power:
            return d
    return None


@dataclass(frozen=True)
class PowerStatement:
    """How many datasets x seeds the observed difference would need: ``needed`` maps a seed count to the
    number of datasets (None: more than :data:`MAX_DATASETS`), from the observed :class:`Components`."""

    components: Components
    needed: dict[int, int | None]

    def text(self, unit: str = "points") -> str:
        c = self.components
        found = [f"{d} datasets × {seed_words(s)}" for s, d in self.needed.items() if d is not None]
        never = [str(s) for s, d in self.needed.items() if d is None]
        if found:
            head = "would be separated at about " + ", or ".join(found)
            if never:
                head += f" (more than {MAX_DATASETS} datasets at {' or '.join(never)} seeds)"
        else:
            head = (f"would not be separated by any practical study (more than {MAX_DATASETS} datasets at "
                    f"{', '.join(never)} seeds)")
        dataset_sd = (f"{math.sqrt(c.dataset_var):.2f}" if c.dataset_var > 0 else
                      "0 (its estimate is not above the seed noise, so it is taken as 0)")
        return (f"{head} (80 % power, 5 % two-sided t-test over dataset means): an estimate taking the observed "
                f"difference ({c.mean:+.2f} {unit}) and variances (between datasets sd {dataset_sd}, between seeds "
                f"sd {math.sqrt(c.seed_var):.2f}; one-way random-effects ANOVA of {c.datasets} datasets × "
                f"{c.seeds_text}) as the true ones")


def short_power(needed: dict[int, int | None]) -> str:
    """:meth:`PowerStatement.text` in a few words: "would be separated at about 17 datasets × 2 seeds (13 × 3,
    10 × 5; a power estimate)"."""
    found = [(s, d) for s, d in needed.items() if d is not None]
    if not found:
        return f"would need more than {MAX_DATASETS} datasets to be separated (a power estimate)"
    (s0, d0), rest = found[0], found[1:]
    more = ", ".join(f"{d} × {seed_words(s)}" for s, d in rest)
    return (f"would be separated at about {d0} datasets × {seed_words(s0)} "
            f"({more + '; ' if more else ''}a power estimate)")


def power_statement(values: Sequence[Sequence[float]], seeds: Sequence[int] = (2, 3, 5)) -> PowerStatement:
    """:func:`variance_components` of the per-(dataset, seed) values and :func:`datasets_needed` at each seed
    count in ``seeds``."""
    c = variance_components(values)
    return PowerStatement(c, {int(s): datasets_needed(c, int(s)) for s in seeds})
