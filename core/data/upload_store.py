"""Uploaded datasets kept in a run store's folder, so a worker process, a reload or a later session can use them
by reference (``upload:<digest>``, a :class:`core.data.ref.DatasetRef`).

The store only keeps the bytes: ``<root>/uploads/<digest>/data.parquet`` (the cleaned ``text``/``label``
frame, never a pickle) and ``meta.json`` (name, label names, rows, description). This module turns them back
into a :class:`~core.data.registry.LoadedDataset`. ``store`` is a store folder or anything with a ``root``
folder (a :class:`core.runs.store.RunStore`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Union

import pandas as pd

from core.data.batches import DataError
from core.data.registry import DatasetRef, LoadedDataset, upload_spec
from core.data.task import frame_digest
from core.paths import atomic_write_text


class HasRoot(Protocol):
    @property
    def root(self) -> Path: ...


#: where uploads live: a store folder, or a store object with a ``root``
StoreLike = Union[str, "os.PathLike[str]", HasRoot]


@dataclass(frozen=True)
class SavedUpload:
    """What the store knows about one upload without reading its rows."""

    ref: DatasetRef
    name: str
    labels: tuple[str, ...]
    rows: int
    description: str = ""


def uploads_dir(store: StoreLike) -> Path:
    root = store if isinstance(store, (str, os.PathLike)) else store.root
    return Path(root) / "uploads"


def _folder(store: StoreLike, ref: DatasetRef) -> Path:
    if ref.kind != "upload":
        raise ValueError(f"{ref} is not an upload reference (upload:<id>)")
    return uploads_dir(store) / ref.value


def save_upload(store: StoreLike, loaded: LoadedDataset, name: str) -> DatasetRef:
    """Keep an uploaded dataset (once per content); returns its reference ``upload:<digest>``."""
    ref = DatasetRef("upload", frame_digest(loaded.frame))
    folder = _folder(store, ref)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "meta.json").exists():
        tmp = folder / ".data.parquet.tmp"
        loaded.frame.to_parquet(tmp, index=False)
        tmp.replace(folder / "data.parquet")
        atomic_write_text(folder / "meta.json", json.dumps({"name": name, "labels": list(loaded.label_names),
                                                            "rows": int(len(loaded.frame)),
                                                            "description": loaded.spec.description}))
    return ref


def _info(ref: DatasetRef, meta: Mapping[str, Any]) -> SavedUpload:
    return SavedUpload(ref=ref, name=str(meta.get("name") or ref.value),
                       labels=tuple(str(x) for x in meta.get("labels") or ()), rows=int(meta.get("rows") or 0),
                       description=str(meta.get("description") or ""))


def upload_info(store: StoreLike, ref: DatasetRef) -> SavedUpload | None:
    """The stored upload's name, labels and size, or ``None`` when it is not in this store."""
    meta = _folder(store, ref) / "meta.json"
    return _info(ref, json.loads(meta.read_text())) if meta.exists() else None


def load_saved_upload(store: StoreLike, ref: DatasetRef) -> LoadedDataset:
    """A stored upload as a :class:`LoadedDataset` (its spec's key is the reference). Raises :class:`DataError`
    saying what to do when it is gone."""
    folder = _folder(store, ref)
    if not (folder / "meta.json").exists():
        raise DataError(f"The uploaded dataset {ref} is no longer in the store: upload it again.")
    meta = json.loads((folder / "meta.json").read_text())
    frame = pd.read_parquet(folder / "data.parquet")
    return LoadedDataset(frame=frame, label_names=tuple(meta["labels"]),
                         spec=upload_spec(str(ref), meta["name"], len(meta["labels"]), len(frame),
                                          meta.get("description", "")))


def list_uploads(store: StoreLike) -> list[SavedUpload]:
    """Every upload in the store, by reference."""
    return [_info(DatasetRef("upload", meta.parent.name), json.loads(meta.read_text()))
            for meta in sorted(uploads_dir(store).glob("*/meta.json"))]
