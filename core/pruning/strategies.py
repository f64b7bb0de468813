"""How a strategy picks the layer to remove at one step: one small callable per kind of strategy.

* ``ranked``: a single signal or a baseline orders the layers (:func:`core.signals.rank_layers`);
* ``oracle``: the layer whose measured removal costs least (:func:`core.oracle.best_layer`);
* ``fusion``: a ranker trained on profiles scores the layers (:func:`core.fusion.rank_step`, the same
  function and :class:`~core.fusion.FusionConfig` the fusion tests exercise).

Each returns the original index of the layer to remove and a JSON-ready ``info`` dict, stored as the
``info`` of ``steps/<k>/choice.json``; a fusion step's info is a :class:`core.fusion.FusionChoice`
(read it back with :func:`core.fusion.read_choice`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from core.fusion import FusionConfig, profile_rows, rank_step
from core.oracle import best_layer
from core.pruning.config import FUSION, PruneConfig
from core.signals import rank_layers

#: which fusion ranker each fusion strategy trains
FUSION_RANKERS: Mapping[str, str] = {"rf_fusion": "forest", "lr_fusion": "linear"}


@dataclass(frozen=True)
class StepInputs:
    """What a strategy may look at when it picks the layer of one step."""

    cfg: PruneConfig
    step: int
    signals: pd.DataFrame  # one row per remaining layer (core.signals.compute_signals)
    oracle: pd.DataFrame  # one row per remaining layer (core.oracle.compute_oracle)
    profiles: pd.DataFrame  # known profile rows (earlier runs, a bank, this run's earlier steps)
    run_id: str
    dataset_key: str
    n_original: int


Chooser = Callable[[StepInputs], tuple[int, dict[str, Any]]]


def fusion_config(cfg: PruneConfig) -> FusionConfig:
    """The fusion configuration of a run: its strategy picks the ranker, its seed the random state,
    its ``normalise`` / ``depth_feature`` the features; everything else is FusionConfig's default."""
    return FusionConfig(kind=FUSION_RANKERS[cfg.strategy], normalise=cfg.normalise, depth_feature=cfg.depth_feature,
                        random_state=cfg.seed)


def choose_ranked(x: StepInputs) -> tuple[int, dict[str, Any]]:
    """A single signal or a baseline: the first layer of its pruning order."""
    order = [int(i) for i in rank_layers(x.signals, x.cfg.strategy, seed=x.cfg.seed + x.step)]
    return order[0], {"strategy": x.cfg.strategy, "order": order}


def choose_oracle(x: StepInputs) -> tuple[int, dict[str, Any]]:
    """The measured truth: the layer whose removal keeps the most validation accuracy."""
    return best_layer(x.oracle), {"strategy": x.cfg.strategy}


def choose_fusion(x: StepInputs) -> tuple[int, dict[str, Any]]:
    """A fusion ranker: :func:`core.fusion.rank_step` on this step's profile rows."""
    rows = profile_rows(x.signals, x.oracle, run_id=x.run_id, dataset=x.dataset_key, model=x.cfg.model,
                        step=x.step, n_original=x.n_original)
    choice = rank_step(x.profiles, rows, fusion_config(x.cfg))
    return choice.chosen_layer, {"strategy": x.cfg.strategy, **choice.to_dict()}


#: one chooser per kind of strategy
CHOOSERS: Mapping[str, Chooser] = {"ranked": choose_ranked, "oracle": choose_oracle, "fusion": choose_fusion}


def strategy_kind(strategy: str) -> str:
    """``fusion``, ``oracle`` or ``ranked`` (a single signal or a baseline)."""
    return "fusion" if strategy in FUSION else "oracle" if strategy == "oracle" else "ranked"


def choose(x: StepInputs) -> tuple[int, dict[str, Any]]:
    """Pick the original index of the layer to remove, and explain the choice (JSON-ready)."""
    return CHOOSERS[strategy_kind(x.cfg.strategy)](x)


def choose_layer(cfg: PruneConfig, step: int, signals: pd.DataFrame, oracle: pd.DataFrame,
                 profiles: pd.DataFrame, run_id: str, dataset_key: str, n_original: int
                 ) -> tuple[int, dict[str, Any]]:
    """:func:`choose` with its inputs spelled out (the tests' and the scripts' form)."""
    return choose(StepInputs(cfg, step, signals, oracle, profiles, run_id, dataset_key, n_original))


__all__ = ["CHOOSERS", "FUSION_RANKERS", "StepInputs", "choose", "choose_fusion", "choose_layer", "choose_oracle",
           "choose_ranked", "fusion_config", "strategy_kind"]
