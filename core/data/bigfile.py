"""Big tables: a CSV, TSV or Parquet file too large to read whole is read in chunks and sampled.

A file over :data:`core.data.tables.READ_WHOLE_BYTES` (read whole below that) and up to :data:`MAX_STREAM_BYTES`
is read :data:`CHUNK_ROWS` rows at a time (``pandas.read_csv(chunksize=...)`` for text, ``pyarrow``'s
``iter_batches`` for Parquet), and only a seeded uniform random sample of :data:`SAMPLE_ROWS` rows is kept
(bottom-k of a random key per row, which is a reservoir sample: every row has the same chance, whatever the
file's order). Memory stays bounded by the sample plus one chunk, not by the file. The sampling is stated
(:class:`Sampling`): rows read, kept, dropped, and why (every split is capped, so the dropped rows would not
have been used).

The same checks as a small file's apply (binary content, header, delimiter, encoding), with the same
:class:`~core.data.batches.DataError` messages.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.data.batches import DataError
from core.data.tables import (
    MAX_UPLOAD_BYTES,
    READ_WHOLE_BYTES,
    _check_header,
    _detect_format,
    _header,
    _size,
    read_table,
    reject,
    sniff_delimiter,
)
from core.jsontypes import JSONObject

#: a file's bytes or its path
Source = bytes | bytearray | memoryview | str | PathLike[str]
#: the largest file read at all (in chunks)
MAX_STREAM_BYTES = 4 * 1024**3
#: rows kept from a big file (our default: several times the default split caps, 2,000 + 500 + 1,000 rows,
#: so the splits are as full as with the whole file and rare classes keep rows)
SAMPLE_ROWS = 20_000
#: rows parsed at a time
CHUNK_ROWS = 5_000
#: bytes looked at to detect the format, the encoding and the delimiter
HEAD_BYTES = 1024 * 1024

_KEY, _ROW = "__sample_key", "__row"


@dataclass(frozen=True)
class Sampling:
    """How a big file was read: its size, the rows read and kept, the sample size and seed."""

    file_bytes: int
    rows_read: int
    rows_kept: int
    sample_rows: int
    seed: int

    @property
    def rows_dropped(self) -> int:
        return self.rows_read - self.rows_kept

    def note(self) -> str:
        text = (f"The file is {_size(self.file_bytes)}, over the {_size(READ_WHOLE_BYTES)} read whole, so it was read "
                f"in chunks of {CHUNK_ROWS:,} rows: {self.rows_read:,} rows read")
        if not self.rows_dropped:
            return text + f", all {self.rows_kept:,} kept."
        return (text + f", {self.rows_kept:,} kept (a seeded uniform random sample, seed {self.seed}) and "
                f"{self.rows_dropped:,} dropped: every split is capped (2,000 training rows by default), so a "
                f"sample of {self.sample_rows:,} rows fills the splits as the whole file would.")

    def to_dict(self) -> JSONObject:
        return {"file_bytes": self.file_bytes, "rows_read": self.rows_read, "rows_kept": self.rows_kept,
                "rows_dropped": self.rows_dropped, "sample_rows": self.sample_rows, "seed": self.seed}


def source_size(source: Source) -> int:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return len(source)
    return Path(source).stat().st_size


def _open(source: Source) -> BinaryIO:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source) if not isinstance(source, bytes) else source)
    return open(source, "rb")


def _head(source: Source) -> bytes:
    with _open(source) as fh:
        return fh.read(HEAD_BYTES)


def _encoding(head: bytes, complete: bool) -> tuple[str, tuple[str, ...]]:
    """UTF-8 (BOM allowed) when the head decodes as UTF-8, else cp1252 with a note (as a small file)."""
    sample = head if complete else head[:-4]  # the head may end inside a multi-byte character
    try:
        sample.decode("utf-8-sig")
        return "utf-8-sig", ()
    except UnicodeDecodeError as exc:
        where = exc.start
    return "cp1252", (f"The file is not valid UTF-8 (first bad byte at position {where}); it was read as "
                      "Windows-1252 (cp1252). If accented characters look wrong, re-save it as UTF-8.",)


def _sample(chunks: Iterator[pd.DataFrame], sample_rows: int, seed: int) -> tuple[pd.DataFrame, int]:
    """A uniform random sample of at most ``sample_rows`` rows of all ``chunks`` (in file order) and the row count.
    Each row draws a key from a seeded generator; the rows with the smallest keys are kept (bottom-k)."""
    rng = np.random.default_rng(seed)
    kept: pd.DataFrame | None = None
    read = 0
    for chunk in chunks:
        chunk = chunk.reset_index(drop=True)
        chunk[_KEY] = rng.random(len(chunk))
        chunk[_ROW] = np.arange(read, read + len(chunk))
        read += len(chunk)
        both = chunk if kept is None else pd.concat([kept, chunk], ignore_index=True)
        kept = both.nsmallest(sample_rows, _KEY) if len(both) > sample_rows else both
    if kept is None:
        return pd.DataFrame(), 0
    kept = kept.sort_values(_ROW).drop(columns=[_KEY, _ROW]).reset_index(drop=True)
    return kept, read


def _csv_chunks(source: Source, filename: str, delimiter: str, encoding: str
                ) -> Iterator[pd.DataFrame]:
    with _open(source) as fh:
        try:
            yield from pd.read_csv(fh, sep=delimiter, dtype=str, skip_blank_lines=True, skipinitialspace=True,
                                   chunksize=CHUNK_ROWS, encoding=encoding, encoding_errors="replace")
        except pd.errors.EmptyDataError as exc:
            raise reject(filename, "the file has no header row or no data", "Upload a table whose first row "
                         "names the columns (e.g. text,label).") from exc
        except (pd.errors.ParserError, csv.Error, ValueError) as exc:
            detail = str(exc).strip().splitlines()[-1][:200]
            raise reject(filename, f"the rows could not be split into columns with {delimiter!r} ({detail})",
                         "Check that every row has the same number of fields and that text containing the "
                         "delimiter or line breaks is wrapped in double quotes.") from exc


def _parquet_chunks(source: Source, filename: str) -> Iterator[pd.DataFrame]:
    todo = "Export it again from your tool (pandas: df.to_parquet), or upload it as CSV."
    with _open(source) as fh:
        try:
            pf = pq.ParquetFile(fh)
            _check_header([str(n) for n in pf.schema_arrow.names], filename)
            for batch in pf.iter_batches(batch_size=CHUNK_ROWS):
                yield batch.to_pandas()
        except (pa.ArrowException, OSError, ValueError, TypeError) as exc:
            raise reject(filename, f"the Parquet file is corrupt or truncated ({str(exc)[:160]})", todo) from exc


def read_big_table(source: Source, filename: str, *, sample_rows: int = SAMPLE_ROWS,
                   seed: int = 0) -> tuple[pd.DataFrame, str, str | None, str | None, tuple[str, ...], Sampling]:
    """A big file (its bytes or its path) -> (sampled table with string column names, format, delimiter,
    encoding, notes, :class:`Sampling`); the notes end with the sampling's own."""
    size = source_size(source)
    if size > MAX_STREAM_BYTES:
        raise reject(filename, f"the file is {_size(size)}, over the {_size(MAX_STREAM_BYTES)} limit",
                     "Upload a sample of its rows: a few thousand per class are plenty.")
    head = _head(source)
    if not head.strip():
        raise reject(filename, "the file is empty", "Upload a CSV, TSV or Parquet file with a header row.")
    delimiter = encoding = None
    notes: tuple[str, ...] = ()
    file_format = _detect_format(head, filename)  # the whole-file reader's checks, on the file's first bytes
    if file_format == "parquet":
        chunks = _parquet_chunks(source, filename)
    else:
        encoding, notes = _encoding(head, complete=len(head) == size)
        text = head.decode(encoding, errors="replace")
        delimiter = sniff_delimiter(text, "\t" if file_format == "tsv" else ",")
        _check_header(_header(text, delimiter), filename)
        chunks = _csv_chunks(source, filename, delimiter, encoding)
    table, read = _sample(chunks, sample_rows, seed)
    if table.empty or len(table.columns) == 0:
        raise reject(filename, "the table has a header but no rows", "Add data rows below the header.")
    table.columns = [str(c).strip() for c in table.columns]
    sampling = Sampling(size, read, len(table), sample_rows, seed)
    return table, file_format, delimiter, encoding, (*notes, sampling.note()), sampling


