"""What the fusion rankers see: profile rows, their within-step features, the training target, the signal vote.

A **profile row** is one (run, step, remaining layer): the twelve raw signals, the oracle (validation
accuracy and loss with that layer removed, no fine-tuning) and where the layer sat. :func:`profile_rows`
builds them from one step's signal and oracle tables; runs store them and the rankers train on them.

Conventions:

* **score**: higher means "better to remove next" (the layer whose removal hurts least). Ranker
  predictions, :func:`signal_vote` and the training target all follow it, so the pruned layer is always
  the arg-max of the score within a step.
* **Features** (:func:`make_features`) are normalised *within each (run, step) group* across the layers
  still present, so a ranker trained on one model, dataset or depth can score another. Default: ``rank``.
* **Target** (:func:`make_target`) is, by default, the ``gap``: the oracle accuracy of removing this layer
  minus that of the best candidate of the same step (0 for the best layer, negative otherwise).

Two oracle differences, two names: :data:`ORACLE_GAP` (``oracle_gap_to_best``: the step's best oracle
accuracy minus this layer's, >= 0) and :data:`ORACLE_DROP` (``oracle_drop_from_unpruned``: the accuracy of
the model before this step's removal minus this layer's). Profiles stored before the rename carry the latter
as ``oracle_drop``; :func:`upgrade_profiles` renames it on read.

One KL, named by its reference model: :data:`ORACLE_KL` (``oracle_kl_to_current``) is KL(the step's current
model || the model without this layer), the oracle table's ``kl_to_current``; at step k the current model is the
one after k - 1 removals and their fine-tuning, so from step 2 on it is not the original teacher. The per-example
KL of the bank's outcomes and of the runs' outcome files is ``kl_to_teacher``: against the original, unpruned
teacher. The two agree at step 1 only. Profiles and banks from before the rename call the first ``oracle_kl``
(read by :func:`upgrade_profiles`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from core.config import check_choice
from core.signals.registry import SIGNAL_KEYS, SIGNALS

#: the fusion features: the twelve signals, in registry order (one source of truth: core.signals.registry)
SIGNAL_FEATURES: tuple[str, ...] = SIGNAL_KEYS

#: which end of each signal is pruned first ("lowest" or "highest"), read from the registry; used only by
#: the :func:`signal_vote` fallback.
SIGNAL_PRUNE_END: Mapping[str, str] = MappingProxyType({k: SIGNALS[k].direction for k in SIGNAL_KEYS})

GROUP_KEYS: tuple[str, str] = ("run_id", "step")
DEPTH_FEATURE = "relative_depth"
NORMALISATIONS: tuple[str, ...] = ("rank", "zscore")
TARGETS: tuple[str, ...] = ("auto", "kl", "gap", "rank")
ORACLE = "oracle_accuracy"
ORACLE_LOSS = "oracle_loss"
#: mean KL divergence from the step's current model to the model without this layer (core.oracle's
#: ``kl_to_current``); not against the original teacher (that is the per-example ``kl_to_teacher``)
ORACLE_KL = "oracle_kl_to_current"
#: the oracle table's name for that KL (core.oracle.KL_TO_CURRENT), then its name before the rename
ORACLE_TABLE_KL: tuple[str, str] = ("kl_to_current", "kl")
#: the step's best oracle accuracy minus this layer's (0 for the best removal)
ORACLE_GAP = "oracle_gap_to_best"
#: the accuracy of the model the step starts from minus this layer's oracle accuracy (core.oracle's accuracy_drop)
ORACLE_DROP = "oracle_drop_from_unpruned"
#: where a profile row comes from: "store" (the user's own runs) or a shipped bank (e.g. "bank v1")
SOURCE = "source"
STORE_SOURCE = "store"
#: column names of profiles stored by older versions -> today's names
LEGACY_PROFILE_COLUMNS: Mapping[str, str] = MappingProxyType({"oracle_drop": ORACLE_DROP, "oracle_kl": ORACLE_KL})


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; it has {list(frame.columns)}")


def _require_finite(frame: pd.DataFrame, what: str) -> None:
    bad = ~np.isfinite(frame.to_numpy(dtype=float))
    if bad.any():
        cols = sorted({frame.columns[j] for j in np.nonzero(bad)[1]})
        raise ValueError(f"{what} has {int(bad.sum())} missing or infinite value(s) in column(s) {cols}")


def _plain(value: Any) -> Any:
    """A numpy scalar as the matching Python scalar (JSON-ready)."""
    return value.item() if isinstance(value, np.generic) else value


def rename_legacy(profiles: pd.DataFrame) -> pd.DataFrame:
    """Profile (or bank) rows with the column names of older versions replaced by today's
    (:data:`LEGACY_PROFILE_COLUMNS`); a frame holding both (old and new rows concatenated) keeps today's column,
    filled from the old one where it is empty. Idempotent; nothing else changes."""
    renames = {old: new for old, new in LEGACY_PROFILE_COLUMNS.items()
               if old in profiles.columns and new not in profiles.columns}
    out = profiles.rename(columns=renames) if renames else profiles
    both = [(old, new) for old, new in LEGACY_PROFILE_COLUMNS.items() if old in out.columns and new in out.columns]
    if both:
        out = out.assign(**{new: out[new].fillna(out[old]) for old, new in both}).drop(columns=[o for o, _ in both])
    return out


def upgrade_profiles(profiles: pd.DataFrame) -> pd.DataFrame:
    """Profiles in today's vocabulary: legacy column names renamed, a missing ``source`` filled as "store".

    The one place where old stored profiles are read into the current names (idempotent; :func:`rename_legacy`).
    """
    out = rename_legacy(profiles)
    if SOURCE not in out.columns:
        out = out.assign(**{SOURCE: STORE_SOURCE})
    elif out[SOURCE].isna().any():
        out = out.assign(**{SOURCE: out[SOURCE].fillna(STORE_SOURCE)})
    return out


def profile_rows(signals: pd.DataFrame, oracle: pd.DataFrame, *, run_id: str, dataset: str, model: str,
                 step: int, n_original: int) -> pd.DataFrame:
    """One step's profile rows: the signal table (one row per remaining layer) joined with the oracle table
    (:func:`core.oracle.compute_oracle`: ``accuracy``, ``loss``, ``accuracy_drop`` and ``kl_to_current`` per
    removed layer; a stored table that calls the KL ``kl`` is read too)."""
    _require_columns(oracle, ["original_layer", "accuracy", "loss", "accuracy_drop"], "oracle table")
    kl = next((c for c in ORACLE_TABLE_KL if c in oracle.columns), None)
    cols = ["original_layer", "accuracy", "loss", "accuracy_drop"] + ([kl] if kl else [])
    rows = signals.merge(oracle[cols], on="original_layer")
    rows = rows.rename(columns={"accuracy": ORACLE, "loss": ORACLE_LOSS, "accuracy_drop": ORACLE_DROP,
                                **({kl: ORACLE_KL} if kl else {})})
    rows[ORACLE_GAP] = rows[ORACLE].max() - rows[ORACLE]
    return rows.assign(n_layers=len(rows), n_original=n_original, run_id=run_id, dataset=dataset, model=model,
                       step=step)


def _groups(frame: pd.DataFrame | pd.Series, profile: pd.DataFrame) -> Any:
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


def resolve_target(profile: pd.DataFrame, kind: str = "auto") -> str:
    """``auto`` (our default) is ``kl`` when every row carries a finite oracle KL, else ``gap`` (profiles
    stored before the oracle measured KL, such as a bank grown by an older version)."""
    check_choice("make_target", "kind", kind, TARGETS)
    if kind != "auto":
        return kind
    has_kl = ORACLE_KL in profile.columns and bool(np.isfinite(profile[ORACLE_KL].astype(float)).all())
    return "kl" if has_kl and len(profile) else "gap"


def make_target(profile: pd.DataFrame, kind: str = "auto") -> pd.Series:
    """The training target, a score (higher = better to remove) comparable across datasets.

    ``kl`` (what ``auto``, our default, picks when the rows carry it): the oracle KL divergence scaled within
    its step to [-1, 0], negated: 0 for the removal that changes the model's predictions least, -1 for the one
    that changes them most (KL's scale differs across datasets; its shape within a step is kept). Chosen by
    measurement: the order of the removals by KL reproduces on two halves of the validation rows and across
    seeds far more often than the order by accuracy (data/reference/oracle_reliability.csv), so a ranker
    trained on it learns less noise.

    ``gap`` (default): oracle accuracy minus the best oracle accuracy of the same step (``-oracle_gap_to_best``),
    so 0 for the best layer to remove and e.g. -0.12 for a layer whose removal costs 12 points more. The
    dataset's accuracy level cancels (transfers across datasets) while the size of a mistake is kept: a
    near-tie between two layers barely matters, a layer that collapses the model matters a lot, and the
    forest spends its splits accordingly. ``rank``: the within-step rank of the oracle accuracy in [0, 1]
    (every step weighs the same, but a 0.1-point difference looks like a 30-point one).
    """
    kind = resolve_target(profile, kind)
    if kind == "kl":
        _require_columns(profile, [*GROUP_KEYS, ORACLE_KL], "profile")
        kl = profile[[ORACLE_KL]].astype(float)
        _require_finite(kl, "profile oracle KL")
        lo = _groups(kl[ORACLE_KL], profile).transform("min")
        span = (_groups(kl[ORACLE_KL], profile).transform("max") - lo).replace(0.0, 1.0)
        return (-(kl[ORACLE_KL] - lo) / span).rename("target")
    _require_columns(profile, [*GROUP_KEYS, ORACLE], "profile")
    acc = profile[[ORACLE]].astype(float)
    _require_finite(acc, "profile oracle")
    if kind == "rank":
        return _within_rank(acc, profile)[ORACLE].rename("target")
    return (acc[ORACLE] - _groups(acc[ORACLE], profile).transform("max")).rename("target")


def signal_vote(features: pd.DataFrame, keys: Sequence[str] = SIGNAL_FEATURES,
                prune_end: Mapping[str, str] = SIGNAL_PRUNE_END) -> np.ndarray:
    """The untrained fallback score: the mean within-step rank of the twelve signals (a Borda count).

    Each normalised signal is oriented so that higher means "prune first" (``-rank`` for a signal whose
    lowest layer is pruned first, ``rank`` for highest) and the twelve are averaged. Used when there is no
    profile to train on (the first step of the first run for a model).
    """
    _require_columns(features, keys, "features")
    for key in keys:
        check_choice("signal_vote.prune_end", key, prune_end.get(key), ("lowest", "highest"))
    oriented = [features[k] if prune_end[k] == "highest" else -features[k] for k in keys]
    # -x (not 1 - x) works for rank and zscore alike and orders layers identically within a step
    return np.mean(np.column_stack(oriented), axis=1)


__all__ = [
    "DEPTH_FEATURE", "GROUP_KEYS", "LEGACY_PROFILE_COLUMNS", "NORMALISATIONS", "ORACLE", "ORACLE_DROP", "ORACLE_GAP",
    "ORACLE_KL", "ORACLE_LOSS", "SIGNAL_FEATURES", "SIGNAL_PRUNE_END", "SOURCE", "STORE_SOURCE", "TARGETS",
    "make_features", "make_target", "profile_rows", "relative_depth", "resolve_target", "signal_vote",
    "upgrade_profiles",
]
