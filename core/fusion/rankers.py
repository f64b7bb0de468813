"""The fusion rankers as scikit-learn estimators, and the small JSON description a run stores of each.

The paper (arXiv 2501.03273) fuses its single-signal strategies with a linear regression and a random
forest. Both are regressors on the within-step features of :mod:`core.fusion.features`: ``__init__`` only
stores hyperparameters, ``fit(X, y)`` returns self, learned attributes end in ``_``, ``random_state``
everywhere (checked with sklearn's own estimator checks). A fitted ranker is not stored: a run keeps a
:class:`RankerSummary` (kind, hyperparameters, training-row count, impurity importances or coefficients),
which is what the pages draw.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from core.config import check_float
from core.jsontypes import JSONObject


class LinearFusionRanker(RegressorMixin, BaseEstimator):
    """Linear fusion: standardise the features, then Ridge (``alpha > 0``) or least squares (``alpha = 0``).

    Fitted attributes: ``pipeline_`` (the sklearn pipeline), ``coef_`` and ``intercept_`` expressed in the
    (unstandardised) feature space, so ``predict(X) == X @ coef_ + intercept_``; ``n_features_in_``.
    """

    def __init__(self, alpha: float = 1.0, random_state: int | None = None) -> None:
        self.alpha = alpha
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> LinearFusionRanker:
        check_float(type(self).__name__, "alpha", self.alpha, 0.0)
        X, y = validate_data(self, X, y, y_numeric=True)
        reg = Ridge(alpha=self.alpha, random_state=self.random_state) if self.alpha > 0 else LinearRegression()
        self.pipeline_ = Pipeline([("scale", StandardScaler()), ("regress", reg)]).fit(X, y)
        scaler = self.pipeline_["scale"]
        self.coef_ = reg.coef_ / scaler.scale_
        self.intercept_ = float(reg.intercept_ - np.dot(self.coef_, scaler.mean_))
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return self.pipeline_.predict(X)


class ForestFusionRanker(RegressorMixin, BaseEstimator):
    """Random-forest fusion: a ``RandomForestRegressor`` on the normalised signals.

    Fitted attributes: ``estimator_`` (the sklearn forest), ``feature_importances_`` (impurity-based),
    ``n_features_in_``. Trees are grown single-threaded, so a seeded fit is reproducible.
    """

    def __init__(self, n_estimators: int = 100, max_depth: int | None = None, min_samples_leaf: int = 1,
                 max_features: float | int | str | None = 1.0, random_state: int | None = None) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> ForestFusionRanker:
        X, y = validate_data(self, X, y, y_numeric=True)
        self.estimator_ = RandomForestRegressor(
            n_estimators=self.n_estimators, max_depth=self.max_depth, min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features, random_state=self.random_state, n_jobs=None,
        ).fit(X, y)
        self.feature_importances_ = self.estimator_.feature_importances_
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return self.estimator_.predict(X)


FusionRanker = LinearFusionRanker | ForestFusionRanker
RANKER_KINDS: tuple[str, ...] = ("forest", "linear")


def _plain_params(params: Mapping[str, Any]) -> dict[str, str | int | float | bool | None]:
    return {k: (v if v is None or isinstance(v, (bool, int, float, str)) else repr(v)) for k, v in params.items()}


@dataclass(frozen=True)
class RankerSummary:
    """What a run keeps of a trained ranker: enough to say what it was and what it leaned on.

    ``weights`` are the forest's impurity importances (shares, >= 0) or the linear ranker's coefficients on
    the *standardised* features (signed, comparable across features); ``intercept`` is the linear ranker's
    (its mean prediction over the training rows), None for a forest.
    """

    kind: str
    params: Mapping[str, Any]
    n_train_rows: int
    feature_names: tuple[str, ...]
    weights: tuple[float, ...]
    intercept: float | None = None

    @property
    def weight_label(self) -> str:
        return "impurity importance" if self.kind == "forest" else "coefficient on the standardised feature"

    def to_dict(self) -> JSONObject:
        out: JSONObject = {"kind": self.kind, "params": dict(self.params), "n_train_rows": self.n_train_rows,
                           "feature_names": list(self.feature_names)}
        if self.kind == "forest":
            return out | {"feature_importances": list(self.weights)}
        return out | {"coef": list(self.weights), "intercept": self.intercept}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RankerSummary:
        """Today's description, or the full ranker JSON older runs stored (``feature_names_in``, trees...)."""
        kind = d.get("kind")
        if kind not in RANKER_KINDS:
            raise ValueError(f"ranker description: kind must be one of {RANKER_KINDS}, got {kind!r}")
        weights = d.get("feature_importances") if kind == "forest" else d.get("coef")
        if not isinstance(weights, list):
            raise ValueError(f"ranker description of a {kind} ranker has no weights")
        names = d.get("feature_names") or d.get("feature_names_in") or [f"x{j}" for j in range(len(weights))]
        intercept = d.get("intercept")
        return cls(kind=str(kind), params=dict(d.get("params") or {}), n_train_rows=int(d.get("n_train_rows", 0)),
                   feature_names=tuple(str(n) for n in names), weights=tuple(float(w) for w in weights),
                   intercept=None if intercept is None or kind == "forest" else float(intercept))


def describe_ranker(ranker: FusionRanker, feature_names: list[str], n_train_rows: int) -> RankerSummary:
    """The :class:`RankerSummary` of a fitted ranker."""
    check_is_fitted(ranker)
    params = _plain_params(ranker.get_params())
    if isinstance(ranker, ForestFusionRanker):
        return RankerSummary("forest", params, int(n_train_rows), tuple(feature_names),
                             tuple(float(w) for w in ranker.feature_importances_))
    reg = ranker.pipeline_["regress"]
    return RankerSummary("linear", params, int(n_train_rows), tuple(feature_names),
                         tuple(float(w) for w in np.ravel(reg.coef_)), float(reg.intercept_))


__all__ = ["ForestFusionRanker", "FusionRanker", "LinearFusionRanker", "RANKER_KINDS", "RankerSummary",
           "describe_ranker"]
