"""A dataset reference: what a run's ``dataset`` string names, parsed in one place and loaded one way.

Four kinds, told apart by :meth:`DatasetRef.parse`:

* ``key``     a registry key (``trec``; ``ag_news`` for the registry's ``hub:ag_news``), see
  :mod:`core.data.registry`; an unknown name is reported when it is loaded, with the list of keys
* ``hub``     ``hub:<hub id>``: the registry's column mapping when it has one, else columns ``text``/``label``
* ``upload``  ``upload:<id>``: a user's file kept in a run store (:mod:`core.data.upload_store`)
* ``file``    the path of a CSV, TSV or Parquet file (a command line's ``--dataset``); before a run uses it,
  :func:`resolve_dataset_ref` stores it as an upload, so stored runs never name a path

The string is the serialisation: configs keep ``dataset: str`` and ``str(DatasetRef.parse(s)) == s`` for every
stored form, so runs stored before this module still open. :class:`DatasetRef` itself lives in
:mod:`core.data.registry` (which the loaders below import, so it must not import them) and is re-exported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from core.data.batches import DataError
from core.data.datasets import load_dataset
from core.data.registry import (
    FILE_SUFFIXES,
    HUB_PREFIX,
    REF_KINDS,
    UPLOAD_PREFIX,
    DatasetRef,
    LoadedDataset,
    RefKind,
    RefLike,
    hub_ref,
)
from core.data.upload import read_upload_file
from core.data.upload_store import load_saved_upload, save_upload

if TYPE_CHECKING:
    from core.data.upload_store import StoreLike

__all__ = ["FILE_SUFFIXES", "HUB_PREFIX", "REF_KINDS", "UPLOAD_PREFIX", "DatasetRef", "RefKind", "RefLike", "hub_ref",
           "load_dataset_ref", "resolve_dataset_ref"]


def load_dataset_ref(ref: RefLike, store: StoreLike | None = None, *, text_column: str | None = None,
                     label_column: str | None = None) -> LoadedDataset:
    """The one way to turn a reference into a :class:`LoadedDataset`.

    Keys and hub ids load through :func:`core.data.datasets.load_dataset` (cached in-process); an upload is read
    from ``store`` (a store folder or an object with a ``root``; required for uploads); a file is read with the
    upload page's checks and messages (columns guessed when not given). Raises
    :class:`~core.data.batches.DataError` with a message saying what to do."""
    ref = DatasetRef.parse(ref)
    if ref.kind == "upload":
        if store is None:
            raise DataError(f"{ref} is an upload: it is read from a run store, and none was given.")

        return load_saved_upload(store, ref)
    if ref.kind == "file":
        return _read_file(ref, text_column, label_column)
    _no_columns(ref, text_column, label_column)

    return load_dataset(str(ref))


def _read_file(ref: DatasetRef, text_column: str | None, label_column: str | None) -> LoadedDataset:
    path = Path(ref.value).expanduser()
    if not path.is_file():
        raise DataError(f"{ref.value}: no such file. Give the path of a CSV, TSV or Parquet file, a dataset key "
                        f"(python -m core datasets) or upload:<id>.")
    return read_upload_file(path, text_column, label_column)


def _no_columns(ref: DatasetRef, text_column: str | None, label_column: str | None) -> None:
    if text_column or label_column:
        raise DataError(f"--text-column/--label-column apply to a file, but {str(ref)!r} is a dataset key.")


def resolve_dataset_ref(value: RefLike, store: StoreLike, text_column: str | None = None,
                        label_column: str | None = None) -> DatasetRef:
    """The reference a run may store: a file is read (see :func:`load_dataset_ref`), kept in ``store`` exactly
    as the upload page keeps it and returned as ``upload:<id>``; an upload must be in ``store`` (a clear error
    now, not in the middle of a run); a key or hub id is returned as is (checked when loaded)."""
    ref = DatasetRef.parse(value)
    if ref.kind == "file":
        return save_upload(store, _read_file(ref, text_column, label_column), Path(ref.value).name)
    if ref.kind == "upload":
        load_dataset_ref(ref, store)
        return ref
    _no_columns(ref, text_column, label_column)
    return ref
