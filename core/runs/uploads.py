"""Uploaded datasets persist in the run store as Parquet (never pickle), so a worker process, a reload or a
later session can use them by reference ``upload:<digest>``."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from core.runs.store import RunStore, atomic_write_text
from core.data.task import frame_digest


def save_upload(store: RunStore, loaded: Any, name: str) -> str:
    """Store an uploaded ``LoadedDataset``; returns its reference ``upload:<digest>``."""
    digest = frame_digest(loaded.frame)
    folder = store.root / "uploads" / digest
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "meta.json").exists():
        tmp = folder / ".data.parquet.tmp"
        loaded.frame.to_parquet(tmp, index=False)
        tmp.replace(folder / "data.parquet")
        atomic_write_text(folder / "meta.json", json.dumps({"name": name, "labels": list(loaded.label_names),
                                                            "rows": int(len(loaded.frame)),
                                                            "description": loaded.spec.description}))
    return f"upload:{digest}"


def load_saved_upload(store: RunStore, ref: str) -> Any:
    from core.data.batches import DataError
    from core.data.registry import LoadedDataset, upload_spec

    digest = ref.split(":", 1)[1]
    folder = store.root / "uploads" / digest
    if not (folder / "meta.json").exists():
        raise DataError(f"The uploaded dataset {ref} is no longer in the store: upload it again.")
    meta = json.loads((folder / "meta.json").read_text())
    frame = pd.read_parquet(folder / "data.parquet")
    return LoadedDataset(frame=frame, label_names=tuple(meta["labels"]),
                         spec=upload_spec(ref, meta["name"], len(meta["labels"]), len(frame),
                                          meta.get("description", "")))


def list_uploads(store: RunStore) -> list[dict[str, Any]]:
    out = []
    for meta in sorted((store.root / "uploads").glob("*/meta.json")):
        info = json.loads(meta.read_text())
        out.append({"ref": f"upload:{meta.parent.name}", **info})
    return out


#: file endings that make a ``--dataset`` value a path rather than a registry key
FILE_SUFFIXES = (".csv", ".tsv", ".txt", ".tab", ".parquet", ".pq")


def resolve_dataset_arg(store: RunStore, value: str, text_column: str | None = None,
                        label_column: str | None = None) -> str:
    """The dataset key for a command line's ``--dataset``: a file (CSV/TSV/Parquet) is read with the upload
    page's checks and messages (columns guessed as there when not given), stored in ``store`` exactly as the
    upload page stores it and returned as ``upload:<id>``; ``upload:<id>`` must be in the store; anything else
    is a registry key or hub name, returned as is. Raises :class:`core.data.batches.DataError`."""
    from pathlib import Path

    from core.data.batches import DataError
    from core.data.upload import read_upload_file

    if value.startswith("upload:"):
        load_saved_upload(store, value)  # a clear error now, not in the middle of a run
        return value
    path = Path(value).expanduser()
    if path.is_file() or path.suffix.lower() in FILE_SUFFIXES:  # "org/name" without a suffix is a hub name
        if not path.is_file():
            raise DataError(f"{value}: no such file. Give the path of a CSV, TSV or Parquet file, a dataset key "
                            f"(python -m core datasets) or upload:<id>.")
        loaded = read_upload_file(path, text_column, label_column)
        return save_upload(store, loaded, path.name)
    if text_column or label_column:
        raise DataError(f"--text-column/--label-column apply to a file, but {value!r} is a dataset key.")
    return value
