"""One step of fusion, end to end: train a ranker under the protocol, score the remaining layers, explain.

:func:`rank_step` is the one fusion path: the pruning runs call it (through
:mod:`core.pruning.strategies`) with the :class:`FusionConfig` the tests exercise. Its outcome is a
:class:`FusionChoice`, stored per step (``info`` of ``steps/<k>/choice.json``) and read back by the pages
with :func:`read_choice`, which also opens choices written by older versions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.config import ConfigError, check_choice, check_float, check_int
from core.fusion.explanation import explain
from core.fusion.features import (
    NORMALISATIONS,
    ORACLE,
    SIGNAL_FEATURES,
    TARGETS,
    _require_columns,
    make_features,
    make_target,
    resolve_target,
    signal_vote,
)
from core.fusion.protocol import TrainingProtocol, choose_training_rows, ranker_quality
from core.fusion.rankers import (
    RANKER_KINDS,
    ForestFusionRanker,
    FusionRanker,
    LinearFusionRanker,
    RankerSummary,
    describe_ranker,
)
from core.jsontypes import JSONObject


@dataclass(frozen=True)
class FusionConfig:
    """How a fusion strategy ranks one step (our defaults: the paper's hyperparameters are not public).

    ``min_samples_leaf`` 3 (sklearn's is 1): oracle accuracies on a few hundred validation examples are
    noisy, and leaves of three smooth them; the smaller trees also halve the SHAP time.
    """

    kind: str = "forest"
    normalise: str = "rank"
    depth_feature: bool = False
    target: str = "auto"
    n_estimators: int = 100
    min_samples_leaf: int = 3
    alpha: float = 1.0
    random_state: int = 0
    max_background: int = 100
    #: compute the SHAP explanation (the runs do; a batch evaluation such as the paper check does not need it)
    explain: bool = True

    def __post_init__(self) -> None:
        o = "FusionConfig"
        check_choice(o, "kind", self.kind, RANKER_KINDS)
        check_choice(o, "normalise", self.normalise, NORMALISATIONS)
        if not isinstance(self.depth_feature, bool):
            raise ConfigError(f"{o}.depth_feature must be true or false, got {self.depth_feature!r}")
        check_choice(o, "target", self.target, TARGETS)
        check_int(o, "n_estimators", self.n_estimators, 1, 10_000)
        check_int(o, "min_samples_leaf", self.min_samples_leaf, 1, 10_000)
        check_float(o, "alpha", self.alpha, 0.0, 1e6)
        check_int(o, "random_state", self.random_state, 0, 2**31 - 1)
        check_int(o, "max_background", self.max_background, 1, 10_000)
        if not isinstance(self.explain, bool):
            raise ConfigError(f"{o}.explain must be true or false, got {self.explain!r}")


def make_ranker(cfg: FusionConfig) -> FusionRanker:
    if cfg.kind == "linear":
        return LinearFusionRanker(alpha=cfg.alpha, random_state=cfg.random_state)
    return ForestFusionRanker(n_estimators=cfg.n_estimators, min_samples_leaf=cfg.min_samples_leaf,
                              random_state=cfg.random_state)


@dataclass(frozen=True)
class FusionChoice:
    """The outcome of ranking one step. ``scores[i]`` is the score of ``candidates[i]`` (original layer
    indices; higher = remove first) and ``chosen_layer`` their arg-max. ``ranker``, ``explanation`` (SHAP,
    see :func:`core.fusion.explanation.explain`) and ``target`` are None when no ranker was trained (signal
    vote); ``measured`` (the oracle accuracy per candidate) and ``quality`` (:func:`ranker_quality`) are None
    when the step's oracle was not given."""

    candidates: tuple[int, ...]
    scores: tuple[float, ...]
    chosen_layer: int
    protocol: TrainingProtocol
    ranker: RankerSummary | None = None
    explanation: Mapping[str, Any] | None = None
    target: str | None = None
    measured: tuple[float, ...] | None = None
    quality: Mapping[str, Any] | None = None
    config: FusionConfig | None = None

    @property
    def trained(self) -> bool:
        return self.ranker is not None

    def to_dict(self) -> JSONObject:
        return {"candidates": list(self.candidates), "scores": list(self.scores), "chosen_layer": self.chosen_layer,
                "protocol": self.protocol.to_dict(), "ranker": None if self.ranker is None else self.ranker.to_dict(),
                "explanation": None if self.explanation is None else dict(self.explanation), "target": self.target,
                "measured": None if self.measured is None else list(self.measured),
                "quality": None if self.quality is None else dict(self.quality),
                "config": None if self.config is None else asdict(self.config)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], layer: int | None = None) -> FusionChoice:
        """Today's dict, or an older run's ``info`` (keys ``predicted``, ``shap``, the ranker as full JSON, the
        protocol as a string or a dict keyed ``protocol``; the chosen layer then comes from ``layer``, the
        choice file's own field, else the arg-max of the scores). Unknown keys (``strategy``) are ignored."""
        scores = d.get("scores", d.get("predicted"))
        candidates = d.get("candidates")
        if scores is None or candidates is None or len(scores) != len(candidates) or not len(scores):
            raise ValueError("a fusion choice needs equal-length, non-empty 'scores' (or 'predicted') and "
                             f"'candidates'; got keys {sorted(d)}")
        chosen = d.get("chosen_layer", layer)
        if chosen is None:
            chosen = candidates[int(np.argmax(np.asarray(scores, dtype=float)))]
        ranker, proto, cfg = d.get("ranker"), d.get("protocol"), d.get("config")
        measured = d.get("measured")
        return cls(candidates=tuple(int(c) for c in candidates), scores=tuple(float(s) for s in scores),
                   chosen_layer=int(chosen),
                   protocol=TrainingProtocol.from_dict(proto) if proto is not None else TrainingProtocol("?", ""),
                   ranker=RankerSummary.from_dict(ranker) if ranker else None,
                   explanation=d.get("explanation", d.get("shap")) or None,
                   target=d.get("target", "gap" if ranker else None),
                   measured=None if measured is None else tuple(float(m) for m in measured),
                   quality=d.get("quality"), config=FusionConfig(**cfg) if cfg else None)


def read_choice(payload: Mapping[str, Any] | None) -> FusionChoice | None:
    """The :class:`FusionChoice` in a stored ``choice.json`` (``{"layer": ..., "info": ...}``), or None when
    the step was chosen by a strategy that ranks without fusion."""
    info = (payload or {}).get("info") or {}
    if info.get("scores") is None and info.get("predicted") is None:
        return None
    return FusionChoice.from_dict(info, layer=(payload or {}).get("layer"))


def rank_step(profiles: pd.DataFrame, step_rows: pd.DataFrame, cfg: FusionConfig = FusionConfig(),
              features: Sequence[str] = SIGNAL_FEATURES) -> FusionChoice:
    """Rank the remaining layers of one step with a fusion ranker trained under the protocol.

    ``step_rows``: the profile rows of the current step (one run, one step; see
    :func:`core.fusion.features.profile_rows`). Its oracle column, when present, is never used to rank: only
    to report ``measured`` and ``quality``. ``profiles``: every known profile row (it may include this run's
    earlier steps, other runs, a shipped bank).
    """
    _require_columns(step_rows, ["run_id", "dataset", "model", "step", "original_layer"], "step_rows")
    keys = step_rows[["run_id", "dataset", "model", "step"]].drop_duplicates()
    if len(keys) != 1:
        raise ValueError(f"rank_step: step_rows must hold exactly one (run, step), got {len(keys)}")
    run_id, dataset, model, step = keys.iloc[0]
    train_rows, protocol = choose_training_rows(profiles, model, dataset, run_id, int(step))
    X = make_features(step_rows, features, cfg.normalise, cfg.depth_feature)
    layers = [int(x) for x in step_rows["original_layer"]]
    ranker = explanation = target = None
    if not len(train_rows):
        scores = signal_vote(X, features)
    else:
        X_train = make_features(train_rows, features, cfg.normalise, cfg.depth_feature)
        resolved = resolve_target(train_rows, cfg.target)
        est = make_ranker(cfg).fit(X_train, make_target(train_rows, resolved))
        scores = est.predict(X)
        explanation = explain(est, X_train, X, row_ids=layers, max_background=cfg.max_background,
                              random_state=cfg.random_state) if cfg.explain else None
        ranker, target = describe_ranker(est, list(X.columns), len(train_rows)), resolved
    scores = np.asarray(scores, dtype=float)
    measured = quality = None
    if ORACLE in step_rows.columns:
        oracle = step_rows[ORACLE].to_numpy(dtype=float)
        measured, quality = tuple(float(a) for a in oracle), ranker_quality(scores, oracle)
    return FusionChoice(candidates=tuple(layers), scores=tuple(float(s) for s in scores),
                        chosen_layer=layers[int(np.argmax(scores))], protocol=protocol, ranker=ranker,
                        explanation=explanation, target=target, measured=measured, quality=quality, config=cfg)


__all__ = ["FusionChoice", "FusionConfig", "make_ranker", "rank_step", "read_choice"]
