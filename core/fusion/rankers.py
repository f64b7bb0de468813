"""Fusion rankers: learn from the twelve signals which layer to remove next (arXiv 2501.03273).

The paper fuses its single-signal strategies with a linear regression and a random forest. Here both are
scikit-learn estimators trained on **profiles**: one row per (run, step, remaining layer) holding the
twelve raw signal values and the oracle (validation accuracy with that layer removed, no fine-tuning).

Conventions used throughout this module:

* **score**: higher means "better to remove next" (the layer whose removal hurts least). Ranker
  predictions, :func:`signal_vote` and the training target all follow it, so the pruned layer is always
  the arg-max of the score within a step.
* **Features** (:func:`make_features`) are normalised *within each (run, step) group* across the layers
  still present, so a ranker trained on one model, dataset or depth can score another. Default: ``rank``.
* **Target** (:func:`make_target`) is, by default, the ``gap``: the oracle accuracy of removing this layer
  minus that of the best candidate of the same step (0 for the best layer, negative otherwise).
* **Protocol** (:func:`choose_training_rows`): leave-one-dataset-out when possible, never training on
  the dataset being pruned; else earlier steps of the same run; else the :func:`signal_vote` rule.
* **Persistence** (:func:`to_json` / :func:`from_json`) is plain JSON (no pickle, no joblib), validated
  on load, so a ranker file from anywhere cannot run code; a reloaded forest is evaluated with numpy.
* **Explanations** (:func:`explain`): interventional SHAP values against a background sample, as lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import shap
from scipy.stats import spearmanr
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted, validate_data

from core.config import ConfigError, check_choice, check_float, check_int
from core.signals.registry import SIGNAL_KEYS, SIGNALS

#: the fusion features: the twelve signals, in registry order (one source of truth: core.signals.registry)
SIGNAL_FEATURES: tuple[str, ...] = SIGNAL_KEYS

#: which end of each signal is pruned first ("lowest" or "highest"), read from the registry; used only by
#: the :func:`signal_vote` fallback.
SIGNAL_PRUNE_END: Mapping[str, str] = MappingProxyType({k: SIGNALS[k].direction for k in SIGNAL_KEYS})

GROUP_KEYS: tuple[str, str] = ("run_id", "step")
DEPTH_FEATURE = "relative_depth"
NORMALISATIONS: tuple[str, ...] = ("rank", "zscore")
TARGETS: tuple[str, ...] = ("gap", "rank")
ORACLE = "oracle_accuracy"
JSON_FORMAT = "layer-prune-explorer/fusion-ranker"
JSON_VERSION = 1


# --------------------------------------------------------------------------------------------- features

def _require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; it has {list(frame.columns)}")


def _require_finite(frame: pd.DataFrame, what: str) -> None:
    bad = ~np.isfinite(frame.to_numpy(dtype=float))
    if bad.any():
        cols = sorted({frame.columns[j] for j in np.nonzero(bad)[1]})
        raise ValueError(f"{what} has {int(bad.sum())} missing or infinite value(s) in column(s) {cols}")


def _groups(frame: pd.DataFrame, profile: pd.DataFrame) -> Any:
    return frame.groupby([profile[k] for k in GROUP_KEYS], sort=False)


def _within_rank(frame: pd.DataFrame, profile: pd.DataFrame) -> pd.DataFrame:
    """Average ranks scaled to [0, 1] within each step; a constant column (or one layer) gives 0.5."""
    ranks = _groups(frame, profile).rank(method="average")
    size = _groups(pd.Series(1.0, index=frame.index, name="n"), profile).transform("sum")
    out = (ranks - 1.0).div((size - 1.0).where(size > 1, 1.0), axis=0)
    out.loc[size <= 1, :] = 0.5
    return out


def _within_zscore(frame: pd.DataFrame, profile: pd.DataFrame) -> pd.DataFrame:
    """(x - step mean) / step std (ddof 0); a column that is constant within a step gives 0."""
    grouped = _groups(frame, profile)
    mean = grouped.transform("mean")
    std = grouped.transform("std", ddof=0)
    flat = std <= 1e-12 * np.maximum(1.0, mean.abs())
    return ((frame - mean) / std.mask(flat, 1.0)).mask(flat, 0.0)


def relative_depth(profile: pd.DataFrame) -> pd.Series:
    """original_layer / (n_original - 1): where the layer sat in the unpruned model (0 first, 1 last).

    ``n_original`` is read from a column of that name when present, else ``n_layers + step`` (one layer is
    removed per step, step 0 being the unpruned model).
    """
    _require_columns(profile, ["original_layer", "n_layers", "step"], "profile")
    n_orig = profile["n_original"] if "n_original" in profile.columns else profile["n_layers"] + profile["step"]
    return (profile["original_layer"] / (n_orig - 1).clip(lower=1)).astype(float).rename(DEPTH_FEATURE)


def make_features(profile: pd.DataFrame, features: Sequence[str] = SIGNAL_FEATURES,
                  normalise: str = "rank", depth_feature: bool = False) -> pd.DataFrame:
    """The ranker's input: each signal normalised within its (run, step) across the remaining layers.

    ``rank`` (default): the within-step average rank scaled to [0, 1]. Raw signal scales differ by orders
    of magnitude between models (hidden size), datasets (loss level drives gradients) and depths; a rank is
    invariant to any increasing transform of a signal within a step, bounded, robust to the heavy tails of
    gradient and energy signals, and means the same at 12 and at 7 remaining layers, which is what lets
    one ranker transfer. ``zscore`` keeps the spacing between layers but is outlier-sensitive. Constant
    signals (or a single remaining layer) give 0.5 (rank) or 0 (zscore), never NaN.
    ``depth_feature`` appends :func:`relative_depth` (off by default: depth is not a signal, and a ranker
    leaning on it just learns a fixed layer order).
    """
    check_choice("make_features", "normalise", normalise, NORMALISATIONS)
    _require_columns(profile, [*GROUP_KEYS, *features], "profile")
    raw = profile[list(features)].astype(float)
    _require_finite(raw, "profile signals")
    out = _within_rank(raw, profile) if normalise == "rank" else _within_zscore(raw, profile)
    if depth_feature:
        out[DEPTH_FEATURE] = relative_depth(profile)
    return out


def make_target(profile: pd.DataFrame, kind: str = "gap") -> pd.Series:
    """The training target, a score (higher = better to remove) comparable across datasets.

    ``gap`` (default): oracle accuracy minus the best oracle accuracy of the same step, so 0 for the best
    layer to remove and e.g. -0.12 for a layer whose removal costs 12 points more. The dataset's accuracy
    level cancels (transfers across datasets) while the size of a mistake is kept: a near-tie between two
    layers barely matters, a layer that collapses the model matters a lot, and the forest spends its
    splits accordingly. ``rank``: the within-step rank of the oracle accuracy in [0, 1] (every step weighs
    the same, but a 0.1-point difference looks like a 30-point one).
    """
    check_choice("make_target", "kind", kind, TARGETS)
    _require_columns(profile, [*GROUP_KEYS, ORACLE], "profile")
    acc = profile[[ORACLE]].astype(float)
    _require_finite(acc, "profile oracle")
    if kind == "rank":
        return _within_rank(acc, profile)[ORACLE].rename("target")
    return (acc[ORACLE] - _groups(acc[ORACLE], profile).transform("max")).rename("target")


def signal_vote(features: pd.DataFrame, keys: Sequence[str] = SIGNAL_FEATURES,
                prune_end: Mapping[str, str] = SIGNAL_PRUNE_END) -> np.ndarray:
    """The untrained fallback score: the mean within-step rank of the twelve signals (a Borda count).

    Each normalised signal is oriented so that higher means "prune first" (``1 - rank`` for a signal whose
    lowest layer is pruned first, ``rank`` for highest) and the twelve are averaged. Used when there is no
    profile to train on (the first step of the first run for a model).
    """
    _require_columns(features, keys, "features")
    for key in keys:
        check_choice("signal_vote.prune_end", key, prune_end.get(key), ("lowest", "highest"))
    oriented = [features[k] if prune_end[k] == "highest" else -features[k] for k in keys]
    # -x (not 1 - x) works for rank and zscore alike and orders layers identically within a step
    return np.mean(np.column_stack(oriented), axis=1)


# ------------------------------------------------------------------------------------------- estimators

class LinearFusionRanker(RegressorMixin, BaseEstimator):
    """Linear fusion: standardise the features, then Ridge (``alpha > 0``) or least squares (``alpha = 0``).

    Fitted attributes: ``pipeline_`` (the sklearn pipeline), ``coef_`` and ``intercept_`` expressed in the
    (unstandardised) feature space, so ``predict(X) == X @ coef_ + intercept_``; ``n_features_in_``.
    """

    def __init__(self, alpha: float = 1.0, random_state: int | None = None) -> None:
        self.alpha = alpha
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> "LinearFusionRanker":
        check_float(type(self).__name__, "alpha", self.alpha, 0.0)
        X, y = validate_data(self, X, y, y_numeric=True)
        reg = Ridge(alpha=self.alpha, random_state=self.random_state) if self.alpha > 0 else LinearRegression()
        self.pipeline_ = Pipeline([("scale", StandardScaler()), ("regress", reg)]).fit(X, y)
        self._set_feature_space_coef()
        return self

    def _set_feature_space_coef(self) -> None:
        scaler, reg = self.pipeline_["scale"], self.pipeline_["regress"]
        self.coef_ = reg.coef_ / scaler.scale_
        self.intercept_ = float(reg.intercept_ - np.dot(self.coef_, scaler.mean_))

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return self.pipeline_.predict(X)


class ForestFusionRanker(RegressorMixin, BaseEstimator):
    """Random-forest fusion: a ``RandomForestRegressor`` on the normalised signals.

    Fitted attributes: ``estimator_`` (the forest, or a :class:`NumpyForest` after :func:`from_json`),
    ``feature_importances_`` (impurity-based), ``n_features_in_``. Trees are grown single-threaded, which
    also fixes the order in which tree outputs are summed (a reloaded forest reproduces it bit for bit).
    """

    def __init__(self, n_estimators: int = 100, max_depth: int | None = None, min_samples_leaf: int = 1,
                 max_features: float | int | str | None = 1.0, random_state: int | None = None) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> "ForestFusionRanker":
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


# --------------------------------------------------------------------------------- numpy forest (reload)

@dataclass(frozen=True)
class TreeArrays:
    """One regression tree as sklearn stores it (``tree_``): node ``i`` is a leaf when
    ``children_left[i] == -1``; otherwise rows with ``x[feature[i]] <= threshold[i]`` go left."""

    children_left: np.ndarray
    children_right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    value: np.ndarray
    weighted_n_node_samples: np.ndarray

    @classmethod
    def from_sklearn(cls, tree: Any) -> "TreeArrays":
        return cls(tree.children_left.astype(np.int64), tree.children_right.astype(np.int64),
                   tree.feature.astype(np.int64), tree.threshold.astype(np.float64),
                   tree.value[:, 0, 0].astype(np.float64), tree.weighted_n_node_samples.astype(np.float64))

    def leaves(self, X32: np.ndarray) -> np.ndarray:
        """The leaf each row of a float32 matrix falls in (float32 vs float64 compare, as sklearn does)."""
        node = np.zeros(X32.shape[0], dtype=np.int64)
        active = np.flatnonzero(self.children_left[node] != -1)
        while active.size:
            cur = node[active]
            left = X32[active, self.feature[cur]] <= self.threshold[cur]
            node[active] = np.where(left, self.children_left[cur], self.children_right[cur])
            active = active[self.children_left[node[active]] != -1]
        return node


@dataclass(frozen=True)
class NumpyForest:
    """A random forest evaluated from its tree arrays with numpy: the mean of the trees' leaf values,
    summed in tree order exactly as sklearn's single-threaded ``RandomForestRegressor.predict`` does."""

    trees: tuple[TreeArrays, ...]
    n_features: int = field(default=0)

    def predict(self, X: np.ndarray) -> np.ndarray:
        X32 = np.asarray(X, dtype=np.float32)
        out = np.zeros(X32.shape[0], dtype=np.float64)
        for tree in self.trees:
            out += tree.value[tree.leaves(X32)]
        out /= len(self.trees)
        return out


