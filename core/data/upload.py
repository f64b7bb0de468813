"""User uploads: a CSV, TSV or Parquet file's bytes -> a preview (columns and a guess of which is which) -> a
cleaned :class:`~core.data.registry.LoadedDataset`.

Uploads come from strangers, so this module is defensive:

* nothing is unpickled or evaluated: CSV/TSV go through ``pandas.read_csv`` on decoded text, Parquet
  through ``pyarrow`` (no Python objects are rebuilt from the file);
* every bad input raises :class:`core.data.batches.DataError` whose message says what is wrong and what to do; the
  public functions turn any other exception into one, so a caller (the UI) needs a single ``except``;
* size limits: the file (``max_bytes``), the rows (:data:`MAX_ROWS`) and a Parquet file's decompressed size.

Text encodings: UTF-8 (with or without a byte-order mark) is read as is. Anything else is read as
Windows-1252 (cp1252, a superset of latin-1 for printable text; the few bytes it leaves undefined fall back
to latin-1) and the preview carries a note saying so, because a wrong guess garbles accents but not the
task. UTF-16 files and binary files are rejected with a message saying how to re-save them.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path, PurePath
from typing import TypeVar

import pandas as pd

from core.data.batches import DataError
from core.data.bigfile import read_any_table
from core.data.labels import encode_labels, label_strings
from core.data.registry import LoadedDataset, upload_spec
from core.data.splits import label_conflicts, normalise_text
from core.data.tables import MAX_UPLOAD_BYTES, READ_WHOLE_BYTES, reject

T = TypeVar("T")

MIN_CLASS_ROWS = 3  # one row each for train, validation and test in a stratified split
_TEXT_HINTS = ("text", "review", "sentence", "content", "message", "body", "document", "question", "comment",
               "tweet", "title", "utterance")
_LABEL_HINTS = ("label", "labels", "class", "category", "target", "sentiment", "y", "intent", "topic", "score",
                "rating", "spam", "tag")


@dataclass(frozen=True)
class UploadPreview:
    """What a file holds, before the user confirms which column is the text and which the label."""

    filename: str
    file_format: str  # "csv" | "tsv" | "parquet"
    table: pd.DataFrame
    columns: tuple[str, ...]
    text_column: str | None
    label_column: str | None
    delimiter: str | None = None
    encoding: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return len(self.table)


# ------------------------------------------------------------------------------------------------ guesses
def _all_strings(values: pd.Series) -> bool:
    """Every non-missing value is a str (a C-speed check, also for object columns from Parquet)."""
    return pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty")


def _is_numeric_text(values: pd.Series) -> bool:
    """True when a column's non-blank values are all numbers (or it is a numeric/bool column).

    A sample is checked first, so a real text column is cleared without parsing all of it."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return True
    present = values.dropna()
    if present.empty or not _all_strings(present):
        return False
    for part in (present.head(1000), present):
        stripped = part.str.strip()
        stripped = stripped[stripped != ""]
        if stripped.empty or pd.to_numeric(stripped, errors="coerce").isna().any():
            return False
    return True


def _is_textual(values: pd.Series) -> bool:
    present = values.dropna()
    return not present.empty and _all_strings(present) and not _is_numeric_text(present)


