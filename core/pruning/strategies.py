"""How a strategy picks the layer to remove at one step: a single signal, a baseline, the oracle, or fusion."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.pruning.config import FUSION, PruneConfig

def choose_layer(cfg: PruneConfig, step: int, signals: pd.DataFrame, oracle: pd.DataFrame,
                 profiles: pd.DataFrame, run_id: str, dataset_key: str, n_original: int
                 ) -> tuple[int, dict[str, Any]]:
    """Pick the original index of the layer to remove, and explain the choice (JSON-ready)."""
    from core.signals import rank_layers

    strategy = cfg.strategy
    info: dict[str, Any] = {"strategy": strategy}
    if strategy == "oracle":
        best = oracle.sort_values(["accuracy", "loss"], ascending=[False, True]).iloc[0]
        return int(best["original_layer"]), info
    if strategy in FUSION:
        return _fusion_choice(cfg, step, signals, oracle, profiles, run_id, dataset_key, info, n_original)
    order = rank_layers(signals, strategy, seed=cfg.seed + step)
    info["order"] = [int(i) for i in order]
    return int(order[0]), info


def _fusion_choice(cfg: PruneConfig, step: int, signals: pd.DataFrame, oracle: pd.DataFrame,
                   profiles: pd.DataFrame, run_id: str, dataset_key: str, info: dict[str, Any],
                   n_original: int) -> tuple[int, dict[str, Any]]:
    from core.fusion import rankers as fusion

    current = signals.merge(oracle[["original_layer", "accuracy", "loss"]], on="original_layer")
    current = current.rename(columns={"accuracy": "oracle_accuracy", "loss": "oracle_loss"})
    current["oracle_drop"] = current["oracle_accuracy"].max() - current["oracle_accuracy"]
    current = current.assign(run_id=run_id, dataset=dataset_key, model=cfg.model, step=step,
                             n_layers=len(current), n_original=n_original)
    if profiles.empty:
        profiles = current.iloc[0:0]
    rows, protocol = fusion.choose_training_rows(profiles, cfg.model, dataset_key, run_id, step)
    info["protocol"] = protocol
    X_now = fusion.make_features(current, normalise=cfg.normalise, depth_feature=cfg.depth_feature)
    if rows is None or len(rows) == 0:
        scores = fusion.signal_vote(X_now)
        info["ranker"] = None
    else:
        X_train = fusion.make_features(rows, normalise=cfg.normalise, depth_feature=cfg.depth_feature)
        target = fusion.FusionConfig().target  # "gap": the accuracy gap to the step's best removal
        y_train = fusion.make_target(rows, target)
        info["target"] = target  # the pages label predictions by it
        est = (fusion.ForestFusionRanker(random_state=cfg.seed) if cfg.strategy == "rf_fusion"
               else fusion.LinearFusionRanker())
        est.fit(X_train, y_train)
        scores = est.predict(X_now)
        info["ranker"] = fusion.to_json(est)
        info["shap"] = fusion.explain(est, X_train, X_now, row_ids=[int(i) for i in current["original_layer"]],
                                      random_state=cfg.seed)
    scores = np.asarray(scores, dtype=float)
    info["predicted"] = [float(s) for s in scores]
    info["candidates"] = [int(i) for i in current["original_layer"]]
    info["measured"] = [float(a) for a in current["oracle_accuracy"]]
    info["quality"] = fusion.ranker_quality(scores, current["oracle_accuracy"].to_numpy())
    chosen = int(current["original_layer"].iloc[int(np.argmax(scores))])
    return chosen, info