def _tree_arrays(forest: RandomForestRegressor | NumpyForest) -> tuple[TreeArrays, ...]:
    if isinstance(forest, NumpyForest):
        return forest.trees
    return tuple(TreeArrays.from_sklearn(est.tree_) for est in forest.estimators_)


# ----------------------------------------------------------------------------------------- persistence

def _json_params(estimator: BaseEstimator) -> dict[str, Any]:
    params = estimator.get_params()
    for name, value in params.items():
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise TypeError(f"{type(estimator).__name__}.{name}={value!r} cannot be stored as JSON; "
                            "use an int (or None) for random_state")
    return params


def to_json(estimator: FusionRanker) -> dict[str, Any]:
    """A JSON-ready dict of a fitted ranker: hyperparameters plus the numbers needed to predict."""
    check_is_fitted(estimator)
    names = getattr(estimator, "feature_names_in_", None)
    out: dict[str, Any] = {"format": JSON_FORMAT, "version": JSON_VERSION, "params": _json_params(estimator),
                           "n_features_in": int(estimator.n_features_in_),
                           "feature_names_in": None if names is None else [str(n) for n in names]}
    if isinstance(estimator, LinearFusionRanker):
        scaler, reg = estimator.pipeline_["scale"], estimator.pipeline_["regress"]
        return out | {"kind": "linear", "regressor": "ridge" if isinstance(reg, Ridge) else "least_squares",
                      "scaler_mean": scaler.mean_.tolist(), "scaler_scale": scaler.scale_.tolist(),
                      "coef": np.asarray(reg.coef_, dtype=float).tolist(), "intercept": float(reg.intercept_)}
    if isinstance(estimator, ForestFusionRanker):
        trees = [{k: getattr(t, k).tolist() for k in TreeArrays.__dataclass_fields__}
                 for t in _tree_arrays(estimator.estimator_)]
        return out | {"kind": "forest", "feature_importances": estimator.feature_importances_.tolist(),
                      "trees": trees}
    raise TypeError(f"to_json stores LinearFusionRanker or ForestFusionRanker, got {type(estimator).__name__}")


