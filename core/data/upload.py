"""User uploads: a CSV, TSV or Parquet file's bytes -> a preview (columns and a guess of which is which) -> a
cleaned :class:`~core.data.datasets.LoadedDataset`.

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

import csv
import io
from dataclasses import dataclass
from os import PathLike
from pathlib import PurePath
from typing import Callable, TypeVar

import pandas as pd

from core.data.batches import DataError
from core.data.datasets import LoadedDataset, encode_labels, label_strings, upload_spec

T = TypeVar("T")

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_ROWS = 2_000_000
MIN_CLASS_ROWS = 3  # one row each for train, validation and test in a stratified split
TEXT_SUFFIXES = {".csv": "csv", ".txt": "csv", ".tsv": "tsv", ".tab": "tsv"}
PARQUET_SUFFIXES = (".parquet", ".pq")
DELIMITERS = (",", "\t", ";", "|")
_SNIFF_CHARS = 64 * 1024
_TEXT_HINTS = ("text", "review", "sentence", "content", "message", "body", "document", "question", "comment",
               "tweet", "title", "utterance")
_LABEL_HINTS = ("label", "labels", "class", "category", "target", "sentiment", "y", "intent", "topic", "score",
                "rating", "spam", "tag")
_MAGIC = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
          (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx file is one)"),
          (b"\xd0\xcf\x11\xe0", "an old Excel/Office file"), (b"\x1f\x8b", "a gzip archive"),
          (b"BZh", "a bzip2 archive"), (b"\xfd7zXZ", "an xz archive"), (b"\x80\x04\x95", "a Python pickle"),
          (b"\x80\x05\x95", "a Python pickle"), (b"SQLite format 3", "an SQLite database"))


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


def _reject(filename: str, what: str, todo: str) -> DataError:
    return DataError(f"{filename}: {what}. {todo}")


# --------------------------------------------------------------------------------------------- bytes level
def _as_bytes(data: object, filename: str) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise _reject(filename, f"expected the file's bytes, got {type(data).__name__}", "Pass the uploaded bytes.")


def _check_size(data: bytes, filename: str, max_bytes: int) -> None:
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise DataError(f"max_bytes must be a positive number of bytes, got {max_bytes!r}")
    if not data.strip():
        raise _reject(filename, "the file is empty", "Upload a CSV, TSV or Parquet file with a header row and "
                      "at least one row per class.")
    if len(data) > max_bytes:
        raise _reject(filename, f"the file is {_size(len(data))}, over the {_size(max_bytes)} upload limit",
                      "Upload a sample of its rows: a few thousand are plenty, as every split is capped anyway.")


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _binary_kind(data: bytes) -> str | None:
    """A short description when ``data`` is not delimited text (known magic bytes, NULs, control bytes)."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16 encoded text"
    head = data[:8192]
    if b"\x00" in head:
        return "a binary file (it contains NUL bytes)"
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    if controls > 0.01 * len(head):
        return "a binary file (it is full of control bytes)"
    return None


def _detect_format(data: bytes, filename: str) -> str:
    """Parquet by magic bytes (whatever the name), else by extension; binary content is rejected."""
    suffix = PurePath(filename or "").suffix.lower()
    if data.startswith(b"PAR1"):
        return "parquet"
    if suffix in PARQUET_SUFFIXES:
        raise _reject(filename, "this is not a valid Parquet file (it does not start with the Parquet "
                      "signature)", "Export it again from your tool, or upload it as CSV.")
    kind = _binary_kind(data)
    if kind:
        raise _reject(filename, f"this looks like {kind}, not a CSV/TSV table",
                      "Save the table as CSV (UTF-8) or Parquet and upload that file.")
    if suffix and suffix not in TEXT_SUFFIXES:
        raise _reject(filename, f"files ending in {suffix!r} are not supported",
                      "Upload a .csv, .tsv, .txt or .parquet file.")
    return TEXT_SUFFIXES.get(suffix, "csv")


def _decode(data: bytes) -> tuple[str, str, tuple[str, ...]]:
    """UTF-8 (BOM allowed), else cp1252 with a note, else latin-1 with a note (latin-1 never fails)."""
    try:
        return data.decode("utf-8-sig"), "utf-8", ()
    except UnicodeDecodeError as exc:
        where = exc.start
    note = (f"The file is not valid UTF-8 (first bad byte at position {where}); it was read as {{}}. If accented "
            "characters look wrong, re-save it as UTF-8.")
    try:
        return data.decode("cp1252"), "cp1252", (note.format("Windows-1252 (cp1252)"),)
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1", (note.format("latin-1"),)


