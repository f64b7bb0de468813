"""User uploads: happy paths for each format, and one test per way a file can be wrong. Every failure must be
a DataError whose message says what is wrong and what to do."""

from __future__ import annotations

import io
import pickle
import random

import pandas as pd
import pytest

from core.config import DataConfig
from core.data.batches import DataError, make_splits
from core.data.tables import MAX_UPLOAD_BYTES, READ_WHOLE_BYTES, sniff_delimiter
from core.data.upload import (
    UploadPreview,
    clean_upload,
    dataset_from_preview,
    guess_columns,
    inspect_upload,
    read_upload,
)

TODO_WORDS = ("upload", "pick", "save", "export", "add", "remove", "check", "give", "re-save")


def table(n: int = 30, classes: tuple[str, ...] = ("neg", "pos", "neutral")) -> pd.DataFrame:
    return pd.DataFrame({"id": range(n), "review": [f"review number {i}, quite long text" for i in range(n)],
                         "sentiment": [classes[i % len(classes)] for i in range(n)]})


def csv_bytes(frame: pd.DataFrame, sep: str = ",", encoding: str = "utf-8") -> bytes:
    return frame.to_csv(index=False, sep=sep).encode(encoding)


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def rejected(data, filename: str, *, text: str = "review", label: str = "sentiment", **kwargs) -> str:
    """read_upload refuses the file with a DataError naming it and saying what to do; returns the message."""
    with pytest.raises(DataError) as info:
        read_upload(data, filename, text, label, **kwargs)
    message = str(info.value)
    assert filename in message and any(w in message.lower() for w in TODO_WORDS), message
    return message


# ------------------------------------------------------------------------------------------ happy paths
def test_csv_with_quoted_commas():
    preview = inspect_upload(csv_bytes(table()), "reviews.csv")
    assert isinstance(preview, UploadPreview)
    assert (preview.file_format, preview.delimiter, preview.encoding) == ("csv", ",", "utf-8")
    assert preview.columns == ("id", "review", "sentiment") and preview.rows == 30
    assert (preview.text_column, preview.label_column) == ("review", "sentiment")
    loaded = read_upload(csv_bytes(table()), "reviews.csv", "review", "sentiment")
    assert loaded.label_names == ("neg", "neutral", "pos")
    assert loaded.frame["text"].iloc[0] == "review number 0, quite long text"
    assert loaded.frame["label"].tolist()[:3] == [0, 2, 1]
    assert loaded.spec.source == "upload" and loaded.spec.rows == 30 and loaded.spec.num_classes == 3
    splits = make_splits(loaded.frame, loaded.label_names, DataConfig())
    assert sum(splits.sizes().values()) == 30


def test_tsv():
    preview = inspect_upload(csv_bytes(table(), sep="\t"), "reviews.tsv")
    assert (preview.file_format, preview.delimiter) == ("tsv", "\t")
    assert len(read_upload(csv_bytes(table(), sep="\t"), "reviews.tsv", "review", "sentiment").frame) == 30


def test_semicolon_csv_is_sniffed():
    data = csv_bytes(table(), sep=";")
    preview = inspect_upload(data, "reviews.csv")
    assert preview.delimiter == ";" and preview.columns == ("id", "review", "sentiment")
    assert read_upload(data, "reviews.csv", "review", "sentiment").num_classes == 3


def test_tab_separated_txt_is_sniffed():
    assert inspect_upload(csv_bytes(table(), sep="\t"), "data.txt").delimiter == "\t"


def test_parquet():
    data = parquet_bytes(table())
    preview = inspect_upload(data, "reviews.parquet")
    assert preview.file_format == "parquet" and preview.delimiter is None
    assert (preview.text_column, preview.label_column) == ("review", "sentiment")
    assert read_upload(data, "reviews.parquet", "review", "sentiment").frame.shape == (30, 2)


def test_parquet_detected_by_content_whatever_the_name():
    assert inspect_upload(parquet_bytes(table()), "oops.csv").file_format == "parquet"


def test_numeric_label_column_sorted_numerically():
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(30)], "stars": [(1, 2, 10)[i % 3] for i in range(30)]})
    for data, name in ((csv_bytes(frame), "s.csv"), (parquet_bytes(frame), "s.parquet")):
        loaded = read_upload(data, name, "text", "stars")
        assert loaded.label_names == ("1", "2", "10")
        assert loaded.frame["label"].tolist()[:3] == [0, 1, 2]


