"""A dataset reference: what a run's ``dataset`` string names, parsed in one place and loaded one way.

Four kinds, told apart by :meth:`DatasetRef.parse`:

* ``key``     a registry key (``trec``; ``ag_news`` for the registry's ``hub:ag_news``), see
  :mod:`core.data.registry`; an unknown name is reported when it is loaded, with the list of keys
* ``hub``     ``hub:<hub id>``: the registry's column mapping when it has one, else columns ``text``/``label``
* ``upload``  ``upload:<id>``: a user's file kept in a run store (:mod:`core.data.upload_store`)
* ``file``    the path of a CSV, TSV or Parquet file (a command line's ``--dataset``); before a run uses it,
  :func:`resolve_dataset_ref` stores it as an upload, so stored runs never name a path

The string is the serialisation: configs keep ``dataset: str`` and ``str(DatasetRef.parse(s)) == s`` for every
stored form, so runs stored before this module still open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Union

from core.data.batches import DataError
from core.data.registry import DATASETS, LoadedDataset

if TYPE_CHECKING:
    from core.data.upload_store import StoreLike

RefKind = Literal["key", "hub", "upload", "file"]
REF_KINDS: tuple[str, ...] = ("key", "hub", "upload", "file")
HUB_PREFIX, UPLOAD_PREFIX = "hub:", "upload:"

#: file endings that make a ``--dataset`` value a path rather than a registry key
FILE_SUFFIXES = (".csv", ".tsv", ".txt", ".tab", ".parquet", ".pq")

_UPLOAD_ID = re.compile(r"[0-9A-Za-z_-]+")  # a content digest: never a path
_FORMS = ("a dataset key (python -m core datasets), hub:<hub id>, upload:<id> of a stored upload, or the path of a "
          "CSV, TSV or Parquet file")


@dataclass(frozen=True)
class DatasetRef:
    """One parsed dataset reference: ``kind`` and ``value`` (the key, the hub id, the upload id or the path)."""

    kind: RefKind
    value: str

    def __post_init__(self) -> None:
        if self.kind not in REF_KINDS:
            raise DataError(f"DatasetRef.kind must be one of {', '.join(REF_KINDS)}; got {self.kind!r}")
        if not isinstance(self.value, str) or not self.value.strip():
            raise DataError(f"A {self.kind} dataset reference needs a value, got {self.value!r}. Give {_FORMS}.")
        if self.kind == "upload" and not _UPLOAD_ID.fullmatch(self.value):
            raise DataError(f"upload:{self.value} is not the id of a stored upload (letters, digits, '-' and '_' "
                            "only). Pick the upload on the Setup page, or give the file's path instead.")
        if self.kind == "hub" and any(c.isspace() for c in self.value):
            raise DataError(f"hub:{self.value} is not a hub dataset id (it holds a space). Type an id such as "
                            "hub:ag_news.")

    @classmethod
    def parse(cls, text: str | DatasetRef) -> DatasetRef:
        """The reference a ``dataset`` string names (a :class:`DatasetRef` is returned as is). Raises
        :class:`~core.data.batches.DataError` naming the accepted forms for an empty or malformed one.

        A value that is a registry key is a key even when a file of that name exists; a value ending in a
        table suffix (``.csv`` ...) or naming an existing file is a file; ``org/name`` without a suffix is a key
        (hub names are written ``hub:org/name``)."""
        if isinstance(text, DatasetRef):
            return text
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"The dataset reference is empty (got {text!r}). Give {_FORMS}.")
        value = text.strip()
        for prefix, kind in ((UPLOAD_PREFIX, "upload"), (HUB_PREFIX, "hub")):
            if value.startswith(prefix):
                rest = value[len(prefix):].strip()
                if not rest:
                    raise DataError(f"{value!r} names no {'upload' if kind == 'upload' else 'hub dataset'}: write "
                                    f"{prefix}<id> "
                                    + ("(the Setup page lists the stored uploads)." if kind == "upload"
                                       else "(for example hub:ag_news)."))
                return cls(kind, rest)  # type: ignore[arg-type]
        if value in DATASETS:
            return cls("key", value)
        path = Path(value).expanduser()
        if path.suffix.lower() in FILE_SUFFIXES or path.is_file():
            return cls("file", value)
        return cls("key", value)

    def __str__(self) -> str:
        return {"hub": HUB_PREFIX, "upload": UPLOAD_PREFIX}.get(self.kind, "") + self.value

    @property
    def is_upload(self) -> bool:
        return self.kind == "upload"

    @property
    def is_file(self) -> bool:
        return self.kind == "file"

    @property
    def short(self) -> str:
        """A label when nothing better is known: an upload's id shortened, anything else as written."""
        return f"uploaded ({self.value[:8]})" if self.is_upload else str(self)


RefLike = Union[str, DatasetRef]


def hub_ref(name: str) -> DatasetRef:
    """The hub reference of what a person typed (``ag_news`` or ``hub:ag_news``); raises
    :class:`~core.data.batches.DataError` for an empty id or one with a space."""
    value = (name or "").strip()
    return DatasetRef.parse(value if value.startswith(HUB_PREFIX) else HUB_PREFIX + value)


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
        from core.data.upload_store import load_saved_upload

        return load_saved_upload(store, ref)
    if ref.kind == "file":
        return _read_file(ref, text_column, label_column)
    _no_columns(ref, text_column, label_column)
    from core.data.datasets import load_dataset

    return load_dataset(str(ref))


def _read_file(ref: DatasetRef, text_column: str | None, label_column: str | None) -> LoadedDataset:
    from core.data.upload import read_upload_file

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
        from core.data.upload_store import save_upload

        return save_upload(store, _read_file(ref, text_column, label_column), Path(ref.value).name)
    if ref.kind == "upload":
        load_dataset_ref(ref, store)
        return ref
    _no_columns(ref, text_column, label_column)
    return ref
