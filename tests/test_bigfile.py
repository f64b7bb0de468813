"""Big files (issue 23): a table over core.data.tables.READ_WHOLE_BYTES is read in chunks and sampled, within a
memory bound, with the sampling stated."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]

#: the stated bound: reading a big CSV raises the process's peak resident memory by less than this. Measured
#: here: +133 MB for a 57 MB file and +128 MB for a 171 MB one (flat: the sample plus one chunk); reading the
#: 57 MB file whole took +595 MB
PEAK_BOUND_MB = 250


def _write_reviews(path: Path, rows: int) -> None:
    rng = random.Random(0)
    words = [f"w{i}" for i in range(2000)] + ["great", "awful", "movie", "plot", "actor"]
    base = [" ".join(rng.choice(words) for _ in range(100)) for _ in range(1000)]
    with open(path, "w") as fh:
        fh.write("id,text,label\n")
        for i in range(rows):
            fh.write(f'{i},"review {i}: {base[i % 1000]}",{"pos" if i % 3 else "neg"}\n')


_MEASURE = """
import json, resource, sys
from core.data.upload import read_upload_file
def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
base = peak_mb()
loaded = read_upload_file(sys.argv[1], "text", "label")
print(json.dumps({"base_mb": base, "peak_mb": peak_mb(), "rows": len(loaded.frame),
                  "classes": list(loaded.label_names), "description": loaded.spec.description}))
"""


def test_a_big_csv_is_read_in_chunks_within_the_memory_bound(tmp_path):
    from core.data.bigfile import SAMPLE_ROWS
    from core.data.tables import READ_WHOLE_BYTES

    path = tmp_path / "reviews.csv"
    _write_reviews(path, 100_000)
    size = path.stat().st_size
    assert size > READ_WHOLE_BYTES  # ~57 MB: over what is read whole
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    grown = result["peak_mb"] - result["base_mb"]
    assert grown < PEAK_BOUND_MB, f"peak memory grew by {grown:.0f} MB reading a {size / 1e6:.0f} MB file"
    assert result["rows"] == SAMPLE_ROWS and result["classes"] == ["neg", "pos"]
    assert "100,000 rows read, 20,000 kept (a seeded uniform random sample, seed 0) and 80,000 dropped" \
        in result["description"]


def _csv_bytes(rows: int) -> bytes:
    frame = pd.DataFrame({"text": [f"text number {i}" for i in range(rows)],
                          "label": ["a" if i % 4 else "b" for i in range(rows)]})
    return frame.to_csv(index=False).encode()


def test_sampling_is_uniform_seeded_in_file_order_and_stated():
    from core.data.bigfile import read_big_table

    data = _csv_bytes(12_000)
    table, fmt, delim, enc, notes, sampling = read_big_table(data, "t.csv", sample_rows=3_000, seed=0)
    assert (fmt, delim, enc) == ("csv", ",", "utf-8-sig") and len(table) == 3_000
    assert (sampling.rows_read, sampling.rows_kept, sampling.rows_dropped) == (12_000, 3_000, 9_000)
    numbers = table["text"].str.split().str[-1].astype(int)
    assert numbers.is_monotonic_increasing and numbers.is_unique  # file order, no row twice
    # uniform: every quarter of the file and both classes keep about their share
    quarters = (numbers // 3_000).value_counts()
    assert quarters.min() > 600 and quarters.max() < 900
    assert abs((table["label"] == "b").mean() - 0.25) < 0.03
    again = read_big_table(data, "t.csv", sample_rows=3_000, seed=0)[0]
    other = read_big_table(data, "t.csv", sample_rows=3_000, seed=1)[0]
    assert again.equals(table) and not other.equals(table)
    assert "12,000 rows read, 3,000 kept" in notes[-1] and "9,000 dropped" in notes[-1]
    small = read_big_table(_csv_bytes(100), "s.csv", sample_rows=3_000)[5]
    assert small.rows_dropped == 0 and "all 100 kept" in small.note()


def test_big_parquet_is_read_in_batches():
    from core.data.bigfile import read_big_table

    frame = pd.DataFrame({"review": [f"r{i}" for i in range(9_000)], "y": [i % 3 for i in range(9_000)]})
    buf = io.BytesIO()
    frame.to_parquet(buf, row_group_size=2_000)
    table, fmt, delim, _, notes, sampling = read_big_table(buf.getvalue(), "t.parquet", sample_rows=1_000)
    assert fmt == "parquet" and delim is None and list(table.columns) == ["review", "y"]
    assert (sampling.rows_read, len(table)) == (9_000, 1_000)


def test_upload_and_file_paths_switch_to_chunks_over_the_threshold(monkeypatch, tmp_path):
    import core.data.bigfile as bigfile
    import core.data.upload as upload

    monkeypatch.setattr(bigfile, "READ_WHOLE_BYTES", 10_000)
    monkeypatch.setattr(upload, "READ_WHOLE_BYTES", 10_000)
    data = _csv_bytes(2_000)
    assert len(data) > 10_000
    loaded = upload.read_upload(data, "t.csv", "text", "label")
    assert len(loaded.frame) == 2_000 and "2,000 rows read, all 2,000 kept" in loaded.spec.description
    path = tmp_path / "t.csv"
    path.write_bytes(data)
    assert len(upload.read_upload_file(path).frame) == 2_000  # read from the path, columns guessed
    with pytest.raises(upload.DataError, match="over the 20.0 kB upload limit"):
        upload.read_upload(data, "t.csv", "text", "label", max_bytes=20_000)
    bad = b"\x89PNG\r\n\x1a\n" + bytes(20_000)
    with pytest.raises(upload.DataError, match="PNG image"):
        upload.read_upload(bad, "t.csv", "text", "label")