def test_float_labels_with_gaps_lose_their_decimal_point():
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(12)], "y": [0.0, 1.0, None] * 4})
    loaded = read_upload(parquet_bytes(frame), "f.parquet", "text", "y")
    assert loaded.label_names == ("0", "1") and len(loaded.frame) == 8


def test_cleaning_strips_drops_blanks_and_duplicates():
    raw = (b"text,label\n  padded  ,a\n,a\n   ,b\nx,\ndup,b\nDup ,b\ndup,a\np,a\nq,b\nr,b\n")
    loaded = read_upload(raw, "c.csv", "text", "label")
    rows = list(zip(loaded.frame["text"], (loaded.label_names[c] for c in loaded.frame["label"])))
    assert rows == [("padded", "a"), ("dup", "b"), ("dup", "a"), ("p", "a"), ("q", "b"), ("r", "b")]
    assert "Dropped 3 row(s)" in loaded.spec.description and "1 duplicate row" in loaded.spec.description


def test_bom_and_crlf():
    data = b"\xef\xbb\xbf" + csv_bytes(table()).replace(b"\n", b"\r\n")
    preview = inspect_upload(data, "bom.csv")
    assert preview.columns[0] == "id" and preview.encoding == "utf-8"


def test_cp1252_is_read_with_a_note():
    frame = table()
    frame["review"] = [f"café crème {i}" for i in range(30)]
    preview = inspect_upload(csv_bytes(frame, encoding="cp1252"), "accents.csv")
    assert preview.encoding == "cp1252" and "UTF-8" in preview.notes[0]
    assert preview.table["review"].iloc[0] == "café crème 0"
    loaded = read_upload(csv_bytes(frame, encoding="cp1252"), "accents.csv", "review", "sentiment")
    assert "Windows-1252" in loaded.spec.description


def test_guess_columns_by_content_when_names_do_not_help():
    frame = pd.DataFrame({"a": [f"a long document about topic {i} and more" for i in range(20)],
                          "b": ["x", "y"] * 10, "c": range(20)})
    assert guess_columns(frame) == ("a", "b")
    assert guess_columns(pd.DataFrame({"n": range(5), "m": range(5)})) == (None, None)


def test_sniffer_keeps_quoted_delimiters_inside_fields():
    text = 'text;label\n"a; b, c";x\n"d, e";y\n'
    assert sniff_delimiter(text) == ";"
    assert sniff_delimiter("text,label\nhello; world,pos\n") == ","


# --------------------------------------------------------------------------------------------- bad input
def test_empty_file():
    assert "empty" in rejected(b"", "empty.csv")
    assert "empty" in rejected(b"  \n\n", "blank.csv")


def test_header_without_rows():
    assert "no rows" in rejected(b"review,sentiment\n", "header.csv")


def test_single_column():
    assert "one column" in rejected(b"review\nhello\nworld\n", "one.csv")


def test_no_rows_after_cleaning():
    assert "no rows are left" in rejected(b"review,sentiment\n ,a\n,b\nx,\n", "blank_rows.csv")


def test_missing_column_lists_the_columns():
    message = rejected(csv_bytes(table()), "r.csv", text="body")
    assert "'body'" in message and "id, review, sentiment" in message
    assert "label column 'stars'" in rejected(csv_bytes(table()), "r.csv", label="stars")


def test_same_column_for_text_and_label():
    assert "both" in rejected(csv_bytes(table()), "r.csv", text="review", label="review")


def test_duplicate_column_names():
    assert "'review'" in rejected(b"review,review,sentiment\na,b,c\n", "dup.csv")
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table([["a", "b"], ["c", "d"]], names=["review", "review"]), buf)
    assert "repeats" in rejected(buf.getvalue(), "dup.parquet")


def test_one_class():
    message = rejected(csv_bytes(table(classes=("pos",))), "one_class.csv")
    assert "single class" in message and "'pos'" in message


