"""SHAP explanations of a fusion ranker, as JSON-ready lists, checked to be additive.

``shap.TreeExplainer`` (forest) or ``shap.LinearExplainer`` (linear), both interventional: a feature's value
is its contribution relative to the mean prediction over a background sample. The forest is handed to shap
as its own dictionary tree format, read from the fitted sklearn trees, with thresholds made float32-exact
(see :func:`_float32_floor`): fed the sklearn forest directly, shap's explanation misses the prediction by up
to 1e-3 on rank features, which the dashboard's waterfalls cannot afford.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted

from core.fusion.features import _plain
from core.fusion.rankers import ForestFusionRanker, FusionRanker

#: shap's interventional TreeSHAP accumulates in float32, so a forest's explanation is additive to
#: a few 1e-9 (measured up to 500 trees); this bound (1e-5 percentage points of accuracy) is checked
ADDITIVITY_ATOL = 1e-7
#: shap's interventional TreeSHAP indexes nodes with a C ``short``; bigger trees use the path-dependent one
_SHAP_MAX_NODES = 32767


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


class ShapTree(TypedDict):
    """One tree in shap's dictionary format."""

    children_left: np.ndarray
    children_right: np.ndarray
    children_default: np.ndarray
    features: np.ndarray
    thresholds: np.ndarray
    values: np.ndarray
    node_sample_weight: np.ndarray


class ShapForest(TypedDict):
    """A forest in shap's dictionary format (what ``shap.TreeExplainer`` takes as its model)."""

    trees: list[ShapTree]
    input_dtype: type
    objective: str
    tree_output: str


class Explanation(TypedDict):
    """SHAP values of a ranker on some rows, JSON-ready (:func:`explain`): which explainer, how features were
    perturbed, the base value, one row of values per explained row, the feature names, the rows' feature values,
    the ranker's predictions, the rows' ids (None when not given) and the background rows used (0: path
    dependent)."""

    explainer: str
    feature_perturbation: str
    base_value: float
    values: list[list[float]]
    feature_names: list[str]
    data: list[list[float]]
    prediction: list[float]
    row_ids: list[Any] | None
    n_background: int


def _shap_tree_model(forest: RandomForestRegressor) -> ShapForest:
    """shap's dictionary tree format of a fitted sklearn forest: leaf values divided by the tree count (the
    forest is a mean), inputs compared as float32 like sklearn, thresholds float32-exact."""
    scale = 1.0 / len(forest.estimators_)
    trees: list[ShapTree] = []
    for est in forest.estimators_:
        t = est.tree_
        trees.append({"children_left": t.children_left.astype(np.int64),
                      "children_right": t.children_right.astype(np.int64),
                      "children_default": t.children_left.astype(np.int64), "features": t.feature.astype(np.int64),
                      "thresholds": _float32_floor(t.threshold.astype(np.float64)),
                      "values": t.value[:, 0, 0].astype(np.float64)[:, None] * scale,
                      "node_sample_weight": t.weighted_n_node_samples.astype(np.float64)})
    return {"trees": trees, "input_dtype": np.float32, "objective": "squared_error", "tree_output": "raw_value"}


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
    import shap  # noqa: PLC0415 deferred: cost (shap, ~2 s at every page's first paint otherwise)

    model = _shap_tree_model(estimator.estimator_)
    small = max(len(t["features"]) for t in model["trees"]) <= _SHAP_MAX_NODES
    perturbation = "interventional" if small else "tree_path_dependent"
    explainer = shap.TreeExplainer(model, data=_as_float32(background) if small else None,
                                   feature_perturbation=perturbation)
    return explainer, perturbation, explainer.shap_values(_as_float32(data), check_additivity=True)


def explain(estimator: FusionRanker, X_background: Any, X: Any, *, row_ids: Sequence[Any] | None = None,
            max_background: int = 100, random_state: int = 0) -> Explanation:
    """SHAP values of ``estimator`` on the rows ``X``, as JSON-ready lists for the dashboard.

    Interventional against ``X_background`` (sampled down to ``max_background`` rows, seeded). Additive:
    ``base_value + sum(values[i]) == prediction[i]`` within :data:`ADDITIVITY_ATOL` (checked; a violation
    raises). A forest with a tree of more than 32,767 nodes is explained path-dependently (relative to its
    training data), as ``feature_perturbation`` records. ``row_ids`` (e.g. the original layer indices) label
    the rows, so "why was layer 7 chosen at step 3" is a lookup.
    """
    import shap  # noqa: PLC0415 deferred: cost (shap, ~2 s at every page's first paint otherwise)

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
    check_additive(base, values, prediction)
    return {"explainer": type(explainer).__name__, "feature_perturbation": perturbation,
            "base_value": base, "values": values.tolist(), "feature_names": _feature_names(estimator, X),
            "data": data.tolist(), "prediction": prediction.tolist(),
            "row_ids": None if row_ids is None else [_plain(r) for r in row_ids],
            "n_background": int(background.shape[0]) if perturbation == "interventional" else 0}


def check_additive(base: float, values: np.ndarray, prediction: np.ndarray) -> None:
    """Refuse an explanation whose waterfall would not end at the ranker's prediction (shap's own check
    is looser than the dashboard can afford)."""
    gap = np.abs(base + values.sum(axis=1) - prediction)
    if np.any(gap > ADDITIVITY_ATOL * np.maximum(1.0, np.abs(prediction))):
        raise RuntimeError(f"SHAP values are not additive: base + sum differs from the prediction by up to "
                           f"{gap.max():.3g}")



__all__ = ["ADDITIVITY_ATOL", "check_additive", "explain"]