# --------------------------------------------------------------------------------------------- text tables
def _row_widths(sample: str, delimiter: str, truncated: bool) -> list[int]:
    rows = list(csv.reader(io.StringIO(sample), delimiter=delimiter))
    if truncated and len(rows) > 1:
        rows = rows[:-1]  # the sample may end mid-row
    return [len(r) for r in rows if any(cell.strip() for cell in r)]


def sniff_delimiter(text: str, preferred: str = ",") -> str:
    """The delimiter that splits the header into the most columns with every sampled row the same width.

    ``csv.reader`` does the splitting, so quoted fields that contain delimiters are handled. The extension's
    delimiter (``preferred``) wins ties; if no candidate is consistent, the widest header wins.
    """
    sample = text[:_SNIFF_CHARS]
    truncated = len(text) > _SNIFF_CHARS
    scores: dict[str, tuple[bool, int]] = {}
    for delim in DELIMITERS:
        widths = _row_widths(sample, delim, truncated)
        header = widths[0] if widths else 0
        scores[delim] = (header >= 2 and all(w == header for w in widths), header)
    best = max(DELIMITERS, key=lambda d: (scores[d], d == preferred))
    return best if scores[best][1] >= 2 else preferred


def _header(text: str, delimiter: str) -> list[str]:
    for row in csv.reader(io.StringIO(text[:_SNIFF_CHARS]), delimiter=delimiter):
        if any(cell.strip() for cell in row):
            return [cell.strip() for cell in row]
    return []


def _check_header(names: list[str], filename: str) -> None:
    seen, dupes = set(), []
    for name in filter(None, names):  # unnamed columns get distinct 'Unnamed: N' names from pandas
        if name in seen and name not in dupes:
            dupes.append(name)
        seen.add(name)
    if dupes:
        raise _reject(filename, f"the header repeats the column name(s) {', '.join(map(repr, dupes))}",
                      "Give every column a unique name in the first row and upload again.")


def _read_text_table(data: bytes, filename: str,
                     file_format: str) -> tuple[pd.DataFrame, str, str, tuple[str, ...]]:
    text, encoding, notes = _decode(data)
    delimiter = sniff_delimiter(text, "\t" if file_format == "tsv" else ",")
    _check_header(_header(text, delimiter), filename)
    try:
        table = pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, skip_blank_lines=True,
                            skipinitialspace=True, nrows=MAX_ROWS + 1)
    except pd.errors.EmptyDataError as exc:
        raise _reject(filename, "the file has no header row or no data", "Upload a table whose first row names "
                      "the columns (e.g. text,label).") from exc
    except (pd.errors.ParserError, csv.Error, ValueError) as exc:
        detail = str(exc).strip().splitlines()[-1][:200]
        raise _reject(filename, f"the rows could not be split into columns with {delimiter!r} ({detail})",
                      "Check that every row has the same number of fields and that text containing the "
                      "delimiter or line breaks is wrapped in double quotes.") from exc
    table.columns = [str(c).strip() for c in table.columns]
    return table, delimiter, encoding, notes


# ------------------------------------------------------------------------------------------------ parquet
def _read_parquet(data: bytes, filename: str, max_bytes: int) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    todo = "Export it again from your tool (pandas: df.to_parquet), or upload it as CSV."
    try:
        pf = pq.ParquetFile(io.BytesIO(data))
        meta = pf.metadata
        names = list(pf.schema_arrow.names)
    except (pa.ArrowException, OSError, ValueError, TypeError) as exc:
        raise _reject(filename, f"the Parquet file is corrupt or truncated ({str(exc)[:160]})", todo) from exc
    _check_header([str(n) for n in names], filename)
    _check_row_count(meta.num_rows, filename)
    unpacked = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if unpacked > 10 * max_bytes:
        raise _reject(filename, f"the Parquet data unpacks to {_size(unpacked)}, over the {_size(10 * max_bytes)} "
                      "limit", "Upload a sample of its rows.")
    try:
        return pf.read().to_pandas()
    except (pa.ArrowException, OSError, ValueError, TypeError) as exc:
        raise _reject(filename, f"the Parquet file is corrupt or truncated ({str(exc)[:160]})", todo) from exc


def _check_row_count(rows: int, filename: str) -> None:
    if rows > MAX_ROWS:
        raise _reject(filename, f"the table has more than {MAX_ROWS:,} rows", "Upload a sample of its rows: a "
                      "few thousand per class are plenty.")


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
        raise _reject(filename, f"there is no {role} column {column!r}",
                      f"Pick one of the file's columns: {', '.join(map(str, table.columns))}.")
    return table[column]