def test_class_too_small_to_stratify():
    frame = pd.concat([table(20, ("neg", "pos")), pd.DataFrame({"id": [99, 98], "review": ["r1", "r2"],
                                                                 "sentiment": ["rare", "rare"]})])
    message = rejected(csv_bytes(frame), "rare.csv")
    assert "'rare' (2 rows)" in message and "fewer than 3" in message


def test_numeric_only_text_column():
    assert "only numbers" in rejected(csv_bytes(table()), "nums.csv", text="id")
    assert "only numbers" in rejected(parquet_bytes(table()), "nums.parquet", text="id")


def test_file_over_the_size_limit():
    message = rejected(csv_bytes(table()), "big.csv", max_bytes=100)
    assert "over the 100 bytes upload limit" in message
    assert READ_WHOLE_BYTES == 50 * 1024 * 1024 < MAX_UPLOAD_BYTES  # bigger files are read in chunks


def test_png_renamed_csv():
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(random.Random(0).randrange(256) for _ in range(400))
    assert "PNG image" in rejected(png, "photo.csv")


def test_random_bytes():
    rng = random.Random(1)
    for size in (50, 300, 20_000):
        junk = bytes(rng.randrange(256) for _ in range(size))
        assert "binary" in rejected(junk, f"junk{size}.csv")


def test_pickle_is_never_unpickled():
    class Boom:
        def __reduce__(self):
            return (pytest.fail, ("a user's pickle was unpickled",))

    data = pickle.dumps(Boom(), protocol=5)
    assert "pickle" in rejected(data, "data.csv").lower()
    assert "Parquet" in rejected(data, "data.parquet")


def test_utf16_is_rejected_with_a_resave_hint():
    assert "UTF-16" in rejected(csv_bytes(table()).decode().encode("utf-16"), "u16.csv")


def test_corrupt_parquet():
    good = parquet_bytes(table())
    assert "corrupt" in rejected(good[: len(good) // 2], "half.parquet")
    assert "corrupt" in rejected(b"PAR1" + b"\x07" * 200, "junk.parquet")
    assert "not a valid Parquet" in rejected(b"review,sentiment\na,b\n", "renamed.parquet")


def test_unsupported_extension():
    assert "'.json'" in rejected(b'{"review": "a"}', "data.json")


def test_ragged_rows():
    assert "same number of fields" in rejected(b"review,sentiment\na,b\nc,d,e,f\n", "ragged.csv")


def test_nested_parquet_columns():
    frame = pd.DataFrame({"review": [["a", "b"], ["c"]] * 5, "sentiment": ["x", "y"] * 5})
    assert "not text" in rejected(parquet_bytes(frame), "nested.parquet")
    frame = pd.DataFrame({"review": ["a", "b"] * 5, "sentiment": [["x"], ["y"]] * 5})
    assert "nested" in rejected(parquet_bytes(frame), "nested_label.parquet")


def test_not_bytes():
    assert "bytes" in rejected("review,sentiment\n", "str.csv")


def test_unexpected_errors_become_data_errors(monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pd, "read_csv", explode)
    message = rejected(csv_bytes(table()), "r.csv")
    assert "RuntimeError" in message
    with pytest.raises(DataError):
        inspect_upload(csv_bytes(table()), "r.csv")


def test_fuzzed_inputs_raise_only_data_errors():
    rng = random.Random(7)
    seeds = [csv_bytes(table()), csv_bytes(table(), sep=";"), parquet_bytes(table())]
    for i in range(30):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cut = rng.randint(0, len(data))
        for name in ("f.csv", "f.parquet", "f.tsv"):
            try:
                read_upload(bytes(data[:cut] if i % 3 == 0 else data), name, "review", "sentiment")
            except DataError:
                pass


def test_dataset_from_preview_matches_read_upload():
    preview = inspect_upload(csv_bytes(table()), "r.csv")
    direct = read_upload(csv_bytes(table()), "r.csv", "review", "sentiment")
    via = dataset_from_preview(preview, preview.text_column, preview.label_column)
    assert via.frame.equals(direct.frame) and via.label_names == direct.label_names
    with pytest.raises(DataError, match="no text column 'body'"):
        dataset_from_preview(preview, "body", "sentiment")


def test_clean_upload_is_usable_on_a_frame():
    frame, names, notes = clean_upload(table(), "review", "sentiment")
    assert names == ("neg", "neutral", "pos") and len(frame) == 30 and notes == ()
