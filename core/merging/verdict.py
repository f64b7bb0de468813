"""Merging or pruning, at the same parameter budget: which one came out ahead on the test split, and whether
that is beyond the noise of the test rows.

Both models are scored on the same test texts, so the verdict rests on a **paired** interval of the difference
(merge - prune; a bootstrap over the texts of the per-example difference, :mod:`core.stats`) when the run kept
per-example outcomes (:func:`budget_verdict` reads them). A run stored before that has only the two accuracies:
with the test size the interval is unpaired (Newcombe's, wider), without it there is no interval and the sentence
says so. A difference whose interval contains 0 reads **within noise** and names no leader.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

import numpy as np
import pandas as pd

from core.runs import artifacts
from core.runs.record import MergeSummary
from core.stats import Interval, beyond_noise, paired_accuracy_difference, paired_accuracy_of, unpaired_difference

Leader = Literal["merging", "pruning", "neither"]
#: a model's result on the test split: its accuracy, its per-example correctness (True = right), or its stored
#: per-example outcomes frame (``core.train.per_example``: matched with the other side's on example ids)
Outcome: TypeAlias = float | Sequence[bool] | np.ndarray | pd.DataFrame


@dataclass(frozen=True)
class BudgetVerdict:
    """The two test accuracies at the same budget, the difference (merge - prune) with its interval, and who
    leads beyond noise."""

    merge_accuracy: float
    prune_accuracy: float
    #: test examples both were scored on (``None`` when only accuracies were given without a size)
    n: int | None = None
    #: per-example correctness of each model, in the same order (when given): what the paired interval used
    merge_correct: np.ndarray | None = field(default=None, compare=False, repr=False)
    prune_correct: np.ndarray | None = field(default=None, compare=False, repr=False)
    #: merge - prune with its 95 % interval (None without per-example outcomes and without a test size)
    interval: Interval | None = None
    #: whether ``interval`` is paired (both models' outcomes on the same test rows)
    paired: bool = False

    @property
    def difference(self) -> float:
        return self.merge_accuracy - self.prune_accuracy

    @property
    def within_noise(self) -> bool:
        """The interval contains 0 (no interval: a difference of exactly 0 counts as within noise)."""
        return not beyond_noise(self.interval) if self.interval is not None else self.difference == 0

    @property
    def leader(self) -> Leader:
        if self.within_noise:
            return "neither"
        return "merging" if self.difference > 0 else "pruning"

    def how(self) -> str:
        if self.interval is None:
            return "no interval: the test size is unknown"
        if self.paired:
            return f"paired bootstrap over the same {self.interval.n:,} test rows"
        return f"unpaired: no per-example outcomes stored, {self.n:,} test rows"

    def sentence(self) -> str:
        """``**merging** is ahead by 0.028 [0.010, 0.046] (paired ...).`` or ``**within noise**: merge − prune
        0.004 [-0.010, 0.018] (...).``"""
        i = self.interval
        if i is None:
            if self.leader == "neither":
                return f"a tie ({self.how()})."
            return f"**{self.leader}** is ahead by {abs(self.difference):.3f} ({self.how()})."
        if self.leader == "neither":
            return f"**within noise**: merge − prune {i.format(3)} ({self.how()})."
        lead = i if self.difference > 0 else Interval(-i.estimate, -i.high, -i.low, i.level, i.method, i.n)
        return f"**{self.leader}** is ahead by {lead.format(3)} ({self.how()})."


def _accuracy(name: str, outcome: Outcome) -> tuple[float, np.ndarray | None]:
    if isinstance(outcome, (int, float)) and not isinstance(outcome, bool):
        value = float(outcome)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"compare_at_budget: {name} accuracy must be in [0, 1], got {outcome!r}")
        return value, None
    correct = np.asarray(outcome, dtype=bool)
    if correct.ndim != 1 or correct.size == 0:
        raise ValueError(f"compare_at_budget: {name} must be an accuracy or a non-empty list of per-example "
                         f"correctness, got shape {correct.shape}")
    return float(correct.mean()), correct


def compare_at_budget(merge: Outcome, prune: Outcome, n: int | None = None) -> BudgetVerdict:
    """The verdict of the merged against the matched pruned model, both after the same recovery.

    ``merge`` and ``prune`` are both per-example outcome frames (matched on example ids: paired), or both
    per-example correctness on the same test examples in the same order (paired; ``n`` is their length and must
    agree with a given ``n``), or test accuracies (unpaired interval from ``n`` test rows; no interval without
    ``n``). Raises :class:`ValueError` for an accuracy outside [0, 1], lists of different lengths, frames of
    different examples or an ``n`` below 1."""
    if isinstance(merge, pd.DataFrame) or isinstance(prune, pd.DataFrame):
        if not (isinstance(merge, pd.DataFrame) and isinstance(prune, pd.DataFrame)):
            raise ValueError("compare_at_budget: give both sides as outcome frames, or neither")
        diff = paired_accuracy_of(merge, prune)
        m_acc = float((merge["pred"] == merge["label"]).mean())
        p_acc = float((prune["pred"] == prune["label"]).mean())
        return BudgetVerdict(m_acc, p_acc, diff.interval.n, None, None, diff.interval, True)
    m_acc, m_correct = _accuracy("merge", merge)
    p_acc, p_correct = _accuracy("prune", prune)
    lengths = {len(c) for c in (m_correct, p_correct) if c is not None}
    if len(lengths) > 1:
        raise ValueError(f"compare_at_budget: per-example lists differ in length ({sorted(lengths)}); both models "
                         "must be scored on the same test examples")
    if lengths:
        (size,) = lengths
        if n is not None and n != size:
            raise ValueError(f"compare_at_budget: n={n} but the per-example lists hold {size} examples")
        n = size
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"compare_at_budget: n must be a positive integer, got {n!r}")
    if m_correct is not None and p_correct is not None:
        paired = paired_accuracy_difference(m_correct, p_correct).interval
        return BudgetVerdict(m_acc, p_acc, n, m_correct, p_correct, paired, True)
    interval: Interval | None = None
    if n is not None:
        interval = unpaired_difference(int(round(m_acc * n)), n, int(round(p_acc * n)), n)
    return BudgetVerdict(m_acc, p_acc, n, m_correct, p_correct, interval, False)


def recovered_stage(summary: MergeSummary) -> str | None:
    """The stage both sides' final models come from (``distilled`` when both were distilled, else
    ``finetuned``), or None when the run compared no pruning side."""
    pr = summary.pruning
    if pr is None or not summary.final:
        return None
    return "distilled" if summary.merged.get("distilled") is not None and pr.distilled is not None else "finetuned"


def budget_verdict(summary: MergeSummary, read: Callable[[int, str], pd.DataFrame | None],
                   n: int | None = None) -> BudgetVerdict | None:
    """The verdict of a finished merge run: paired from its per-example outcomes (``read(step, evaluation)``;
    the comparison's outcomes are in step 1) when it kept them, else from its two accuracies and the test size
    ``n``. None when the run compared no pruning side."""
    stage = recovered_stage(summary)
    if stage is None:
        return None
    side = summary.pruning.final if summary.pruning is not None else {}
    if "test_accuracy" not in side or "test_accuracy" not in summary.final:
        return None
    merge_out = read(1, artifacts.comparison_outcomes("merge", stage, "test"))
    prune_out = read(1, artifacts.comparison_outcomes("prune", stage, "test"))
    if merge_out is not None and prune_out is not None:
        try:
            return compare_at_budget(merge_out, prune_out)
        except ValueError:  # not the same rows: fall back to the stored accuracies
            pass
    return compare_at_budget(float(summary.final["test_accuracy"]), float(side["test_accuracy"]), n)
