"""Fusion: learn from the twelve signals which layer to remove next (arXiv 2501.03273).

features  profile rows, within-step features, the training target, the signal vote (untrained fallback)
rankers   the linear and random-forest rankers (sklearn estimators) and the description a run stores
explanation  SHAP values of a ranker, checked additive
protocol  which rows may train a ranker (leave-one-dataset-out first), and ranking quality vs the oracle
rank      one step end to end (:func:`rank_step`, the one path runs and tests share) -> :class:`FusionChoice`
quality   runs' stored per-step ranker quality summed up per run and per (strategy, dataset) (Fusion page)
"""

from core.fusion.explanation import ADDITIVITY_ATOL, explain
from core.fusion.features import (
    DEPTH_FEATURE,
    ORACLE,
    ORACLE_DROP,
    ORACLE_GAP,
    SIGNAL_FEATURES,
    make_features,
    make_target,
    profile_rows,
    relative_depth,
    signal_vote,
    upgrade_profiles,
)
from core.fusion.protocol import TrainingProtocol, choose_training_rows, quality_by_step, ranker_quality
from core.fusion.rank import FusionChoice, FusionConfig, make_ranker, rank_step, read_choice
from core.fusion.rankers import ForestFusionRanker, LinearFusionRanker, RankerSummary, describe_ranker

__all__ = [
    "ADDITIVITY_ATOL", "DEPTH_FEATURE", "ORACLE", "ORACLE_DROP", "ORACLE_GAP", "SIGNAL_FEATURES", "ForestFusionRanker",
    "FusionChoice", "FusionConfig", "LinearFusionRanker", "RankerSummary", "TrainingProtocol", "choose_training_rows",
    "describe_ranker", "explain", "make_features", "make_ranker", "make_target", "profile_rows", "quality_by_step",
    "rank_step", "ranker_quality", "read_choice", "relative_depth", "signal_vote", "upgrade_profiles",
]
