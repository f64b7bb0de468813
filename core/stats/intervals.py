"""Intervals for the scores of one model and for the difference between two models on the same examples.

Every function takes per-example outcomes (whether each prediction was right, the predicted and true classes,
or a per-example value such as the loss) and returns an :class:`Interval`: the estimate, its lower and upper
bound, the confidence level and the method, printed as ``0.894 [0.882, 0.905]``.

- :func:`accuracy_interval` / :func:`wilson_interval`: Wilson score interval of a proportion
  (``scipy.stats.binomtest(...).proportion_ci(method="wilson")``).
- :func:`macro_f1_interval`: bootstrap over examples (``scipy.stats.bootstrap``, BCa, seeded).
- :func:`paired_accuracy_difference`, :func:`paired_mean_difference`, :func:`paired_macro_f1_difference`: the
  difference between two models scored on the **same** examples, from a bootstrap over examples of the
  per-example difference (plus McNemar's exact test for accuracy); see :func:`paired_accuracy_difference` for
  why these are far narrower than two separate intervals.
- :func:`unpaired_difference`: Newcombe's interval for two proportions measured on *independent* samples (what
  two separate Wilson intervals imply), for comparison and for models scored on different examples.
- :func:`verdict` / :func:`beyond_noise`: the sentence a page prints for a difference ("A ahead by X [lo, hi]",
  or "within noise" when the interval contains 0).

Bootstraps are seeded (``seed``), so a page redrawn on the same outcomes shows the same interval.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from core.config import ConfigError, check_float, check_int

#: the confidence level every page uses unless told otherwise
LEVEL = 0.95
#: bootstrap resamples unless told otherwise (the percentile error of a 95 % bound is then ~0.1 of its width)
RESAMPLES = 4000


@dataclass(frozen=True)
class Interval:
    """An estimate with its ``level`` confidence interval ``[low, high]`` computed by ``method``; ``n`` is the
    number of units it rests on (examples, seeds or datasets), when known."""

    estimate: float
    low: float
    high: float
    level: float = LEVEL
    method: str = ""
    n: int | None = None

    def __post_init__(self) -> None:
        o = "Interval"
        for name in ("estimate", "low", "high"):
            check_float(o, name, getattr(self, name))
        check_float(o, "level", self.level, 0.0, 1.0, lo_open=True)
        tol = 1e-12 * max(1.0, abs(self.estimate))
        if not self.low - tol <= self.estimate <= self.high + tol:
            raise ConfigError(f"Interval must have low <= estimate <= high, got {self.low!r} <= "
                              f"{self.estimate!r} <= {self.high!r}")

    def __str__(self) -> str:
        return self.format()

    def format(self, digits: int = 3, scale: float = 1.0) -> str:
        """``estimate [low, high]`` with ``digits`` decimals, each multiplied by ``scale`` (100 for points)."""
        e, lo, hi = (v * scale for v in (self.estimate, self.low, self.high))
        return f"{e:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"

    @property
    def width(self) -> float:
        return self.high - self.low

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_dict(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "level": self.level,
                "method": self.method, "n": self.n}


# ------------------------------------------------------------------------------------------ inputs
def check_level(level: float) -> None:
    check_float("interval", "level", level, 0.0, 1.0, lo_open=True)
    if level >= 1.0:
        raise ConfigError(f"interval.level must be < 1, got {level!r}")


def as_vector(name: str, values: Sequence | np.ndarray, dtype: npt.DTypeLike = float) -> np.ndarray:
    arr = np.asarray(values, dtype=dtype).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name} is empty: an interval needs at least one example")
    if dtype is float and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds {int((~np.isfinite(arr)).sum())} values that are not finite numbers")
    return arr


def _same_length(**arrays: np.ndarray) -> None:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError("paired outcomes must cover the same examples, got lengths "
                         + ", ".join(f"{k}={n}" for k, n in lengths.items()))


def _correct(name: str, values: Sequence | np.ndarray) -> np.ndarray:
    arr = np.asarray(values).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name} is empty: an interval needs at least one example")
    if not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must hold 0/1 (or bool) per example, got values {np.unique(arr)[:5]!r}")
    return arr.astype(bool)


# ---------------------------------------------------------------------------------- one model
def wilson_interval(successes: int, n: int, level: float = LEVEL) -> Interval:
    """Wilson score interval of ``successes`` out of ``n`` (the proportion's interval that keeps close to its
    nominal coverage even near 0 and 1, unlike the normal approximation)."""
    check_int("wilson_interval", "n", n, 0)
    if n == 0:
        raise ValueError("wilson_interval: n is 0; an accuracy over no examples has no interval")
    check_int("wilson_interval", "successes", successes, 0, n)
    check_level(level)
    ci = stats.binomtest(successes, n).proportion_ci(confidence_level=level, method="wilson")
    p = successes / n
    return Interval(p, min(float(ci.low), p), max(float(ci.high), p), level, "Wilson", n)


def accuracy_interval(correct: Sequence | np.ndarray, level: float = LEVEL) -> Interval:
    """Wilson interval of the accuracy from per-example correctness (0/1 or bool)."""
    c = _correct("correct", correct)
    return wilson_interval(int(c.sum()), int(c.size), level)


def bootstrap_interval(data: tuple[np.ndarray, ...], statistic: Callable, level: float, n_resamples: int,
               seed: int) -> tuple[float, float]:
    """BCa bootstrap interval of ``statistic`` over examples (rows resampled together across ``data``); the
    percentile interval of the same resamples when BCa is undefined (a statistic that barely varies)."""
    check_int("bootstrap", "n_resamples", n_resamples, 100)
    check_int("bootstrap", "seed", seed, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.bootstrap(data, statistic, n_resamples=n_resamples, vectorized=True, paired=True,
                              confidence_level=level, method="BCa", rng=np.random.default_rng(seed),
                              batch=500)
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        alpha = (1.0 - level) / 2
        low, high = (float(v) for v in np.quantile(res.bootstrap_distribution, [alpha, 1 - alpha]))
    return low, high


def _macro_f1(labels: np.ndarray, pred: np.ndarray, classes: np.ndarray, axis: int = -1) -> np.ndarray:
    """Macro-F1 along ``axis`` (vectorised over leading dimensions), averaged over the classes present in the
    labels or the predictions of each resample, as ``sklearn.metrics.f1_score(average="macro")`` does."""
    total = np.zeros(np.delete(labels.shape, axis), dtype=float)
    present = np.zeros_like(total)
    for c in classes:
        y, p = labels == c, pred == c
        tp = np.sum(y & p, axis=axis)
        wrong = np.sum(y != p, axis=axis)  # false positives + false negatives
        denom = 2 * tp + wrong
        total += np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
        present += denom > 0
    return total / np.maximum(present, 1)


def _classes(labels: np.ndarray, *preds: np.ndarray) -> np.ndarray:
    return np.unique(np.concatenate([labels, *preds]))


def macro_f1_interval(labels: Sequence | np.ndarray, pred: Sequence | np.ndarray, level: float = LEVEL, *,
                      n_resamples: int = RESAMPLES, seed: int = 0) -> Interval:
    """Macro-F1 with a BCa bootstrap interval over examples (seeded: the same inputs give the same interval)."""
    y, p = as_vector("labels", labels, np.int64), as_vector("pred", pred, np.int64)
    _same_length(labels=y, pred=p)
    check_level(level)
    classes = _classes(y, p)
    stat = lambda a, b, axis=-1: _macro_f1(a, b, classes, axis)  # noqa: E731
    estimate = float(stat(y, p))
    low, high = bootstrap_interval((y, p), stat, level, n_resamples, seed)
    return Interval(estimate, min(low, estimate), max(high, estimate), level, "bootstrap BCa", int(y.size))


# -------------------------------------------------------------------------------- two models
@dataclass(frozen=True)
class PairedDifference:
    """Model A minus model B on the same examples: the ``interval`` of the accuracy difference, McNemar's
    discordant counts (``a_only``: A right and B wrong, ``b_only``: the reverse) and its exact two-sided
    p-value (a binomial test of ``a_only`` out of ``a_only + b_only`` at 1/2; 1.0 when they never disagree)."""

    interval: Interval
    a_only: int
    b_only: int
    mcnemar_p: float

    @property
    def discordant(self) -> int:
        return self.a_only + self.b_only


def paired_mean_difference(values_a: Sequence | np.ndarray, values_b: Sequence | np.ndarray,
                           level: float = LEVEL, *, n_resamples: int = RESAMPLES, seed: int = 0) -> Interval:
    """Mean of ``values_a - values_b`` over the same examples (e.g. per-example losses, or 0/1 correctness),
    with a BCa bootstrap interval over examples of the per-example difference. See
    :func:`paired_accuracy_difference` for why this is far narrower than two separate intervals."""
    a, b = as_vector("values_a", values_a), as_vector("values_b", values_b)
    _same_length(values_a=a, values_b=b)
    check_level(level)
    d = a - b
    estimate = float(d.mean())
    if np.all(d == d[0]):  # no example moves the difference: the resamples are all the estimate
        return Interval(estimate, estimate, estimate, level, "paired bootstrap", int(d.size))
    low, high = bootstrap_interval((d,), lambda x, axis=-1: np.mean(x, axis=axis), level, n_resamples, seed)
    return Interval(estimate, min(low, estimate), max(high, estimate), level, "paired bootstrap", int(d.size))


def paired_accuracy_difference(correct_a: Sequence | np.ndarray, correct_b: Sequence | np.ndarray,
                               level: float = LEVEL, *, n_resamples: int = RESAMPLES,
                               seed: int = 0) -> PairedDifference:
    """Accuracy of A minus accuracy of B on the same examples, with a bootstrap interval over examples of the
    per-example difference (``correct_a - correct_b``, each -1, 0 or 1) and McNemar's exact test.

    Why this is far narrower than two separate intervals: two models scored on the same rows share most of
    their outcomes. The easy rows both get right and the hard rows both get wrong move both accuracies
    together, so they add variance to each model's own interval but none to the difference. Only the
    *discordant* rows (one right, the other wrong) carry information about which is better, and the paired
    interval's width is set by them: its variance is ``(b + c - (b - c)^2 / n) / n^2`` for ``b`` and ``c``
    discordant rows, against ``p_a(1-p_a)/n + p_b(1-p_b)/n`` when the two samples are treated as independent.
    Two pruned models that agree on 95 % of 800 rows thus have a paired interval several times narrower than
    what two overlapping Wilson intervals suggest; "their intervals overlap" is not "within noise".
    """
    a, b = _correct("correct_a", correct_a), _correct("correct_b", correct_b)
    _same_length(correct_a=a, correct_b=b)
    interval = paired_mean_difference(a.astype(float), b.astype(float), level, n_resamples=n_resamples,
                                      seed=seed)
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    p = float(stats.binomtest(a_only, a_only + b_only, 0.5).pvalue) if a_only + b_only else 1.0
    return PairedDifference(interval, a_only, b_only, p)


def paired_macro_f1_difference(labels: Sequence | np.ndarray, pred_a: Sequence | np.ndarray,
                               pred_b: Sequence | np.ndarray, level: float = LEVEL, *,
                               n_resamples: int = RESAMPLES, seed: int = 0) -> Interval:
    """Macro-F1 of A minus macro-F1 of B on the same examples: one bootstrap over examples resamples the
    labels and both predictions together (paired; see :func:`paired_accuracy_difference`)."""
    y = as_vector("labels", labels, np.int64)
    pa, pb = as_vector("pred_a", pred_a, np.int64), as_vector("pred_b", pred_b, np.int64)
    _same_length(labels=y, pred_a=pa, pred_b=pb)
    check_level(level)
    classes = _classes(y, pa, pb)
    stat = lambda t, x, z, axis=-1: _macro_f1(t, x, classes, axis) - _macro_f1(t, z, classes, axis)  # noqa: E731
    estimate = float(stat(y, pa, pb))
    if np.array_equal(pa, pb):
        return Interval(estimate, estimate, estimate, level, "paired bootstrap BCa", int(y.size))
    low, high = bootstrap_interval((y, pa, pb), stat, level, n_resamples, seed)
    return Interval(estimate, min(low, estimate), max(high, estimate), level, "paired bootstrap BCa",
                    int(y.size))


def unpaired_difference(successes_a: int, n_a: int, successes_b: int, n_b: int,
                        level: float = LEVEL) -> Interval:
    """Difference of two proportions measured on *independent* samples: Newcombe's hybrid score interval
    (method 10 of Newcombe, 1998), built from the two Wilson intervals. For two models on the same rows use
    :func:`paired_accuracy_difference`, which is far narrower."""
    wa, wb = wilson_interval(successes_a, n_a, level), wilson_interval(successes_b, n_b, level)
    pa, pb = wa.estimate, wb.estimate
    d = pa - pb
    low = d - math.sqrt((pa - wa.low) ** 2 + (wb.high - pb) ** 2)
    high = d + math.sqrt((wa.high - pa) ** 2 + (pb - wb.low) ** 2)
    return Interval(d, low, high, level, "Newcombe (independent samples)", n_a + n_b)


# ------------------------------------------------------------------------------------- verdicts
def beyond_noise(interval: Interval) -> bool:
    """True when the interval of a difference excludes 0 (the difference is beyond noise at its level)."""
    return not interval.contains(0.0)


def verdict(interval: Interval, a: str = "A", b: str = "B", *, digits: int = 3, scale: float = 1.0) -> str:
    """The sentence for a difference ``a - b``: "A ahead by 0.012 [0.004, 0.020]" (or "B ahead by ..." with the
    interval turned around when it is negative), or "within noise (A - B: -0.003 [-0.010, 0.004])" when the
    interval contains 0. ``scale=100`` writes points."""
    if not beyond_noise(interval):
        return f"within noise ({a} − {b}: {interval.format(digits, scale)})"
    if interval.estimate >= 0:
        ahead, lead = a, interval
    else:
        ahead = b
        lead = Interval(-interval.estimate, -interval.high, -interval.low, interval.level, interval.method,
                        interval.n)
    return f"{ahead} ahead by {lead.format(digits, scale)}"