def _vector(data: Mapping[str, Any], key: str, n: int | None, dtype: type = float) -> np.ndarray:
    try:
        arr = np.asarray(data[key], dtype=dtype)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"ranker JSON: field {key!r} is missing or not a list of numbers ({exc})") from None
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n) or not np.isfinite(arr).all():
        raise ValueError(f"ranker JSON: field {key!r} must be {n if n is not None else 'a'} finite numbers, "
                         f"got shape {arr.shape}")
    return arr


def _check_tree(tree: Mapping[str, Any], n_features: int, where: str) -> TreeArrays:
    """Validate one stored tree: every child index points forward (so evaluation always ends) and every
    split names an existing feature."""
    left = _vector(tree, "children_left", None, np.int64)
    n = left.shape[0]
    arrays = {k: _vector(tree, k, n, np.int64 if k in ("children_left", "children_right", "feature") else float)
              for k in TreeArrays.__dataclass_fields__}
    t = TreeArrays(**arrays)
    idx = np.arange(n)
    leaf = t.children_left == -1
    ok = (n > 0 and np.array_equal(leaf, t.children_right == -1)
          and np.all((t.children_left[~leaf] > idx[~leaf]) & (t.children_left[~leaf] < n))
          and np.all((t.children_right[~leaf] > idx[~leaf]) & (t.children_right[~leaf] < n))
          and np.all((t.feature[~leaf] >= 0) & (t.feature[~leaf] < n_features)))
    if not ok:
        raise ValueError(f"ranker JSON: {where} is not a valid tree (children must point forward, "
                         f"features must be in [0, {n_features}))")
    return t


