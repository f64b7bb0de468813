"""Merging or pruning, at the same parameter budget: which one came out ahead on the test split.

Today the verdict compares the two test accuracies as measured (a difference of 0 is a tie). Both models are
scored on the same test texts, so the honest upgrade is a *paired* interval over those texts (bootstrap of the
difference, or McNemar counts of the texts where they disagree): give :func:`compare_at_budget` each model's
per-example correctness and the verdict keeps it, ready for that interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence, Union

import numpy as np

Leader = Literal["merging", "pruning", "neither"]
#: a model's result on the test split: its accuracy, or its per-example correctness (True = right)
Outcome = Union[float, Sequence[bool], np.ndarray]


@dataclass(frozen=True)
class BudgetVerdict:
    """The two test accuracies at the same budget, the difference (merge - prune) and who leads."""

    merge_accuracy: float
    prune_accuracy: float
    #: test examples both were scored on (``None`` when only accuracies were given)
    n: int | None = None
    #: per-example correctness of each model, in the same order (when given): what a paired interval needs
    merge_correct: np.ndarray | None = field(default=None, compare=False, repr=False)
    prune_correct: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def difference(self) -> float:
        return self.merge_accuracy - self.prune_accuracy

    @property
    def leader(self) -> Leader:
        d = self.difference
        return "merging" if d > 0 else "pruning" if d < 0 else "neither"

    def sentence(self) -> str:
        """The verdict in words: ``**merging** is ahead by 0.012.`` or ``a tie.``"""
        if self.leader == "neither":
            return "a tie."
        return f"**{self.leader}** is ahead by {abs(self.difference):.3f}."


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

    ``merge`` and ``prune`` are test accuracies, or per-example correctness on the same test examples in the same
    order (then ``n`` is their length and must agree with a given ``n``). Raises :class:`ValueError` for an
    accuracy outside [0, 1], lists of different lengths or an ``n`` below 1."""
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
    return BudgetVerdict(m_acc, p_acc, n, m_correct, p_correct)