def guess_columns(table: pd.DataFrame) -> tuple[str | None, str | None]:
    """(text column, label column) guesses: names first (``text``, ``label``, ...), then content: the text
    column has the longest strings, the label column the fewest distinct values (2 to 100)."""
    cols = [str(c) for c in table.columns]
    textual = [c for c in cols if _is_textual(table[c])]
    by_name = [c for h in _TEXT_HINTS for c in textual if c.lower() == h]
    lengths = {c: table[c].dropna().head(2000).str.len().mean() for c in textual}
    text = by_name[0] if by_name else (max(textual, key=lambda c: lengths[c]) if textual else None)
    others = [c for c in cols if c != text]
    named = [c for h in _LABEL_HINTS for c in others if c.lower() == h]
    if named:
        return text, named[0]
    limit = max(2, min(100, len(table) // 2))
    distinct = {c: table[c].nunique(dropna=True) for c in others if table[c].head(2000).map(_hashable).all()}
    fits = [c for c, k in distinct.items() if 2 <= k <= limit]
    return text, (min(fits, key=lambda c: distinct[c]) if fits else None)


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


# ----------------------------------------------------------------------------------------------- cleaning
def _require_column(table: pd.DataFrame, column: str | None, role: str, filename: str) -> pd.Series:
    if not column or column not in table.columns:
        raise reject(filename, f"there is no {role} column {column!r}",
                      f"Pick one of the file's columns: {', '.join(map(str, table.columns))}.")
    return table[column]


def _text_values(values: pd.Series, column: str, filename: str) -> pd.Series:
    if _is_numeric_text(values):
        raise reject(filename, f"the text column {column!r} holds only numbers",
                      "Pick the column that holds the documents (sentences, reviews, ...) as the text column.")
    present = values.dropna()
    if not _all_strings(present):
        kind = type(next(v for v in present if not isinstance(v, str))).__name__
        raise reject(filename, f"the text column {column!r} holds {kind} values, not text",
                      "Pick a column of plain text as the text column.")
    return present.astype(str).str.strip().reindex(values.index)


def _label_values(values: pd.Series, column: str, filename: str) -> pd.Series:
    present = values.dropna()
    if not (pd.api.types.is_numeric_dtype(values) or _all_strings(present) or present.map(_hashable).all()):
        raise reject(filename, f"the label column {column!r} holds lists or nested values",
                      "Pick a column with one plain label (a word or a number) per row.")
    return label_strings(values)


def _check_classes(labels: pd.Series, column: str, filename: str) -> None:
    counts = labels.value_counts()
    if len(counts) < 2:
        only = counts.index[0] if len(counts) else "?"
        raise reject(filename, f"the label column {column!r} has a single class ({only!r}) after cleaning",
                      "A classifier needs at least two classes: pick another label column or add rows of "
                      "other classes.")
    rare = counts[counts < MIN_CLASS_ROWS]
    if len(rare):
        listed = ", ".join(f"{name!r} ({n} row{'s' if n > 1 else ''})" for name, n in rare.head(10).items())
        more = f" and {len(rare) - 10} more" if len(rare) > 10 else ""
        raise reject(filename, f"{len(rare)} class(es) have fewer than {MIN_CLASS_ROWS} rows, too few to split "
                      f"into train/validation/test by class: {listed}{more}",
                      "Remove or merge those rows, add examples, or pick a label column with fewer classes.")


def clean_upload(table: pd.DataFrame, text_column: str, label_column: str,
                 filename: str = "upload") -> tuple[pd.DataFrame, tuple[str, ...], tuple[str, ...]]:
    """(frame with ``text``/``label`` codes, label names, notes) from a parsed table.

    Strips text, drops rows with blank/missing text or label, drops exact duplicate (text, label) rows,
    codes labels by sorted name (numerically when all are numbers). Raises :class:`DataError` when the
    result cannot train a classifier.
    """
    if text_column == label_column:
        raise reject(filename, f"{text_column!r} was picked as both the text and the label column",
                      "Pick two different columns.")
    text = _text_values(_require_column(table, text_column, "text", filename), text_column, filename)
    labels = _label_values(_require_column(table, label_column, "label", filename), label_column, filename)
    pairs = pd.DataFrame({"text": text, "label": labels})
    no_text = pairs["text"].isna() | (pairs["text"] == "")
    no_label = pairs["label"].isna() | (pairs["label"] == "")
    keep = ~(no_text | no_label)
    notes = []
    if (~keep).sum():
        why = [f"{int(n):,} with no {what}" for n, what in ((no_text.sum(), "text"), (no_label.sum(), "label")) if n]
        notes.append(f"Dropped {int((~keep).sum())} row(s) with an empty text or label ({', '.join(why)}).")
    pairs = pairs[keep]
    before = len(pairs)
    keys = pd.DataFrame({"key": normalise_text(pairs["text"]), "label": pairs["label"]})
    pairs = pairs[~keys.duplicated().to_numpy()]
    if before - len(pairs):
        notes.append(f"Dropped {before - len(pairs)} duplicate row(s) (same text, ignoring case and spacing, and "
                     "same label).")
    conflicting_texts, conflicting_rows = label_conflicts(pairs)
    if conflicting_texts:  # make_splits leaves them out (core.data.splits); say so before anything trains
        notes.append(f"{conflicting_texts:,} text(s) carry two or more different labels: their "
                     f"{conflicting_rows:,} row(s) will be left out of every split.")
    if notes:
        notes.insert(0, f"Kept {len(pairs):,} of {len(table):,} rows.")
    if pairs.empty:
        raise reject(filename, f"no rows are left after dropping empty texts/labels (columns {text_column!r}, "
                      f"{label_column!r})", "Check that you picked the right columns and that they are filled.")
    _check_classes(pairs["label"], label_column, filename)
    codes, names = encode_labels(pairs["label"])
    frame = pd.DataFrame({"text": pairs["text"].astype(str).to_numpy(), "label": codes})
    return frame, names, tuple(notes)


# ------------------------------------------------------------------------------------------------- public
def _parse(data: object, filename: str, max_bytes: int) -> UploadPreview:
    filename = str(filename or "upload")
    table, file_format, delimiter, encoding, notes = read_any_table(data, filename, max_bytes)
    if len(table.columns) < 2:
        raise reject(filename, f"only one column ({table.columns[0]!r}) was found", "Add a label column next "
                     "to the text column (separated by commas, tabs or semicolons) under a header row.")
    text_guess, label_guess = guess_columns(table)
    return UploadPreview(filename, file_format, table, tuple(table.columns), text_guess, label_guess, delimiter,
                         encoding, notes)


def _guarded(filename: str, fn: Callable[..., T], *args: object) -> T:
    """Run ``fn``; any exception other than DataError becomes one (callers need a single ``except``)."""
    try:
        return fn(*args)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - the boundary that keeps stray errors away from the UI
        raise reject(filename or "upload", f"the file could not be read ({type(exc).__name__}: "
                      f"{str(exc)[:200]})", "Upload a CSV, TSV or Parquet table with a header row.") from exc


def inspect_upload(data: bytes, filename: str, max_bytes: int = MAX_UPLOAD_BYTES) -> UploadPreview:
    """Parse an uploaded file and guess its text and label columns (nothing is cleaned yet)."""
    return _guarded(filename, _parse, data, filename, max_bytes)


def _from_preview(preview: UploadPreview, text_column: str, label_column: str) -> LoadedDataset:
    frame, names, notes = clean_upload(preview.table, text_column, label_column, preview.filename)
    all_notes = " ".join((*preview.notes, *notes))
    description = (f"Uploaded {preview.file_format.upper()} {preview.filename}: text column {text_column!r}, "
                   f"label column {label_column!r}, {len(frame)} rows, {len(names)} classes. {all_notes}").strip()
    spec = upload_spec(f"upload:{preview.filename}", preview.filename, len(names), len(frame), description)
    return LoadedDataset(frame, names, spec)


def dataset_from_preview(preview: UploadPreview, text_column: str, label_column: str) -> LoadedDataset:
    """The cleaned dataset from an earlier :func:`inspect_upload` (no second parse of the file)."""
    return _guarded(preview.filename, _from_preview, preview, text_column, label_column)


def read_upload(data: bytes, filename: str, text_column: str, label_column: str,
                max_bytes: int = MAX_UPLOAD_BYTES) -> LoadedDataset:
    """An uploaded file as a cleaned :class:`LoadedDataset` (see :func:`clean_upload` for the cleaning)."""
    return _guarded(filename, lambda: _from_preview(_parse(data, filename, max_bytes), text_column, label_column))


def read_upload_file(path: str | PathLike[str], text_column: str | None = None, label_column: str | None = None,
                     max_bytes: int = MAX_UPLOAD_BYTES) -> LoadedDataset:
    """A table on disk (CSV, TSV or Parquet) as a cleaned :class:`LoadedDataset`, through the same checks and
    messages as an upload; a column left ``None`` is guessed as the upload page guesses it
    (:func:`guess_columns`)."""
    name = PurePath(path).name
    try:
        if os.path.getsize(path) > READ_WHOLE_BYTES:  # read in chunks and sampled (core.data.bigfile)
            data: bytes | PathLike[str] = Path(path)
        else:
            with open(path, "rb") as fh:
                data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise reject(name, f"the file could not be opened ({exc.strerror or exc})",
                      "Check the path (a CSV, TSV or Parquet file with a header row).") from exc
    preview = inspect_upload(data, name, max_bytes)  # type: ignore[arg-type]
    columns = ", ".join(preview.columns)
    for role, given, guess in (("text", text_column, preview.text_column), ("label", label_column,
                                                                             preview.label_column)):
        if given is None and guess is None:
            raise reject(name, f"no column looks like the {role} column",
                          f"Name it with --{role}-column (the file's columns: {columns}).")
        if given is not None and given not in preview.columns:
            raise reject(name, f"there is no {role} column {given!r}", f"Pick one of the file's columns: {columns}.")
    return dataset_from_preview(preview, text_column or preview.text_column or "",
                                label_column or preview.label_column or "")
