"""Moved to ``core.data``: :mod:`core.data.upload_store` keeps uploads in a store's folder and
:func:`core.data.ref.load_dataset_ref` loads any dataset reference. This name stays, with its old string
signature, for the caller not yet moved (``core.runs.runner._upload_for``); delete this module with it."""

from __future__ import annotations

from core.data.ref import load_dataset_ref
from core.data.registry import LoadedDataset
from core.data.upload_store import StoreLike


def load_saved_upload(store: StoreLike, ref: str) -> LoadedDataset:
    return load_dataset_ref(ref, store)

