"""The Hugging Face hub: the paper's datasets and any other hub dataset with explicit columns.

:func:`fetch_hub` is the network boundary (``datasets.load_dataset``); every failure there, and offline mode,
becomes a :class:`~core.data.batches.DataError` that names an offline alternative.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from core.config import ConfigError
from core.data.batches import DataError
from core.data.labels import labelled_frame
from core.data.registry import DATASETS, DatasetSpec, HubColumns, LoadedDataset, offline_dataset_names

#: rows kept per hub split (seeded sample): the pipeline caps every split far below this anyway
HUB_MAX_ROWS_PER_SPLIT = 50_000


def hub_offline() -> str | None:
    """The environment variable that puts the hub offline, if one does."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "0").strip().lower() in ("1", "true", "yes", "on"):
            return var
    return None


def _offline_hint() -> str:
    return ("Use an embedded dataset instead (" + ", ".join(offline_dataset_names()) + ") or upload a CSV.")


def fetch_hub(columns: HubColumns, split: str | None = None) -> Any:
    """The network boundary: ``datasets.load_dataset`` for one hub dataset, every failure a DataError."""
    var = hub_offline()
    if var:
        raise DataError(f"Cannot load {columns.name!r} from the Hugging Face hub: offline mode ({var}=1). "
                        + _offline_hint())
    import datasets  # noqa: PLC0415 deferred: cost (datasets)

    try:
        return datasets.load_dataset(columns.name, columns.config, split=split)
    except Exception as exc:  # connection errors, unknown ids, gated repos, script-only repos: all end here
        first = (str(exc).splitlines() or [""])[0][:200]
        raise DataError(f"Cannot load {columns.name!r} from the Hugging Face hub ({type(exc).__name__}: "
                        f"{first}). Check the name and your network. " + _offline_hint()) from exc


def _split_role(name: str) -> str | None:
    """Official hub splits -> our pools: test stays test, train/validation become the training pool."""
    low = name.lower()
    if low.startswith("test"):
        return "test"
    if low.startswith(("train", "valid", "dev")):
        return "train"
    return None  # e.g. IMDB's 'unsupervised'


def _check_columns(ds: Any, columns: HubColumns) -> None:
    wanted = [*columns.text_columns, columns.label_column]
    if columns.label_names_column:
        wanted.append(columns.label_names_column)
    missing = [c for c in wanted if c not in ds.column_names]
    if missing:
        raise DataError(f"Hub dataset {columns.name!r} has no column(s) {', '.join(map(repr, missing))}; its "
                        f"columns are {', '.join(ds.column_names)}. Pass the right text_column/label_column.")


def _hub_part(ds: Any, columns: HubColumns, max_rows: int, seed: int) -> pd.DataFrame:
    """One hub split -> raw ``text``/``label`` frame (label still the hub's value), sampled to ``max_rows``."""
    _check_columns(ds, columns)
    if len(ds) > max_rows:
        ds = ds.shuffle(seed=seed).select(range(max_rows))
    keep = [*columns.text_columns, columns.label_column] + ([columns.label_names_column]
                                                            if columns.label_names_column else [])
    table = ds.select_columns(list(dict.fromkeys(keep))).to_pandas()
    parts = [table[c].fillna("").astype(str).str.strip() for c in columns.text_columns]
    text = [" ".join(p for p in row if p) for row in zip(*parts)]
    return pd.DataFrame({"text": text, "label": table[columns.label_column].to_numpy(),
                         **({"names": table[columns.label_names_column].to_numpy()}
                            if columns.label_names_column else {})})


def _class_label_names(ds: Any, column: str) -> list[str] | None:
    feature = ds.features.get(column)
    names = getattr(feature, "names", None)
    return [str(n) for n in names] if names else None


