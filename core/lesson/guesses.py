"""Predict, then reveal: a learner's guess scored against what the runs measured (UI-free; ``ui/lesson*.py`` draws).

Three guesses, each scored by a rule written here (*our rules*, stated on the page):

* **Which layer is safest to remove at step 1.** The oracle's cost of the guess is its **regret**: the most accurate
  single removal's validation accuracy minus the guess's, before fine-tuning (the definition of
  :mod:`core.runs.handout`), with a paired interval over the validation rows. The guess scores when that interval
  holds 0 (as good as the best, within noise). The same layer is then scored on every seed the profile bank holds
  for the model and dataset (:func:`bank_seed_costs`): how much of a good guess was luck.
* **Forest or the best single signal.** Each run's mean regret over its steps; a difference under the one-step
  noise floor is a tie ("too close to call" is then the right answer).
* **What distillation wins back.** Test accuracy after distillation minus before, paired; the guess (in points)
  scores when it lies within the interval, or within one point of the estimate when the interval is narrower.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.runs import noise
from core.stats import Interval, beyond_noise, oracle_candidate, paired_accuracy_difference

#: the answers of the forest-or-signal guess
FOREST, SIGNAL, TIE = "forest", "signal", "tie"
#: the distillation guess scores within this many points of the estimate when the interval is narrower
KD_SLACK_POINTS = 1.0


# ------------------------------------------------------------------------------------------ the layer guess
@dataclass(frozen=True)
class LayerCost:
    """One removal at one step: validation accuracy without the layer (before fine-tuning), its rank among the
    removals (1 = most accurate) and the regret against the most accurate one (points, with its paired interval)."""

    layer: int
    accuracy: noise.Measured | None
    rank: int
    regret_points: float
    regret: Interval | None  # in accuracy (fraction), best minus this layer, paired over the validation rows

    @property
    def as_good_as_best(self) -> bool:
        """Zero regret, or a regret whose interval holds 0."""
        return self.regret_points <= 1e-9 or (self.regret is not None and not beyond_noise(self.regret))

    def regret_text(self) -> str:
        if self.regret_points <= 1e-9:
            return "0 points (no removal was more accurate)"
        if self.regret is None:
            return f"{self.regret_points:.1f} points (no interval: per-example outcomes not kept)"
        i = self.regret.format(1, 100)
        return f"{i} points" + (" (within noise)" if not beyond_noise(self.regret) else "")


@dataclass(frozen=True)
class SeedCost:
    """The same layer scored on one seed of the profile bank (another teacher and split, or the same)."""

    seed: int
    run_id: str
    best_layer: int
    rank: int
    n_layers: int
    regret_points: float
    regret: Interval | None
    val_rows: int | None

    @property
    def as_good_as_best(self) -> bool:
        return self.regret_points <= 1e-9 or (self.regret is not None and not beyond_noise(self.regret))


@dataclass(frozen=True)
class LayerReveal:
    guess: LayerCost
    best: LayerCost
    #: the oracle's own pick (lowest KL to the current model), when the table has KL
    oracle_pick: int | None
    forest: LayerCost | None
    seeds: tuple[SeedCost, ...]
    n_layers: int

    @property
    def scored(self) -> bool:
        return self.guess.as_good_as_best


def _ranked(oracle: pd.DataFrame) -> pd.DataFrame:
    keys = [c for c in ("accuracy", "loss") if c in oracle]
    return oracle.sort_values(keys, ascending=[False, True][:len(keys)], kind="stable").reset_index(drop=True)


def layer_cost(oracle: pd.DataFrame, outcomes: pd.DataFrame | None, layer: int) -> LayerCost:
    """The cost of removing ``layer`` at a step from its oracle table (``original_layer``, ``accuracy``, ...) and,
    when kept, its per-example outcomes (``oracle_val.parquet``). Raises ValueError for a layer not in the table."""
    ranked = _ranked(oracle)
    layers = [int(x) for x in ranked["original_layer"]]
    if layer not in layers:
        raise ValueError(f"layer {layer} is not a candidate at this step (candidates: {sorted(layers)})")
    acc = dict(zip(layers, ranked["accuracy"].astype(float)))
    best = layers[0]
    if acc[layer] >= acc[best] - 1e-12:
        best = layer
    regret = None

    def part(k: int) -> pd.DataFrame | None:
        try:
            return oracle_candidate(outcomes, k) if outcomes is not None else None
        except ValueError:
            return None
    mine, top = part(layer), part(best)
    if mine is not None and top is not None and best != layer:
        found = noise.compare(noise.measured(acc[best], top), noise.measured(acc[layer], mine))
        regret = found.interval if found is not None and found.paired else None
    ties = sum(1 for v in acc.values() if v > acc[layer] + 1e-12)
    return LayerCost(layer=layer, accuracy=noise.measured(acc[layer], mine), rank=ties + 1,
                     regret_points=100 * (acc[best] - acc[layer]), regret=regret)


def most_accurate(oracle: pd.DataFrame) -> int:
    return int(_ranked(oracle).iloc[0]["original_layer"])


def oracle_pick(oracle: pd.DataFrame) -> int | None:
    """The oracle's own pick: the removal that changes the current model's predictions least (lowest KL)."""
    for column in ("kl_to_current", "kl"):
        if column in oracle and oracle[column].notna().all():
            return int(oracle.sort_values(column, kind="stable").iloc[0]["original_layer"])
    return None


def bank_seed_costs(rows: pd.DataFrame, outcomes: pd.DataFrame | None, model: str, dataset: str, layer: int,
                    step: int = 1) -> tuple[SeedCost, ...]:
    """``layer`` scored at ``step`` on every (seed, run) the bank holds for ``model`` and ``dataset``: its rank, the
    most accurate removal there, and the regret with a paired interval over that run's validation rows."""
    mine = rows[(rows["model"] == model) & (rows["dataset"] == dataset) & (rows["step"] == step)]
    out = []
    for (seed, run_id), g in mine.groupby(["seed", "run_id"], sort=True):
        acc = dict(zip(g["original_layer"].astype(int), g["oracle_accuracy"].astype(float)))
        if layer not in acc:
            continue
        order = g.sort_values(["oracle_accuracy", "oracle_loss"], ascending=[False, True], kind="stable")
        best = int(order.iloc[0]["original_layer"])
        if acc[layer] >= acc[best] - 1e-12:
            best = layer
        interval, n = None, None
        if outcomes is not None and best != layer:
            part = outcomes[(outcomes["run_id"] == run_id) & (outcomes["step"] == step)]
            a = part[part["original_layer"] == best].sort_values("example")
            b = part[part["original_layer"] == layer].sort_values("example")
            if len(a) and len(a) == len(b) and np.array_equal(a["example"].to_numpy(), b["example"].to_numpy()):
                interval, n = paired_accuracy_difference(a["correct"].to_numpy(bool), b["correct"].to_numpy(bool)
                                                         ).interval, len(a)
        out.append(SeedCost(seed=int(seed), run_id=str(run_id), best_layer=best,
                            rank=1 + sum(1 for v in acc.values() if v > acc[layer] + 1e-12), n_layers=len(acc),
                            regret_points=100 * (acc[best] - acc[layer]), regret=interval, val_rows=n))
    return tuple(out)


