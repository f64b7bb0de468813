"""Fusion rankers: estimator contract, within-step features, protocol, quality, JSON persistence, SHAP.

Profiles are synthetic with a known law: the cost of removing a layer grows with its within-step rank of
``intensity`` and falls with its rank of ``redundancy_mi``; the other ten signals are noise. Datasets
differ in accuracy level and in the raw scale and offset of the signals, so only a ranker that works in
within-step terms can transfer between them.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from core.config import ConfigError
from core.fusion.rankers import (
    ADDITIVITY_ATOL, DEPTH_FEATURE, SIGNAL_FEATURES, ForestFusionRanker, FusionConfig, LinearFusionRanker, NumpyForest,
    choose_training_rows, explain, from_json, make_features, make_target, quality_by_step, rank_step,
    ranker_quality, signal_vote, to_json,
)


def _rank01(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x)) / max(len(x) - 1, 1)


def synthetic_profiles(datasets=("sst", "imdb", "ag"), model="tiny", n_layers=12, steps=5, seed=0,
                       noise=0.005, run_suffix="r0") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for d, dataset in enumerate(datasets):
        base, scale, offset = 0.95 - 0.15 * d, 10.0 ** (2 * d - 2), 5.0 * d
        remaining = list(range(n_layers))
        for step in range(steps):
            n = len(remaining)
            signals = rng.lognormal(size=(n, len(SIGNAL_FEATURES))) * scale + offset
            cost = _rank01(signals[:, 1]) + 0.5 * (1.0 - _rank01(signals[:, 4]))
            acc = base - 0.1 * (d + 1) * cost + noise * rng.normal(size=n)
            for i, layer in enumerate(remaining):
                rows.append({"run_id": f"{dataset}-{run_suffix}", "dataset": dataset, "model": model, "step": step,
                             "layer": i, "original_layer": layer, "n_layers": n,
                             **dict(zip(SIGNAL_FEATURES, signals[i])), "oracle_accuracy": acc[i],
                             "oracle_drop": base - acc[i]})
            remaining.pop(int(np.argmax(acc)))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def profiles() -> pd.DataFrame:
    return synthetic_profiles(steps=6)


def _split(profiles: pd.DataFrame, held_out: str = "ag"):
    train, test = profiles[profiles.dataset != held_out], profiles[profiles.dataset == held_out]
    return make_features(train), make_target(train), make_features(test), test


# ------------------------------------------------------------------------------------ estimator contract

@parametrize_with_checks([LinearFusionRanker(), ForestFusionRanker(n_estimators=5)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_linear_coef_is_in_feature_space(profiles):
    X, y, X_test, _ = _split(profiles)
    ranker = LinearFusionRanker(alpha=0.5, random_state=0).fit(X, y)
    np.testing.assert_allclose(ranker.predict(X_test), X_test.to_numpy() @ ranker.coef_ + ranker.intercept_,
                               rtol=0, atol=1e-12)
    # the law puts weight on intensity (costly when high) and redundancy (cheap when high)
    coef = dict(zip(SIGNAL_FEATURES, ranker.coef_))
    assert coef["intensity"] < -0.05 and coef["redundancy_mi"] > 0.02
    assert max(abs(v) for k, v in coef.items() if k not in ("intensity", "redundancy_mi")) < 0.02


def test_forest_importances_find_the_two_signals(profiles):
    X, y, _, _ = _split(profiles)
    ranker = ForestFusionRanker(n_estimators=30, random_state=0).fit(X, y)
    top_two = {SIGNAL_FEATURES[i] for i in np.argsort(ranker.feature_importances_)[-2:]}
    assert top_two == {"intensity", "redundancy_mi"}
    assert ranker.estimator_.n_estimators == 30


# ------------------------------------------------------------------------------------------- features

@pytest.mark.parametrize("normalise", ["rank", "zscore"])
def test_per_step_offset_and_scale_do_not_change_features(profiles, normalise):
    shifted = profiles.copy()
    group = shifted.groupby(["run_id", "step"]).ngroup().to_numpy()
    for k, key in enumerate(SIGNAL_FEATURES):
        shifted[key] = shifted[key] * (1.0 + group + k) + 1000.0 * group - 7.0 * k
    a, b = make_features(profiles, normalise=normalise), make_features(shifted, normalise=normalise)
    if normalise == "rank":
        pd.testing.assert_frame_equal(a, b)
    else:
        np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), atol=1e-9)
    assert list(a.columns) == list(SIGNAL_FEATURES)


@pytest.mark.parametrize("normalise", ["rank", "zscore"])
def test_features_use_only_their_own_step(profiles, normalise):
    whole = make_features(profiles, normalise=normalise)
    one = profiles[(profiles.run_id == "imdb-r0") & (profiles.step == 2)]
    pd.testing.assert_frame_equal(whole.loc[one.index], make_features(one, normalise=normalise))


def test_rank_features_are_scaled_ranks():
    step = pd.DataFrame({"run_id": "r", "step": 0, "intensity": [3.0, 1.0, 2.0, 2.0], "energy": 5.0})
    feats = make_features(step, features=("intensity", "energy"))
    assert feats["intensity"].tolist() == [1.0, 0.0, 0.5, 0.5]
    assert feats["energy"].tolist() == [0.5] * 4  # constant within the step: neutral, not NaN


@pytest.mark.parametrize("normalise, neutral", [("rank", 0.5), ("zscore", 0.0)])
def test_constant_signals_and_single_layer_give_no_nan(profiles, normalise, neutral):
    last = profiles[(profiles.run_id == "sst-r0") & (profiles.step == 0)].head(1)
    const = profiles[(profiles.run_id == "sst-r0") & (profiles.step == 1)].assign(energy=3.3)
    for frame in (last, const):
        feats = make_features(frame, normalise=normalise)
        assert np.isfinite(feats.to_numpy()).all()
    assert make_features(last, normalise=normalise).to_numpy().tolist() == [[neutral] * 12]
    assert set(make_features(const, normalise=normalise)["energy"]) == {neutral}


def test_nan_signal_is_refused(profiles):
    bad = profiles.copy()
    bad.loc[bad.index[3], "taylor"] = np.nan
    with pytest.raises(ValueError, match="taylor"):
        make_features(bad)


def test_depth_feature_off_by_default_and_relative(profiles):
    assert DEPTH_FEATURE not in make_features(profiles)
    feats = make_features(profiles, depth_feature=True)
    depth = feats[DEPTH_FEATURE]
    np.testing.assert_allclose(depth, profiles["original_layer"] / 11.0)
    assert depth.min() == 0.0 and depth.max() == 1.0
    explicit = make_features(profiles.assign(n_original=23), depth_feature=True)[DEPTH_FEATURE]
    np.testing.assert_allclose(explicit, profiles["original_layer"] / 22.0)


def test_target_gap_is_zero_for_best_and_ignores_dataset_level(profiles):
    target = make_target(profiles)
    best = profiles.groupby(["run_id", "step"])["oracle_accuracy"].transform("max") == profiles["oracle_accuracy"]
    assert (target[best] == 0).all() and (target[~best] < 0).all()
    lifted = profiles.assign(oracle_accuracy=profiles.oracle_accuracy + np.where(profiles.dataset == "ag", 0.2, 0))
    np.testing.assert_allclose(make_target(lifted), target, atol=1e-12)
    ranks = make_target(profiles, "rank")
    assert ranks[best].eq(1.0).all() and ranks.between(0, 1).all()


# -------------------------------------------------------------------------------- recovery of the law

@pytest.mark.parametrize("make", [lambda: LinearFusionRanker(random_state=0),
                                  lambda: ForestFusionRanker(n_estimators=40, random_state=0)],
                         ids=["linear", "forest"])
def test_rankers_recover_the_law_on_a_held_out_dataset(profiles, make):
    X, y, X_test, test = _split(profiles)
    real = quality_by_step(test, make().fit(X, y).predict(X_test))
    shuffled_y = np.random.default_rng(1).permutation(y.to_numpy())
    control = quality_by_step(test, make().fit(X, shuffled_y).predict(X_test))
    assert real.spearman.mean() > 0.8
    assert real.spearman.mean() > control.spearman.mean() + 0.5
    assert real.top1_hit.mean() >= 0.6 > control.top1_hit.mean()


def test_signal_vote_orients_each_signal(profiles):
    step = profiles[(profiles.run_id == "sst-r0") & (profiles.step == 0)]
    feats = make_features(step)
    lowest_everywhere = pd.DataFrame({k: feats["intensity"] for k in SIGNAL_FEATURES})
    flipped = lowest_everywhere.copy()
    for k in ("redundancy_mi", "attention_entropy"):  # pruned from the highest end
        flipped[k] = 1.0 - flipped[k]
    vote = signal_vote(flipped)
    assert int(np.argmax(vote)) == int(np.argmin(feats["intensity"]))
    # ten "lowest" signals give -r, the two flipped "highest" ones give 1 - r: mean = 1/6 - r
    np.testing.assert_allclose(vote, 1.0 / 6.0 - feats["intensity"], atol=1e-12)
    # without flipping, the two "highest" signals vote for the opposite end
    assert not np.allclose(signal_vote(lowest_everywhere), vote)


# ------------------------------------------------------------------------------------------- protocol

def test_protocol_leave_one_dataset_out(profiles):
    rows, info = choose_training_rows(profiles, "tiny", "imdb", "imdb-r0", 3)
    assert info["protocol"] == "leave_one_dataset_out"
    assert set(rows.dataset) == {"sst", "ag"} and "imdb" not in set(rows.dataset)
    assert info["n_rows"] == len(rows) == (profiles.dataset != "imdb").sum()
    assert info["datasets"] == ["ag", "sst"] and "imdb" in info["description"]
    assert info["fallback"] is None


def test_protocol_within_run_fallback(profiles):
    mine = profiles[profiles.dataset == "sst"]
    other_model = synthetic_profiles(datasets=("imdb",), model="other", seed=3)
    rows, info = choose_training_rows(pd.concat([mine, other_model]), "tiny", "sst", "sst-r0", 3)
    assert info["protocol"] == "within_run"
    assert sorted(set(rows.step)) == [0, 1, 2] and set(rows.run_id) == {"sst-r0"}
    assert info["n_rows"] == 12 + 11 + 10 and info["datasets"] == ["sst"]
    assert "No other dataset" in info["description"]


def test_protocol_nothing_to_train_on(profiles):
    mine = profiles[profiles.dataset == "sst"]
    rows, info = choose_training_rows(mine, "tiny", "sst", "sst-r0", 0)
    assert len(rows) == 0 and info["protocol"] == "none" and info["n_rows"] == 0
    assert info["fallback"] == "signal_vote" and "signal vote" in info["description"]


def test_protocol_skips_rows_without_oracle(profiles):
    no_oracle = profiles.assign(oracle_accuracy=np.where(profiles.dataset == "sst", profiles.oracle_accuracy, np.nan))
    rows, info = choose_training_rows(no_oracle, "tiny", "sst", "sst-r0", 2)
    assert info["protocol"] == "within_run" and set(rows.step) == {0, 1}


def test_rank_step_end_to_end(profiles):
    step_rows = profiles[(profiles.run_id == "ag-r0") & (profiles.step == 4)].drop(columns=["oracle_accuracy"])
    cfg = FusionConfig(kind="forest", n_estimators=20, max_background=50)
    ranking = rank_step(profiles, step_rows, cfg)
    assert ranking.protocol["protocol"] == "leave_one_dataset_out"
    assert ranking.explanation["row_ids"] == step_rows.original_layer.tolist()
    assert ranking.explanation["n_background"] == 50
    np.testing.assert_array_equal(from_json(ranking.ranker).predict(make_features(step_rows)), ranking.scores)
    json.dumps(ranking.to_dict())
    first = profiles[(profiles.run_id == "sst-r0") & (profiles.step == 0)]
    fallback = rank_step(first, first)
    assert fallback.protocol["protocol"] == "none" and fallback.ranker is None
    np.testing.assert_array_equal(fallback.scores, signal_vote(make_features(first)))


def test_fusion_config_names_the_bad_field():
    with pytest.raises(ConfigError, match="FusionConfig.kind"):
        FusionConfig(kind="svm")
    with pytest.raises(ConfigError, match="FusionConfig.n_estimators"):
        FusionConfig(n_estimators=0)


# -------------------------------------------------------------------------------------------- quality

def test_quality_perfect_reversed_and_ties():
    oracle = [0.70, 0.90, 0.80, 0.60]
    perfect = ranker_quality([2.0, 4.0, 3.0, 1.0], oracle)
    assert perfect["spearman"] == pytest.approx(1.0) and perfect["top1_hit"] and perfect["chosen"] == 1
    reversed_ = ranker_quality([3.0, 1.0, 2.0, 4.0], oracle)
    assert reversed_["spearman"] == pytest.approx(-1.0) and not reversed_["top1_hit"]
    tied = ranker_quality([0.0, 0.1, 0.9, 0.2], [0.5, 0.8, 0.8, 0.1])
    assert tied["top1_hit"] and tied["best"] == [1, 2]
    single = ranker_quality([0.3], [0.7])
    assert single["spearman"] is None and single["top1_hit"]


def test_quality_by_step_reports_original_layers(profiles):
    test = profiles[profiles.dataset == "ag"]
    table = quality_by_step(test, test["oracle_accuracy"])
    assert len(table) == 6 and table.top1_hit.all() and np.allclose(table.spearman, 1.0)
    assert (table.chosen_layer == table.best_layers.str[0]).all()


# ---------------------------------------------------------------------------------------- persistence

@pytest.mark.parametrize("make", [lambda: LinearFusionRanker(alpha=0.3, random_state=0),
                                  lambda: LinearFusionRanker(alpha=0.0),
                                  lambda: ForestFusionRanker(n_estimators=15, min_samples_leaf=2, random_state=0)],
                         ids=["ridge", "least_squares", "forest"])
def test_json_round_trip_is_exact(profiles, make):
    X, y, X_test, _ = _split(profiles)
    ranker = make().fit(X, y)
    stored = json.loads(json.dumps(to_json(ranker)))
    loaded = from_json(stored)
    assert type(loaded) is type(ranker) and loaded.get_params() == ranker.get_params()
    for frame in (X_test, X):
        np.testing.assert_array_equal(loaded.predict(frame), ranker.predict(frame))
    if isinstance(ranker, ForestFusionRanker):
        assert isinstance(loaded.estimator_, NumpyForest)
        np.testing.assert_array_equal(loaded.feature_importances_, ranker.feature_importances_)
    else:
        np.testing.assert_array_equal(loaded.coef_, ranker.coef_)
    assert list(loaded.feature_names_in_) == list(SIGNAL_FEATURES)


def test_from_json_rejects_malformed_input(profiles):
    X, y, _, _ = _split(profiles)
    good = json.loads(json.dumps(to_json(ForestFusionRanker(n_estimators=2, random_state=0).fit(X, y))))
    loop = json.loads(json.dumps(good))
    loop["trees"][0]["children_left"][0] = 0  # the root pointing at itself would never terminate
    bad_feature = json.loads(json.dumps(good))
    bad_feature["trees"][1]["feature"][0] = 99
    for data, match in ((loop, "tree 0"), (bad_feature, "tree 1"), ({**good, "format": "pickle"}, "format"),
                        ({**good, "params": {"n_jobs": 8}}, "params"), ({**good, "kind": "svm"}, "kind")):
        with pytest.raises(ValueError, match=match):
            from_json(data)


# ----------------------------------------------------------------------------------------------- SHAP

@pytest.mark.parametrize("make, name", [(lambda: LinearFusionRanker(random_state=0), "LinearExplainer"),
                                        (lambda: ForestFusionRanker(n_estimators=20, random_state=0),
                                         "TreeExplainer")], ids=["linear", "forest"])
def test_shap_is_additive_and_json_ready(profiles, make, name):
    X, y, X_test, test = _split(profiles)
    ranker = make().fit(X, y)
    for model in (ranker, from_json(json.loads(json.dumps(to_json(ranker))))):
        # this background holds rows on which shap, unless fed float32-exact data, breaks additivity
        out = explain(model, X, X_test, row_ids=test.original_layer.to_numpy(), max_background=100)
        json.dumps(out)
        assert out["explainer"] == name and out["n_background"] == 100
        values = np.asarray(out["values"])
        assert values.shape == X_test.shape and out["feature_names"] == list(SIGNAL_FEATURES)
        np.testing.assert_allclose(out["base_value"] + values.sum(axis=1), ranker.predict(X_test),
                                   rtol=0, atol=ADDITIVITY_ATOL if name == "TreeExplainer" else 1e-12)
        np.testing.assert_allclose(out["prediction"], ranker.predict(X_test), rtol=0, atol=0)
        importance = np.abs(values).mean(axis=0)
        assert {SIGNAL_FEATURES[i] for i in np.argsort(importance)[-2:]} == {"intensity", "redundancy_mi"}


def test_linear_shap_is_coef_times_centred_value(profiles):
    X, y, X_test, _ = _split(profiles)
    ranker = LinearFusionRanker(random_state=0).fit(X, y)
    background = X.iloc[:40]
    out = explain(ranker, background, X_test)
    expected = (X_test.to_numpy() - background.to_numpy().mean(axis=0)) * ranker.coef_
    np.testing.assert_allclose(out["values"], expected, atol=1e-12)


def test_explain_checks_feature_count(profiles):
    X, y, X_test, _ = _split(profiles)
    ranker = LinearFusionRanker().fit(X, y)
    with pytest.raises(ValueError, match="features"):
        explain(ranker, X.iloc[:, :5], X_test)


def test_float32_floor_keeps_every_float32_decision():
    from core.fusion.rankers import _float32_floor

    rng = np.random.default_rng(0)
    x = rng.random(2000).astype(np.float32)
    below, above = x[:-1].astype(np.float64), x[1:].astype(np.float64)
    thresholds = (below + above) / 2.0  # sklearn-style midpoints, mostly not float32-representable
    floored = _float32_floor(thresholds)
    assert np.array_equal(floored.astype(np.float32).astype(np.float64), floored)
    decisions = x[:, None] <= thresholds[None, :]
    assert np.array_equal(decisions, x[:, None] <= floored[None, :])


def test_huge_trees_fall_back_to_path_dependent_shap(profiles, monkeypatch):
    import core.fusion.rankers

    monkeypatch.setattr(core.fusion.rankers, "_SHAP_MAX_NODES", 5)
    X, y, X_test, _ = _split(profiles)
    ranker = ForestFusionRanker(n_estimators=10, random_state=0).fit(X, y)
    out = explain(ranker, X, X_test)
    assert out["feature_perturbation"] == "tree_path_dependent" and out["n_background"] == 0
    np.testing.assert_allclose(out["base_value"] + np.sum(out["values"], axis=1), ranker.predict(X_test),
                               rtol=0, atol=ADDITIVITY_ATOL)