def read_any_table(data: object, filename: str, max_bytes: int = MAX_UPLOAD_BYTES
                   ) -> tuple[pd.DataFrame, str, str | None, str | None, tuple[str, ...]]:
    """A file's bytes or its path (an :class:`os.PathLike`) -> (table with string column names, format, delimiter,
    encoding, notes): up to :data:`core.data.tables.READ_WHOLE_BYTES` read whole
    (:func:`core.data.tables.read_table`), above that in chunks and sampled (:func:`read_big_table`; the last note
    states the sampling), so memory does not grow with the file. Over ``max_bytes``: refused, saying so."""
    if isinstance(data, PathLike) or (isinstance(data, (bytes, bytearray, memoryview))
                                      and len(data) > READ_WHOLE_BYTES):
        size = source_size(data)
        if size > max_bytes:
            raise reject(filename, f"the file is {_size(size)}, over the {_size(max_bytes)} upload limit",
                         "Upload a sample of its rows: a few thousand are plenty, as every split is capped anyway.")
        if size > READ_WHOLE_BYTES:
            return read_big_table(data, filename)[:5]
        if isinstance(data, PathLike):
            data = Path(data).read_bytes()
    return read_table(data, filename, max_bytes)


def is_big(source: object, max_bytes: int = READ_WHOLE_BYTES) -> bool:
    """Whether ``source`` (bytes or a path) is over ``max_bytes`` and so read by :func:`read_big_table`."""
    try:
        return source_size(source) > max_bytes  # type: ignore[arg-type]
    except (OSError, TypeError):
        return False


__all__ = ["CHUNK_ROWS", "MAX_STREAM_BYTES", "SAMPLE_ROWS", "Sampling", "DataError", "is_big", "read_any_table",
           "read_big_table"]