def _params(data: Mapping[str, Any], cls: type[BaseEstimator]) -> dict[str, Any]:
    params = data.get("params", {})
    known = cls().get_params()
    if not isinstance(params, dict) or set(params) - set(known):
        raise ValueError(f"ranker JSON: params must be a dict with keys among {sorted(known)}, got {params!r}")
    return params


def _linear_from_json(data: Mapping[str, Any], n: int) -> LinearFusionRanker:
    est = LinearFusionRanker(**_params(data, LinearFusionRanker))
    scaler = StandardScaler()
    scaler.mean_, scaler.scale_ = _vector(data, "scaler_mean", n), _vector(data, "scaler_scale", n)
    scaler.n_features_in_ = n
    reg = Ridge(alpha=est.alpha) if data.get("regressor") == "ridge" else LinearRegression()
    reg.coef_, reg.intercept_ = _vector(data, "coef", n), float(_vector({"i": [data.get("intercept")]}, "i", 1)[0])
    reg.n_features_in_ = n
    est.pipeline_ = Pipeline([("scale", scaler), ("regress", reg)])
    est._set_feature_space_coef()
    return est


def _forest_from_json(data: Mapping[str, Any], n: int) -> ForestFusionRanker:
    est = ForestFusionRanker(**_params(data, ForestFusionRanker))
    trees = data.get("trees")
    if not isinstance(trees, list) or not trees or not all(isinstance(t, dict) for t in trees):
        raise ValueError("ranker JSON: 'trees' must be a non-empty list of tree dicts")
    est.estimator_ = NumpyForest(tuple(_check_tree(t, n, f"tree {i}") for i, t in enumerate(trees)), n)
    est.feature_importances_ = _vector(data, "feature_importances", n)
    return est