def _text_values(values: pd.Series, column: str, filename: str) -> pd.Series:
    if _is_numeric_text(values):
        raise _reject(filename, f"the text column {column!r} holds only numbers",
                      "Pick the column that holds the documents (sentences, reviews, ...) as the text column.")
    present = values.dropna()
    if not _all_strings(present):
        kind = type(next(v for v in present if not isinstance(v, str))).__name__
        raise _reject(filename, f"the text column {column!r} holds {kind} values, not text",
                      "Pick a column of plain text as the text column.")
    return present.astype(str).str.strip().reindex(values.index)


def _label_values(values: pd.Series, column: str, filename: str) -> pd.Series:
    present = values.dropna()
    if not (pd.api.types.is_numeric_dtype(values) or _all_strings(present) or present.map(_hashable).all()):
        raise _reject(filename, f"the label column {column!r} holds lists or nested values",
                      "Pick a column with one plain label (a word or a number) per row.")
    return label_strings(values)


def _check_classes(labels: pd.Series, column: str, filename: str) -> None:
    counts = labels.value_counts()
    if len(counts) < 2:
        only = counts.index[0] if len(counts) else "?"
        raise _reject(filename, f"the label column {column!r} has a single class ({only!r}) after cleaning",
                      "A classifier needs at least two classes: pick another label column or add rows of "
                      "other classes.")
    rare = counts[counts < MIN_CLASS_ROWS]
    if len(rare):
        listed = ", ".join(f"{name!r} ({n} row{'s' if n > 1 else ''})" for name, n in rare.head(10).items())
        more = f" and {len(rare) - 10} more" if len(rare) > 10 else ""
        raise _reject(filename, f"{len(rare)} class(es) have fewer than {MIN_CLASS_ROWS} rows, too few to split "
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
        raise _reject(filename, f"{text_column!r} was picked as both the text and the label column",
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
    pairs = pairs.drop_duplicates(["text", "label"])
    if before - len(pairs):
        notes.append(f"Dropped {before - len(pairs)} exact duplicate row(s) (same text and label).")
    if notes:
        notes.insert(0, f"Kept {len(pairs):,} of {len(table):,} rows.")
    if pairs.empty:
        raise _reject(filename, f"no rows are left after dropping empty texts/labels (columns {text_column!r}, "
                      f"{label_column!r})", "Check that you picked the right columns and that they are filled.")
    _check_classes(pairs["label"], label_column, filename)
    codes, names = encode_labels(pairs["label"])
    frame = pd.DataFrame({"text": pairs["text"].astype(str).to_numpy(), "label": codes})
    return frame, names, tuple(notes)


# ------------------------------------------------------------------------------------------------- public
def _parse(data: object, filename: str, max_bytes: int) -> UploadPreview:
    filename = str(filename or "upload")
    raw = _as_bytes(data, filename)
    _check_size(raw, filename, max_bytes)
    file_format = _detect_format(raw, filename)
    delimiter = encoding = None
    notes: tuple[str, ...] = ()
    if file_format == "parquet":
        table = _read_parquet(raw, filename, max_bytes)
    else:
        table, delimiter, encoding, notes = _read_text_table(raw, filename, file_format)
    _check_row_count(len(table), filename)
    if table.empty or len(table.columns) == 0:
        raise _reject(filename, "the table has a header but no rows", "Add data rows below the header.")
    table.columns = [str(c) for c in table.columns]
    if len(table.columns) < 2:
        raise _reject(filename, f"only one column ({table.columns[0]!r}) was found", "Add a label column next "
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
        raise _reject(filename or "upload", f"the file could not be read ({type(exc).__name__}: "
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
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise _reject(name, f"the file could not be opened ({exc.strerror or exc})",
                      "Check the path (a CSV, TSV or Parquet file with a header row).") from exc
    preview = inspect_upload(data, name, max_bytes)
    columns = ", ".join(preview.columns)
    for role, given, guess in (("text", text_column, preview.text_column), ("label", label_column,
                                                                             preview.label_column)):
        if given is None and guess is None:
            raise _reject(name, f"no column looks like the {role} column",
                          f"Name it with --{role}-column (the file's columns: {columns}).")
        if given is not None and given not in preview.columns:
            raise _reject(name, f"there is no {role} column {given!r}", f"Pick one of the file's columns: {columns}.")
    return dataset_from_preview(preview, text_column or preview.text_column or "",
                                label_column or preview.label_column or "")