def _name_labels(raw: pd.DataFrame, ds: Any, columns: HubColumns) -> pd.DataFrame:
    """Replace hub label values by their names: ClassLabel names, else the names column, else as they are.
    Unlabelled rows (ClassLabel -1, as in IMDB's test-time placeholders) are dropped."""
    names = _class_label_names(ds, columns.label_column)
    if names:
        codes = pd.to_numeric(raw["label"], errors="coerce")
        raw = raw[(codes >= 0) & (codes < len(names))]
        return raw.assign(label=[names[int(c)] for c in raw["label"]])
    if columns.label_names_column:
        return raw.assign(label=raw.pop("names"))
    return raw


def hub_frame(data: Any, columns: HubColumns, max_rows_per_split: int = HUB_MAX_ROWS_PER_SPLIT,
              seed: int = 0) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """A hub ``Dataset`` or ``DatasetDict`` (any mapping of split name -> Dataset) -> (frame, label names).

    With several splits, a ``test`` split becomes ``split == "test"`` and train/validation the training
    pool; other splits (IMDB's unlabelled 'unsupervised') are skipped. Each split keeps at most
    ``max_rows_per_split`` rows (seeded sample).
    """
    named = dict(data) if isinstance(data, Mapping) else {"": data}
    pieces = []
    for name, ds in named.items():
        role = _split_role(name) if name else "train"
        if role is not None:
            part = _name_labels(_hub_part(ds, columns, max_rows_per_split, seed), ds, columns)
            pieces.append(part.drop(columns=["names"], errors="ignore").assign(split=role))
    if not pieces:
        raise DataError(f"Hub dataset {columns.name!r} has no train/validation/test split (it has "
                        f"{', '.join(named)}). Pass split='<name>' to load_hub_dataset.")
    raw = pd.concat(pieces, ignore_index=True)
    if set(raw["split"]) != {"train", "test"}:  # one pool only: make_splits carves the test set itself
        raw = raw.drop(columns="split")
    frame, names = labelled_frame(raw)
    if frame.empty:
        raise DataError(f"Hub dataset {columns.name!r} has no labelled rows with text in columns "
                        f"{', '.join(columns.text_columns)}. Check the column names.")
    return frame, names


def _hub_spec(columns: HubColumns, num_classes: int, rows: int) -> DatasetSpec:
    for spec in DATASETS.values():
        if spec.hub == columns:
            return spec
    return DatasetSpec(f"hub:{columns.name}", f"{columns.name} (hub)", "hub", None, (), "see the hub card", False,
                       "-", max(num_classes, 1), rows, f"Hugging Face hub dataset {columns.name}.", hub=columns)


@functools.lru_cache(maxsize=8)
def load_hub_cached(columns: HubColumns, split: str | None, max_rows_per_split: int, seed: int) -> LoadedDataset:
    frame, names = hub_frame(fetch_hub(columns, split), columns, max_rows_per_split, seed)
    return LoadedDataset(frame, names, _hub_spec(columns, len(names), len(frame)))


def load_hub_dataset(name: str, text_column: str | Iterable[str] = "text", label_column: str = "label",
                     split: str | None = None, config: str | None = None, label_names_column: str | None = None,
                     max_rows_per_split: int = HUB_MAX_ROWS_PER_SPLIT, seed: int = 0) -> LoadedDataset:
    """Any Hugging Face hub dataset with explicit columns (several text columns are joined with a space).

    ``split`` None loads every split (train/validation form the training pool, test stays test); a split
    name (e.g. ``"train"``) loads only that one. Needs a network: offline raises :class:`DataError`.
    """
    texts = (text_column,) if isinstance(text_column, str) else tuple(text_column)
    try:
        columns = HubColumns(name, texts, label_column, config, label_names_column)
    except ConfigError as exc:
        raise DataError(str(exc)) from exc
    if isinstance(max_rows_per_split, bool) or not isinstance(max_rows_per_split, int) or max_rows_per_split < 1:
        raise DataError(f"max_rows_per_split must be a positive integer, got {max_rows_per_split!r}")
    return load_hub_cached(columns, split, max_rows_per_split, seed).copy()