def from_json(data: Mapping[str, Any]) -> FusionRanker:
    """Rebuild a ranker stored by :func:`to_json`; validates every field, executes nothing.

    A linear ranker gets back its sklearn pipeline; a forest gets a :class:`NumpyForest` as
    ``estimator_``. Either predicts exactly (bit for bit) what the original did.
    """
    if not isinstance(data, Mapping) or data.get("format") != JSON_FORMAT or data.get("version") != JSON_VERSION:
        raise ValueError(f"not a stored fusion ranker (expected format {JSON_FORMAT!r} version {JSON_VERSION})")
    n = data.get("n_features_in")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"ranker JSON: n_features_in must be a positive integer, got {n!r}")
    kind = data.get("kind")
    if kind not in ("linear", "forest"):
        raise ValueError(f"ranker JSON: kind must be 'linear' or 'forest', got {kind!r}")
    est = _linear_from_json(data, n) if kind == "linear" else _forest_from_json(data, n)
    est.n_features_in_ = n
    names = data.get("feature_names_in")
    if names is not None:
        if not isinstance(names, list) or len(names) != n or not all(isinstance(s, str) for s in names):
            raise ValueError(f"ranker JSON: feature_names_in must be {n} strings, got {names!r}")
        est.feature_names_in_ = np.asarray(names, dtype=object)
    return est


# ---------------------------------------------------------------------------------------------- SHAP

def _float32_floor(threshold: np.ndarray) -> np.ndarray:
    """The largest float32 <= each threshold. For a float32 input x, ``x <= t`` iff ``x <= floor32(t)``.

    shap's interventional TreeSHAP (``tree_shap.h``) holds a node's threshold in a C ``float``; a float64
    sklearn threshold (the midpoint of two float32 values) can round *up* onto the larger value and send
    that value left, breaking additivity for rows sitting exactly on it (common with rank features).
    Thresholds already representable in float32 are unaffected by shap's cast.
    """
    t32 = threshold.astype(np.float32)
    over = t32.astype(np.float64) > threshold
    t32[over] = np.nextafter(t32[over], np.float32(-np.inf))
    return t32.astype(np.float64)


def _shap_tree_model(forest: RandomForestRegressor | NumpyForest) -> dict[str, Any]:
    """shap's dictionary tree format: leaf values divided by the tree count (the forest is a mean), inputs
    compared as float32 like sklearn, thresholds made float32-exact (see :func:`_float32_floor`)."""
    trees = _tree_arrays(forest)
    scale = 1.0 / len(trees)
    return {"trees": [{"children_left": t.children_left, "children_right": t.children_right,
                       "children_default": t.children_left, "features": t.feature,
                       "thresholds": _float32_floor(t.threshold),
                       "values": t.value[:, None] * scale, "node_sample_weight": t.weighted_n_node_samples}
                      for t in trees],
            "input_dtype": np.float32, "objective": "squared_error", "tree_output": "raw_value"}


#: shap's interventional TreeSHAP accumulates in float32, so a forest's explanation is additive to
#: a few 1e-9 (measured up to 500 trees); this bound (1e-5 percentage points of accuracy) is checked
ADDITIVITY_ATOL = 1e-7
#: shap's interventional TreeSHAP indexes nodes with a C ``short``; bigger trees use the path-dependent one
_SHAP_MAX_NODES = 32767


def _feature_names(estimator: FusionRanker, X: Any) -> list[str]:
    names = getattr(estimator, "feature_names_in_", None)
    if names is None and isinstance(X, pd.DataFrame):
        names = X.columns
    return [str(n) for n in names] if names is not None else [f"x{i}" for i in range(estimator.n_features_in_)]


def _as_float32(a: np.ndarray) -> np.ndarray:
    """Round to float32 and back: the values sklearn's trees compare, seen identically by shap for the
    explained rows and for the background rows (shap casts only the former)."""
    return a.astype(np.float32).astype(np.float64)


