"""Intervals straight from stored per-example outcomes (``core.train.per_example`` frames, read with
``RunStore.read_outcomes``): one model's accuracy and macro-F1, and the paired difference between two models
evaluated on the same examples (matched on ``example``; the labels must agree, or they were not the same
examples)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.stats.intervals import (
    LEVEL,
    RESAMPLES,
    Interval,
    PairedDifference,
    accuracy_interval,
    macro_f1_interval,
    paired_accuracy_difference,
    paired_macro_f1_difference,
    paired_mean_difference,
)

_NEEDED = ("example", "label", "pred")


def _check(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    missing = [c for c in _NEEDED if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} is not a per-example outcomes frame: it lacks {', '.join(missing)}")
    if frame["example"].duplicated().any():
        raise ValueError(f"{name} repeats example ids (an oracle file holds one block per candidate: "
                         "pick one with oracle_candidate first)")
    return frame


def correct(frame: pd.DataFrame) -> np.ndarray:
    """Whether each example was predicted right (bool per row)."""
    return (frame["pred"].to_numpy() == frame["label"].to_numpy())


def accuracy_of(frame: pd.DataFrame, level: float = LEVEL) -> Interval:
    """The accuracy of one evaluation with its Wilson interval."""
    return accuracy_interval(correct(_check(frame, "outcomes")), level)


def macro_f1_of(frame: pd.DataFrame, level: float = LEVEL, *, n_resamples: int = RESAMPLES,
                seed: int = 0) -> Interval:
    """The macro-F1 of one evaluation with its bootstrap interval over examples."""
    f = _check(frame, "outcomes")
    return macro_f1_interval(f["label"].to_numpy(), f["pred"].to_numpy(), level, n_resamples=n_resamples, seed=seed)


def aligned(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``a`` and ``b`` on the same examples in the same order (ids sorted). Raises when their example ids or
    labels differ: a paired comparison needs both models scored on the very same rows."""
    a, b = _check(a, "outcomes A"), _check(b, "outcomes B")
    a, b = a.sort_values("example", kind="stable"), b.sort_values("example", kind="stable")
    if not np.array_equal(a["example"].to_numpy(), b["example"].to_numpy()):
        raise ValueError(f"the two evaluations cover different examples ({len(a)} and {len(b)} rows): a paired "
                         "interval needs the same split of the same task")
    if not np.array_equal(a["label"].to_numpy(), b["label"].to_numpy()):
        raise ValueError("the two evaluations disagree on the labels of the same example ids: they come from "
                         "different splits or tasks")
    return a.reset_index(drop=True), b.reset_index(drop=True)


def paired_accuracy_of(a: pd.DataFrame, b: pd.DataFrame, level: float = LEVEL, *, n_resamples: int = RESAMPLES,
                       seed: int = 0) -> PairedDifference:
    """Accuracy of A minus accuracy of B on the same examples (paired bootstrap, McNemar counts)."""
    a, b = aligned(a, b)
    return paired_accuracy_difference(correct(a), correct(b), level, n_resamples=n_resamples, seed=seed)


def paired_macro_f1_of(a: pd.DataFrame, b: pd.DataFrame, level: float = LEVEL, *, n_resamples: int = RESAMPLES,
                       seed: int = 0) -> Interval:
    """Macro-F1 of A minus macro-F1 of B on the same examples (paired bootstrap)."""
    a, b = aligned(a, b)
    return paired_macro_f1_difference(a["label"].to_numpy(), a["pred"].to_numpy(), b["pred"].to_numpy(), level,
                                      n_resamples=n_resamples, seed=seed)


def paired_mean_of(a: pd.DataFrame, b: pd.DataFrame, column: str = "loss", level: float = LEVEL, *,
                   n_resamples: int = RESAMPLES, seed: int = 0) -> Interval:
    """Mean of ``column`` (``loss`` or ``kl_to_teacher``) of A minus B on the same examples (paired bootstrap)."""
    a, b = aligned(a, b)
    return paired_mean_difference(a[column].to_numpy(dtype=float), b[column].to_numpy(dtype=float), level,
                                  n_resamples=n_resamples, seed=seed)


def oracle_candidate(frame: pd.DataFrame, original_layer: int) -> pd.DataFrame:
    """The outcomes of one oracle candidate (the model with ``original_layer`` removed) from an oracle file."""
    if "original_layer" not in frame.columns:
        raise ValueError("not an oracle outcomes file: it has no original_layer column")
    part = frame[frame["original_layer"] == original_layer]
    if part.empty:
        raise ValueError(f"the oracle file has no candidate removing layer {original_layer}; it has "
                         f"{sorted(frame['original_layer'].unique().tolist())}")
    return part.drop(columns="original_layer").reset_index(drop=True)
