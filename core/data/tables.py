"""Uploaded bytes -> a table: size limits, format detection (CSV/TSV by suffix and sniffing, Parquet by magic),
text decoding, and clear rejections of binary files. Nothing is unpickled or evaluated: CSV/TSV go through
``pandas.read_csv`` on decoded text, Parquet through ``pyarrow``. Every bad input raises
:class:`~core.data.batches.DataError` saying what is wrong and what to do."""

from __future__ import annotations

import csv
import io
from pathlib import PurePath

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.data.batches import DataError

#: a file up to this size is read whole; a bigger one (up to the caller's ``max_bytes``) is read in chunks and
#: sampled (:mod:`core.data.bigfile`)
READ_WHOLE_BYTES = 50 * 1024 * 1024
#: the largest file accepted by default
MAX_UPLOAD_BYTES = 2 * 1024**3
MAX_ROWS = 2_000_000
TEXT_SUFFIXES = {".csv": "csv", ".txt": "csv", ".tsv": "tsv", ".tab": "tsv"}
PARQUET_SUFFIXES = (".parquet", ".pq")
DELIMITERS = (",", "\t", ";", "|")
_SNIFF_CHARS = 64 * 1024
_MAGIC = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
          (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx file is one)"),
          (b"\xd0\xcf\x11\xe0", "an old Excel/Office file"), (b"\x1f\x8b", "a gzip archive"),
          (b"BZh", "a bzip2 archive"), (b"\xfd7zXZ", "an xz archive"), (b"\x80\x04\x95", "a Python pickle"),
          (b"\x80\x05\x95", "a Python pickle"), (b"SQLite format 3", "an SQLite database"))


def reject(filename: str, what: str, todo: str) -> DataError:
    return DataError(f"{filename}: {what}. {todo}")


# --------------------------------------------------------------------------------------------- bytes level
def _as_bytes(data: object, filename: str) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise reject(filename, f"expected the file's bytes, got {type(data).__name__}", "Pass the uploaded bytes.")


def _check_size(data: bytes, filename: str, max_bytes: int) -> None:
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise DataError(f"max_bytes must be a positive number of bytes, got {max_bytes!r}")
    if not data.strip():
        raise reject(filename, "the file is empty", "Upload a CSV, TSV or Parquet file with a header row and "
                      "at least one row per class.")
    if len(data) > max_bytes:
        raise reject(filename, f"the file is {_size(len(data))}, over the {_size(max_bytes)} upload limit",
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
        raise reject(filename, "this is not a valid Parquet file (it does not start with the Parquet "
                      "signature)", "Export it again from your tool, or upload it as CSV.")
    kind = _binary_kind(data)
    if kind:
        raise reject(filename, f"this looks like {kind}, not a CSV/TSV table",
                      "Save the table as CSV (UTF-8) or Parquet and upload that file.")
    if suffix and suffix not in TEXT_SUFFIXES:
        raise reject(filename, f"files ending in {suffix!r} are not supported",
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
        raise reject(filename, f"the header repeats the column name(s) {', '.join(map(repr, dupes))}",
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
        raise reject(filename, "the file has no header row or no data", "Upload a table whose first row names "
                      "the columns (e.g. text,label).") from exc
    except (pd.errors.ParserError, csv.Error, ValueError) as exc:
        detail = str(exc).strip().splitlines()[-1][:200]
        raise reject(filename, f"the rows could not be split into columns with {delimiter!r} ({detail})",
                      "Check that every row has the same number of fields and that text containing the "
                      "delimiter or line breaks is wrapped in double quotes.") from exc
    table.columns = [str(c).strip() for c in table.columns]
    return table, delimiter, encoding, notes


# ------------------------------------------------------------------------------------------------ parquet
def _read_parquet(data: bytes, filename: str, max_bytes: int) -> pd.DataFrame:
    todo = "Export it again from your tool (pandas: df.to_parquet), or upload it as CSV."
    try:
        pf = pq.ParquetFile(io.BytesIO(data))
        meta = pf.metadata
        names = list(pf.schema_arrow.names)
    except (pa.ArrowException, OSError, ValueError, TypeError) as exc:
        raise reject(filename, f"the Parquet file is corrupt or truncated ({str(exc)[:160]})", todo) from exc
    _check_header([str(n) for n in names], filename)
    _check_row_count(meta.num_rows, filename)
    unpacked = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if unpacked > 10 * max_bytes:
        raise reject(filename, f"the Parquet data unpacks to {_size(unpacked)}, over the {_size(10 * max_bytes)} "
                      "limit", "Upload a sample of its rows.")
    try:
        return pf.read().to_pandas()
    except (pa.ArrowException, OSError, ValueError, TypeError) as exc:
        raise reject(filename, f"the Parquet file is corrupt or truncated ({str(exc)[:160]})", todo) from exc


def _check_row_count(rows: int, filename: str) -> None:
    if rows > MAX_ROWS:
        raise reject(filename, f"the table has more than {MAX_ROWS:,} rows", "Upload a sample of its rows: a "
                      "few thousand per class are plenty.")


def read_table(data: object, filename: str, max_bytes: int = MAX_UPLOAD_BYTES
               ) -> tuple[pd.DataFrame, str, str | None, str | None, tuple[str, ...]]:
    """A file's bytes -> (table with string column names, format, delimiter, encoding, notes). A file over
    :data:`READ_WHOLE_BYTES` is read in chunks instead (:func:`core.data.bigfile.read_any_table` decides)."""
    raw = _as_bytes(data, filename)
    _check_size(raw, filename, max_bytes)
    file_format = _detect_format(raw, filename)
    delimiter = encoding = None
    notes: tuple[str, ...] = ()
    if file_format == "parquet":
        table = _read_parquet(raw, filename, min(max_bytes, READ_WHOLE_BYTES))
    else:
        table, delimiter, encoding, notes = _read_text_table(raw, filename, file_format)
    _check_row_count(len(table), filename)
    if table.empty or len(table.columns) == 0:
        raise reject(filename, "the table has a header but no rows", "Add data rows below the header.")
    table.columns = [str(c) for c in table.columns]
    return table, file_format, delimiter, encoding, notes