def _forest_shap(estimator: ForestFusionRanker, background: np.ndarray, data: np.ndarray) -> tuple[Any, str, Any]:
    model = _shap_tree_model(estimator.estimator_)
    small = max(len(t["features"]) for t in model["trees"]) <= _SHAP_MAX_NODES
    perturbation = "interventional" if small else "tree_path_dependent"
    explainer = shap.TreeExplainer(model, data=_as_float32(background) if small else None,
                                   feature_perturbation=perturbation)
    return explainer, perturbation, explainer.shap_values(_as_float32(data), check_additivity=True)


def explain(estimator: FusionRanker, X_background: Any, X: Any, *, row_ids: Sequence[Any] | None = None,
            max_background: int = 100, random_state: int = 0) -> dict[str, Any]:
    """SHAP values of ``estimator`` on the rows ``X``, as JSON-ready lists for the dashboard.

    ``shap.TreeExplainer`` (forest) or ``shap.LinearExplainer`` (linear), both interventional: a feature's
    value is its contribution relative to the mean prediction over ``X_background`` (sampled down to
    ``max_background`` rows, seeded). Additive: ``base_value + sum(values[i]) == prediction[i]`` within
    :data:`ADDITIVITY_ATOL` (checked; a violation raises). A forest with a tree of more than 32,767 nodes
    is explained path-dependently (relative to its training data), as ``feature_perturbation`` records.
    ``row_ids`` (e.g. the original layer indices) label the rows, so "why was layer 7 chosen at step 3"
    is a lookup.
    """
    check_is_fitted(estimator)
    data = check_array(X, dtype=np.float64)
    background = check_array(X_background, dtype=np.float64)
    for what, arr in (("X", data), ("X_background", background)):
        if arr.shape[1] != estimator.n_features_in_:
            raise ValueError(f"explain: {what} has {arr.shape[1]} features, the ranker {estimator.n_features_in_}")
    if row_ids is not None and len(row_ids) != data.shape[0]:
        raise ValueError(f"explain: {len(row_ids)} row_ids for {data.shape[0]} rows")
    if background.shape[0] > max_background:
        background = shap.utils.sample(background, max_background, random_state=random_state)
    if isinstance(estimator, ForestFusionRanker):
        explainer, perturbation, values = _forest_shap(estimator, background, data)
    else:
        perturbation = "interventional"
        explainer = shap.LinearExplainer((estimator.coef_, estimator.intercept_), background)
        values = explainer.shap_values(data)
    base, values = float(np.ravel(explainer.expected_value)[0]), np.asarray(values, dtype=float)
    prediction = np.asarray(estimator.predict(X), dtype=float)
    _check_additive(base, values, prediction)
    return {"explainer": type(explainer).__name__, "feature_perturbation": perturbation,
            "base_value": base, "values": values.tolist(), "feature_names": _feature_names(estimator, X),
            "data": data.tolist(), "prediction": prediction.tolist(),
            "row_ids": None if row_ids is None else [_plain(r) for r in row_ids],
            "n_background": int(background.shape[0]) if perturbation == "interventional" else 0}


def _check_additive(base: float, values: np.ndarray, prediction: np.ndarray) -> None:
    """Refuse an explanation whose waterfall would not end at the ranker's prediction (shap's own check
    is looser than the dashboard can afford)."""
    gap = np.abs(base + values.sum(axis=1) - prediction)
    if np.any(gap > ADDITIVITY_ATOL * np.maximum(1.0, np.abs(prediction))):
        raise RuntimeError(f"SHAP values are not additive: base + sum differs from the prediction by up to "
                           f"{gap.max():.3g}")


def _plain(value: Any) -> Any:
    """A numpy scalar as the matching Python scalar (JSON-ready)."""
    return value.item() if isinstance(value, np.generic) else value


# ------------------------------------------------------------------------------------------- protocol

def _describe(protocol: str, sentence: str, rows: pd.DataFrame) -> dict[str, Any]:
    return {"protocol": protocol, "description": sentence, "n_rows": int(len(rows)),
            "datasets": sorted({str(d) for d in rows["dataset"]}) if len(rows) else [],
            "runs": sorted({str(r) for r in rows["run_id"]}) if len(rows) else [],
            "fallback": "signal_vote" if protocol == "none" else None}


