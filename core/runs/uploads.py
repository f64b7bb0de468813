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
                                                            "rows": int(len(loaded.frame))}))
    return f"upload:{digest}"


def load_saved_upload(store: RunStore, ref: str) -> Any:
    from core.data.batches import DataError
    from core.data.datasets import LoadedDataset, upload_spec

    digest = ref.split(":", 1)[1]
    folder = store.root / "uploads" / digest
    if not (folder / "meta.json").exists():
        raise DataError(f"The uploaded dataset {ref} is no longer in the store: upload it again.")
    meta = json.loads((folder / "meta.json").read_text())
    frame = pd.read_parquet(folder / "data.parquet")
    return LoadedDataset(frame=frame, label_names=tuple(meta["labels"]),
                         spec=upload_spec(ref, meta["name"], len(meta["labels"]), len(frame)))


def list_uploads(store: RunStore) -> list[dict[str, Any]]:
    out = []
    for meta in sorted((store.root / "uploads").glob("*/meta.json")):
        info = json.loads(meta.read_text())
        out.append({"ref": f"upload:{meta.parent.name}", **info})
    return out
