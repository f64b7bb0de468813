"""Label values -> integer codes and names, and raw ``text``/``label`` frames -> the clean labelled frame."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _label_sort_key(name: str) -> tuple[int, float, str]:
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def label_strings(values: pd.Series) -> pd.Series:
    """Label values as stripped strings; integer-valued floats lose their ``.0`` (1.0 -> "1"). NaN stays NaN."""
    if pd.api.types.is_bool_dtype(values):
        return values.map(lambda v: v if pd.isna(v) else str(bool(v)))
    if pd.api.types.is_numeric_dtype(values):
        present = values.dropna()
        whole = bool(np.all(np.mod(present.to_numpy(dtype=float), 1) == 0))
        text = present.astype("int64").astype(str) if whole else present.astype(str)
        return text.reindex(values.index)
    present = values.dropna()
    if pd.api.types.infer_dtype(present, skipna=True) in ("string", "empty"):
        return present.astype(str).str.strip().reindex(values.index)
    return values.map(lambda v: v if pd.isna(v) else str(v).strip())


def encode_labels(values: pd.Series) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer codes for label values and their names, sorted by name (numerically when all are numbers).

    ``values`` must have no missing entries (drop them first).
    """
    names = label_strings(values)
    order = tuple(sorted((str(n) for n in names.unique()), key=_label_sort_key))
    codes = pd.Categorical(names, categories=order).codes.astype(np.int64)
    return codes, order


def labelled_frame(raw: pd.DataFrame) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """``raw`` with ``text``, ``label`` (and maybe ``split``) -> stripped, non-blank, integer-coded."""
    text = raw["text"].astype("string").str.strip()
    labels = label_strings(raw["label"])
    keep = (text.notna() & (text != "") & labels.notna() & (labels != "")).to_numpy(dtype=bool)
    codes, names = encode_labels(labels[keep])
    frame = pd.DataFrame({"text": text[keep].astype(str).to_numpy(), "label": codes})
    if "split" in raw.columns:
        frame["split"] = raw["split"][keep].astype(str).to_numpy()
    return frame, names

