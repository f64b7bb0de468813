"""How much of the oracle's ranking is signal: split-half and cross-seed reliability of the step-1 oracle.

The oracle ranks the removal of each layer by a validation score. With a few hundred validation rows, much of
that ranking is noise: two disjoint halves of the rows disagree on it, and the layer picked on one half scores
worse on the other. This module measures that, per score the oracle could maximise:

* ``accuracy`` (the paper's headline number), ``loss`` (mean cross-entropy) and ``kl`` (mean KL divergence
  from the unpruned model's prediction to the pruned model's: how much the removal changes the model);
* at several validation sizes ``n``: ``repeats`` random draws of ``n`` rows, each cut into two disjoint halves A
  and B of ``n/2``; ``spearman_halves`` is the rank correlation of the layer scores on A and on B, and
  ``spearman_n`` its Spearman-Brown projection to ``n`` rows (``2r / (1 + r)``: the reliability of a ranking
  measured on all ``n`` rows, *our definition* of "the oracle's reliability at n");
* ``regret`` (the **noise floor**, accuracy points): pick the best layer by the score on A, score that pick's
  accuracy on B, and subtract the best accuracy on B (both directions averaged); ``heldout_gain`` is the pick's
  accuracy on B above the median layer's on B (what choosing by this score buys, measured on rows it did not
  see);
* across seeds (two teachers on two seeded splits): the same Spearman and regret between seed 0's rows and seed
  1's rows, at each ``n``.

Per-example outcomes (correct, loss, KL) of every single-layer removal are computed once per (dataset, seed) on
the largest size and cached, so every smaller size and every score is a resampling of the same measurements.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

SCORES = ("accuracy", "loss", "kl")
#: for each score, whether larger is better (accuracy) or smaller (loss, KL)
HIGHER_IS_BETTER = {"accuracy": True, "loss": False, "kl": False}


@dataclass(frozen=True)
class Outcomes:
    """Per-example outcomes of every single-layer removal at one pruning step: arrays of shape
    (layers, examples). ``layers`` holds the original layer indices in row order."""

    layers: tuple[int, ...]
    correct: np.ndarray
    loss: np.ndarray
    kl: np.ndarray

    def __post_init__(self) -> None:
        shapes = {self.correct.shape, self.loss.shape, self.kl.shape}
        if len(shapes) != 1 or self.correct.shape[0] != len(self.layers):
            raise ValueError(f"Outcomes: arrays of shapes {sorted(shapes)} for {len(self.layers)} layers")

    @property
    def n(self) -> int:
        return int(self.correct.shape[1])

    def scores(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Each score's per-layer mean over ``rows`` (indices of examples)."""
        return {"accuracy": self.correct[:, rows].mean(axis=1), "loss": self.loss[:, rows].mean(axis=1),
                "kl": self.kl[:, rows].mean(axis=1)}

    def to_frame(self) -> pd.DataFrame:
        """Long form (layer, example, correct, loss, kl): what the study caches between sessions."""
        k, n = self.correct.shape
        return pd.DataFrame({"layer": np.repeat(np.asarray(self.layers, dtype=np.int16), n),
                             "example": np.tile(np.arange(n, dtype=np.int32), k),
                             "correct": self.correct.ravel().astype(np.int8),
                             "loss": self.loss.ravel().astype(np.float32), "kl": self.kl.ravel().astype(np.float32)})

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Outcomes:
        layers = tuple(int(x) for x in pd.unique(frame["layer"]))
        shape = (len(layers), len(frame) // len(layers))
        return cls(layers, frame["correct"].to_numpy().reshape(shape).astype(bool),
                   frame["loss"].to_numpy().reshape(shape), frame["kl"].to_numpy().reshape(shape))


def outcomes_from_logits(full: torch.Tensor, removed: Iterable[torch.Tensor], labels: torch.Tensor,
                         layers: Iterable[int]) -> Outcomes:
    """:class:`Outcomes` from the oracle's logits (:func:`core.oracle.oracle_with_logits`): ``full`` the unpruned
    model's, ``removed[i]`` those without the layer of row ``i``."""
    y = labels.long().cpu()
    teacher_log = F.log_softmax(full.float(), dim=-1)
    correct, loss, kl = [], [], []
    for lg in removed:
        lg = lg.float()
        correct.append((lg.argmax(-1) == y).numpy())
        loss.append(F.cross_entropy(lg, y, reduction="none").numpy())
        kl.append(F.kl_div(F.log_softmax(lg, -1), teacher_log, reduction="none", log_target=True)
                  .sum(-1).clamp_min(0.0).numpy())
    return Outcomes(tuple(int(x) for x in layers), np.stack(correct), np.stack(loss), np.stack(kl))


def _best(values: np.ndarray, score: str) -> int:
    return int(np.argmax(values) if HIGHER_IS_BETTER[score] else np.argmin(values))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")  # a constant ranking (e.g. every removal equally accurate on a tiny half)
    return float(spearmanr(a, b).statistic)


def _pick_and_score(pick_on: dict[str, np.ndarray], score_on: dict[str, np.ndarray], score: str) -> tuple[float, float]:
    """Regret (best accuracy on the scoring rows minus the pick's) and gain over the median layer, in points."""
    pick = _best(pick_on[score], score)
    acc = score_on["accuracy"]
    return 100 * float(acc.max() - acc[pick]), 100 * float(acc[pick] - np.median(acc))


def split_half(outcomes: Outcomes, n: int, repeats: int, seed: int = 0) -> pd.DataFrame:
    """One row per (score, draw): Spearman between two disjoint halves of ``n`` rows and the pick-on-one,
    score-on-the-other regret and gain (both directions averaged)."""
    if n > outcomes.n:
        raise ValueError(f"split_half: {n} rows asked for, {outcomes.n} measured")
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(repeats):
        draw = rng.permutation(outcomes.n)[:n]
        a, b = outcomes.scores(draw[: n // 2]), outcomes.scores(draw[n // 2:])
        for score in SCORES:
            rho = _spearman(a[score], b[score])
            ra, ga = _pick_and_score(a, b, score)
            rb, gb = _pick_and_score(b, a, score)
            rows.append({"score": score, "draw": r, "spearman_halves": rho, "regret": (ra + rb) / 2,
                         "heldout_gain": (ga + gb) / 2})
    return pd.DataFrame(rows)


def across_seeds(first: Outcomes, second: Outcomes, n: int, repeats: int, seed: int = 0) -> pd.DataFrame:
    """One row per (score, draw): ``n`` rows of each seed's validation split; Spearman of the two rankings and
    the regret of picking on one seed and scoring on the other (both directions averaged)."""
    if first.layers != second.layers:
        raise ValueError("across_seeds: the two outcomes rank different layers")
    n = min(n, first.n, second.n)
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(repeats):
        a = first.scores(rng.permutation(first.n)[:n])
        b = second.scores(rng.permutation(second.n)[:n])
        for score in SCORES:
            ra, ga = _pick_and_score(a, b, score)
            rb, gb = _pick_and_score(b, a, score)
            rows.append({"score": score, "draw": r, "spearman_seeds": _spearman(a[score], b[score]),
                         "regret_seeds": (ra + rb) / 2, "heldout_gain_seeds": (ga + gb) / 2})
    return pd.DataFrame(rows)


def spearman_brown(r: float | np.ndarray) -> float | np.ndarray:
    """The reliability of a measurement twice as long as the one whose split-half correlation is ``r``."""
    return 2 * r / (1 + r)


def summarise(split: pd.DataFrame, seeds: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean over draws per score (``split`` and ``seeds`` from one dataset and size), with Spearman-Brown."""
    out = split.groupby("score", sort=False).agg(spearman_halves=("spearman_halves", "mean"),
                                                 regret=("regret", "mean"), heldout_gain=("heldout_gain", "mean"))
    out["spearman_n"] = spearman_brown(out["spearman_halves"])
    if seeds is not None and not seeds.empty:
        out = out.join(seeds.groupby("score", sort=False).agg(spearman_seeds=("spearman_seeds", "mean"),
                                                             regret_seeds=("regret_seeds", "mean"),
                                                             heldout_gain_seeds=("heldout_gain_seeds", "mean")))
    return out.reset_index()
