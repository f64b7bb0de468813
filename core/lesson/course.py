"""Which recorded runs the lesson stands on: one model and dataset, and for it the finished pruning runs of the
random-forest fusion, the oracle, the best single signal and the top-down baseline.

The lesson works from whatever is there: the dataset asked for when it has a finished run, else the first of
:data:`PREFERRED` with the most of the four strategies, else any dataset with the most. A strategy without a run is
listed in :attr:`LessonRuns.missing` and the chapter that needs it says so in a line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.fusion.features import ORACLE_KL
from core.runs.record import Run, RunStatus

#: the pack's datasets, in the order the lesson prefers them
PREFERRED = ("trec", "sms-spam", "rotten-tomatoes")
FOREST, ORACLE, TOP_DOWN = "rf_fusion", "oracle", "top_down"


@dataclass(frozen=True)
class LessonRuns:
    model: str | None
    dataset: str | None
    forest: Run | None = None
    oracle: Run | None = None
    signal: Run | None = None
    top_down: Run | None = None
    #: every dataset (of the chosen model) that has at least one finished pruning run
    datasets: tuple[str, ...] = ()
    missing: tuple[str, ...] = field(default=())

    @property
    def any(self) -> Run | None:
        return self.forest or self.oracle or self.signal or self.top_down

    def all(self) -> list[Run]:
        return [r for r in (self.forest, self.oracle, self.signal, self.top_down) if r is not None]


def _finished(runs: Sequence[Run]) -> list[Run]:
    return [r for r in runs if r.kind == "prune" and r.status == RunStatus.DONE]


def lesson_runs(runs: Sequence[Run], single_signals: Sequence[str], dataset: str | None = None,
                best_signal: Callable[[str, list[str]], str | None] | None = None) -> LessonRuns:
    """The lesson's runs among ``runs`` (recorded ones first when a strategy has several). ``single_signals`` are
    the strategy keys that are one signal; ``best_signal(model, candidates)`` picks among them (else the first)."""
    done = sorted(_finished(runs), key=lambda r: (not r.recorded, -(r.finished_at or 0)))
    if not done:
        return LessonRuns(None, None, missing=(FOREST, ORACLE, "signal", TOP_DOWN))
    models = sorted({r.model for r in done}, key=lambda m: (m != "e5-small", m))
    model = next((r.model for r in done if r.dataset == dataset), models[0])
    mine = [r for r in done if r.model == model]
    datasets = sorted({r.dataset for r in mine}, key=lambda d: (d not in PREFERRED, PREFERRED.index(d)
                                                                if d in PREFERRED else 0, d))

    def coverage(d: str) -> int:
        have = {r.strategy for r in mine if r.dataset == d}
        return len(have & {FOREST, ORACLE, TOP_DOWN}) + bool(have & set(single_signals))
    chosen = dataset if dataset in datasets else max(datasets, key=lambda d: (coverage(d), -datasets.index(d)))
    here = [r for r in mine if r.dataset == chosen]

    def first(strategy: str) -> Run | None:
        return next((r for r in here if r.strategy == strategy), None)
    signals = [s for s in dict.fromkeys(r.strategy for r in here) if s in single_signals]
    pick = (best_signal(model, signals) if best_signal is not None and signals else None) or \
        (signals[0] if signals else None)
    found = {FOREST: first(FOREST), ORACLE: first(ORACLE), "signal": first(pick) if pick else None,
             TOP_DOWN: first(TOP_DOWN)}
    return LessonRuns(model=model, dataset=chosen, forest=found[FOREST], oracle=found[ORACLE],
                      signal=found["signal"], top_down=found[TOP_DOWN], datasets=tuple(datasets),
                      missing=tuple(k for k, v in found.items() if v is None))


def ffn_parameters(layer_parameters: int, hidden: int) -> int | None:
    """The feed-forward sublayer's share of one BERT encoder layer of ``layer_parameters`` parameters and width
    ``hidden``: the layer is attention (4 h² + 4 h) and its LayerNorm (2 h), then the FFN (2 h i + i + h) and its
    LayerNorm (2 h), so the FFN width ``i`` follows from the count. None when the count does not fit that shape."""
    h = int(hidden)
    rest = layer_parameters - (4 * h * h + 4 * h + 2 * h) - (h + 2 * h)
    if h <= 0 or rest <= 0 or rest % (2 * h + 1):
        return None
    width = rest // (2 * h + 1)
    return 2 * h * width + width + h


@dataclass(frozen=True)
class BankStep:
    """One step of one bank path (model, dataset, seed) in the shape a run stores it: the signals per layer, the
    oracle table and its per-example outcomes (``label``/``pred`` so that ``pred == label`` is the bank's
    ``correct``). What the lesson stands on while a recorded run is not in the pack yet."""

    run_id: str
    seed: int
    signals: pd.DataFrame
    oracle: pd.DataFrame
    outcomes: pd.DataFrame | None


def bank_step(rows: pd.DataFrame, outcomes: pd.DataFrame | None, model: str, dataset: str, step: int = 1
              ) -> BankStep | None:
    """The lowest seed's ``step`` of ``model`` on ``dataset`` in the bank, or None when the bank has none."""
    mine = rows[(rows["model"] == model) & (rows["dataset"] == dataset) & (rows["step"] == step)]
    if mine.empty:
        return None
    seed = int(mine["seed"].min())
    part = mine[mine["seed"] == seed]
    run_id = str(part["run_id"].iloc[0])
    part = part[part["run_id"] == run_id].sort_values("original_layer")
    kl = part[ORACLE_KL] if ORACLE_KL in part else pd.Series(np.nan, index=part.index)
    oracle = pd.DataFrame({"original_layer": part["original_layer"].astype(int), "accuracy": part["oracle_accuracy"],
                           "loss": part["oracle_loss"], "kl_to_current": kl}).reset_index(drop=True)
    found = None
    if outcomes is not None:
        rows_of = outcomes[(outcomes["run_id"] == run_id) & (outcomes["step"] == step)]
        if len(rows_of):
            found = pd.DataFrame({"example": rows_of["example"].astype(int), "label": 1,
                                  "pred": rows_of["correct"].astype(int), "original_layer": rows_of["original_layer"]
                                  .astype(int)}).reset_index(drop=True)
    return BankStep(run_id=run_id, seed=seed, signals=part.reset_index(drop=True), oracle=oracle, outcomes=found)