def choose_training_rows(profiles: pd.DataFrame, model: str, dataset: str, run_id: Any,
                         step: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Which profile rows may train the ranker for (model, dataset, run, step), and a description for the UI.

    1. ``leave_one_dataset_out``: every profiled row of the same model on *other* datasets; the dataset
       being pruned is never trained on, so the quality reported against its oracle is honest.
    2. ``within_run``: no other dataset profiled for this model, so the earlier steps of this run.
    3. ``none``: nothing to train on (the first step of the first run); the caller ranks by
       :func:`signal_vote`. Rows without a finite oracle value are never used.
    """
    _require_columns(profiles, ["run_id", "dataset", "model", "step", ORACLE], "profiles")
    usable = profiles[(profiles["model"] == model) & np.isfinite(profiles[ORACLE].astype(float))]
    others = usable[usable["dataset"] != dataset]
    if len(others):
        names = sorted({str(d) for d in others["dataset"]})
        return others, _describe("leave_one_dataset_out", (
            f"Trained leave-one-dataset-out on {len(others)} profiled layer-steps of {model} from "
            f"{len(names)} other dataset(s) ({', '.join(names)}); never on {dataset}, the dataset being "
            "pruned."), others)
    earlier = usable[(usable["run_id"] == run_id) & (usable["step"] < step)]
    if len(earlier):
        return earlier, _describe("within_run", (
            f"No other dataset has been profiled for {model}, so the ranker is trained on the "
            f"{len(earlier)} layer-steps of steps 0-{step - 1} of this run (same dataset: its agreement "
            "with the oracle is optimistic)."), earlier)
    nothing = usable.iloc[0:0]
    return nothing, _describe("none", (
        f"Nothing to train on yet for {model} (first step, no earlier profile): layers are ranked by the "
        "signal vote, the mean within-step rank of the twelve signals, each oriented so that higher "
        "means prune first."), nothing)


# --------------------------------------------------------------------------------------------- quality

def ranker_quality(pred: Sequence[float], oracle: Sequence[float], atol: float = 1e-12) -> dict[str, Any]:
    """How one step's ranking agrees with the oracle (both are scores: higher = better to remove).

    ``spearman``: rank correlation across the remaining layers (None when undefined: fewer than two
    layers or a constant side). ``top1_hit``: whether the layer the ranker would remove (arg-max of
    ``pred``, first on ties) is among the oracle's best (ties within ``atol`` all count).
    """
    p, o = np.asarray(pred, dtype=float), np.asarray(oracle, dtype=float)
    if p.ndim != 1 or p.shape != o.shape or p.size == 0:
        raise ValueError(f"ranker_quality: pred and oracle must be equal-length 1-d, got {p.shape} and {o.shape}")
    chosen = int(np.argmax(p))
    best = np.flatnonzero(o >= o.max() - atol)
    defined = p.size > 1 and np.ptp(p) > 0 and np.ptp(o) > 0
    rho = float(spearmanr(p, o).statistic) if defined else None
    return {"spearman": rho, "top1_hit": bool(chosen in best), "chosen": chosen, "best": best.tolist()}


def quality_by_step(profile: pd.DataFrame, scores: Sequence[float]) -> pd.DataFrame:
    """:func:`ranker_quality` for every (run, step) of a profile against its oracle accuracy.

    One row per step: run_id, step, n_layers, spearman, top1_hit, chosen_layer, best_layers (original
    layer indices). ``frame.top1_hit.mean()`` is the top-1 hit rate.
    """
    _require_columns(profile, [*GROUP_KEYS, "original_layer", ORACLE], "profile")
    frame = profile.assign(_score=np.asarray(scores, dtype=float))
    rows = []
    for (run_id, step), g in frame.groupby(list(GROUP_KEYS), sort=True):
        q = ranker_quality(g["_score"], g[ORACLE])
        layers = g["original_layer"].to_numpy()
        rows.append({"run_id": run_id, "step": step, "n_layers": len(g), "spearman": q["spearman"],
                     "top1_hit": q["top1_hit"], "chosen_layer": _plain(layers[q["chosen"]]),
                     "best_layers": [_plain(layers[i]) for i in q["best"]]})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------ one step, end to end

@dataclass(frozen=True)
class FusionConfig:
    """How a fusion strategy ranks one step (our defaults: the paper's hyperparameters are not public).

    ``min_samples_leaf`` 3 (sklearn's is 1): oracle accuracies on a few hundred validation examples are
    noisy, and leaves of three smooth them; the smaller trees also halve the SHAP time.
    """

    kind: str = "forest"
    normalise: str = "rank"
    depth_feature: bool = False
    target: str = "gap"
    n_estimators: int = 100
    min_samples_leaf: int = 3
    alpha: float = 1.0
    random_state: int = 0
    max_background: int = 100

    def __post_init__(self) -> None:
        o = "FusionConfig"
        check_choice(o, "kind", self.kind, ("forest", "linear"))
        check_choice(o, "normalise", self.normalise, NORMALISATIONS)
        if not isinstance(self.depth_feature, bool):
            raise ConfigError(f"{o}.depth_feature must be true or false, got {self.depth_feature!r}")
        check_choice(o, "target", self.target, TARGETS)
        check_int(o, "n_estimators", self.n_estimators, 1, 10_000)
        check_int(o, "min_samples_leaf", self.min_samples_leaf, 1, 10_000)
        check_float(o, "alpha", self.alpha, 0.0, 1e6)
        check_int(o, "random_state", self.random_state, 0, 2**31 - 1)
        check_int(o, "max_background", self.max_background, 1, 10_000)


def make_ranker(cfg: FusionConfig) -> FusionRanker:
    if cfg.kind == "linear":
        return LinearFusionRanker(alpha=cfg.alpha, random_state=cfg.random_state)
    return ForestFusionRanker(n_estimators=cfg.n_estimators, min_samples_leaf=cfg.min_samples_leaf,
                              random_state=cfg.random_state)


@dataclass(frozen=True)
class StepRanking:
    """The outcome of ranking one step: a score per remaining layer (higher = remove first), the protocol
    that produced it, and (when a ranker was trained) the ranker as JSON and its SHAP explanation."""

    scores: np.ndarray
    chosen_layer: Any
    protocol: dict[str, Any]
    ranker: dict[str, Any] | None
    explanation: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {"scores": self.scores.tolist(), "chosen_layer": _plain(self.chosen_layer),
                "protocol": self.protocol, "ranker": self.ranker, "explanation": self.explanation}


def rank_step(profiles: pd.DataFrame, step_rows: pd.DataFrame, cfg: FusionConfig = FusionConfig(),
              features: Sequence[str] = SIGNAL_FEATURES) -> StepRanking:
    """Rank the remaining layers of one step with a fusion ranker trained under the protocol.

    ``step_rows``: the signal rows of the current step (one run, one step; no oracle needed).
    ``profiles``: every stored profile row (it may include this run's earlier steps).
    """
    _require_columns(step_rows, ["run_id", "dataset", "model", "step", "original_layer"], "step_rows")
    keys = step_rows[["run_id", "dataset", "model", "step"]].drop_duplicates()
    if len(keys) != 1:
        raise ValueError(f"rank_step: step_rows must hold exactly one (run, step), got {len(keys)}")
    run_id, dataset, model, step = keys.iloc[0]
    train_rows, protocol = choose_training_rows(profiles, model, dataset, run_id, int(step))
    X = make_features(step_rows, features, cfg.normalise, cfg.depth_feature)
    layers = step_rows["original_layer"].to_numpy()
    if not len(train_rows):
        scores = signal_vote(X, features)
        return StepRanking(scores, layers[int(np.argmax(scores))], protocol, None, None)
    X_train = make_features(train_rows, features, cfg.normalise, cfg.depth_feature)
    ranker = make_ranker(cfg).fit(X_train, make_target(train_rows, cfg.target))
    scores = ranker.predict(X)
    explanation = explain(ranker, X_train, X, row_ids=list(layers), max_background=cfg.max_background,
                          random_state=cfg.random_state)
    return StepRanking(scores, layers[int(np.argmax(scores))], protocol, to_json(ranker), explanation)


__all__ = [
    "SIGNAL_FEATURES", "SIGNAL_PRUNE_END", "DEPTH_FEATURE", "LinearFusionRanker", "ForestFusionRanker",
    "NumpyForest", "TreeArrays", "ADDITIVITY_ATOL", "FusionConfig", "StepRanking", "make_features", "make_target",
    "relative_depth", "signal_vote", "choose_training_rows", "ranker_quality", "quality_by_step", "to_json",
    "from_json", "explain", "make_ranker", "rank_step",
]