def reveal_layer(oracle: pd.DataFrame, outcomes: pd.DataFrame | None, guess: int, forest: int | None,
                 seeds: Sequence[SeedCost] = ()) -> LayerReveal:
    """The reveal of a step-1 guess: its cost, the best removal's, the oracle's own pick, the forest's pick's cost."""
    best = most_accurate(oracle)
    return LayerReveal(guess=layer_cost(oracle, outcomes, guess), best=layer_cost(oracle, outcomes, best),
                       oracle_pick=oracle_pick(oracle),
                       forest=layer_cost(oracle, outcomes, forest) if forest is not None else None,
                       seeds=tuple(seeds), n_layers=len(oracle))


# ------------------------------------------------------------------------------------------ forest or signal
@dataclass(frozen=True)
class DuelSide:
    strategy: str
    run_id: str
    #: per step: regret in points (most accurate removal minus the chosen one, before fine-tuning)
    regrets: tuple[float, ...]
    final: noise.Measured | None

    @property
    def mean_regret(self) -> float:
        return float(np.mean(self.regrets)) if self.regrets else float("nan")


@dataclass(frozen=True)
class DuelReveal:
    forest: DuelSide
    signal: DuelSide
    #: the one-step noise floor in points (the oracle's own pick scored on held-out rows), when known
    floor: float | None
    #: forest's final test accuracy minus the signal's, paired when both kept outcomes
    final_difference: noise.Comparison | None

    @property
    def difference(self) -> float:
        """The signal's mean regret minus the forest's (points; positive: the forest picked better)."""
        return self.signal.mean_regret - self.forest.mean_regret

    @property
    def answer(self) -> str:
        threshold = self.floor if self.floor is not None else 0.0
        if not np.isfinite(self.difference) or abs(self.difference) < threshold or abs(self.difference) < 1e-9:
            return TIE
        return FOREST if self.difference > 0 else SIGNAL

    def scored(self, guess: str) -> bool:
        return guess == self.answer


def duel_side(strategy: str, run_id: str, regrets: Sequence[float | None], final: noise.Measured | None) -> DuelSide:
    return DuelSide(strategy, run_id, tuple(100 * float(r) for r in regrets if r is not None and np.isfinite(r)),
                    final)


def reveal_duel(forest: DuelSide, signal: DuelSide, floor: float | None) -> DuelReveal:
    diff = noise.compare(forest.final, signal.final, "the forest", "the single signal")
    return DuelReveal(forest, signal, floor, diff)


# ------------------------------------------------------------------------------------------ distillation
@dataclass(frozen=True)
class KdReveal:
    guess_points: float
    gain: noise.Comparison
    #: other runs' gains: (label, comparison)
    others: tuple[tuple[str, noise.Comparison], ...]

    @property
    def scored(self) -> bool:
        i = self.gain.interval
        low, high = 100 * i.low, 100 * i.high
        near = abs(self.guess_points - 100 * i.estimate) <= KD_SLACK_POINTS
        return low - 1e-9 <= self.guess_points <= high + 1e-9 or near


def reveal_kd(guess_points: float, gain: noise.Comparison,
              others: Mapping[str, noise.Comparison] | None = None) -> KdReveal:
    return KdReveal(float(guess_points), gain, tuple((others or {}).items()))
