"""Run-store artifacts are written atomically (issue 15, bug 5): a write that dies half-way leaves the
previous version readable. Checking only that no temporary file is left behind does not tell an atomic
write from a plain one; a write that fails in the middle does.

The failure is injected at the file level: every file opened for writing under the store while the write
runs gets half of its first ``write`` and then raises ``OSError`` (a full disk, a killed process), whatever
the store uses to write it (``Path.write_text``, ``open``, pandas).
"""

from __future__ import annotations

import builtins
import io
from pathlib import Path

import pandas as pd
import pytest

from core.runs.store import RunStore


class _HalfWriter:
    """A writable file that stores half of the first chunk it is given and then fails."""

    def __init__(self, real) -> None:
        self._real = real

    def write(self, data):
        self._real.write(data[: max(1, len(data) // 2)])
        self._real.flush()
        raise OSError(28, "No space left on device (injected)")

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._real.close()
        return False

    def __iter__(self):
        return iter(self._real)


@pytest.fixture()
def fail_half_way(monkeypatch):
    """Call ``fail_half_way(root)``: from then on, writes of files under ``root`` die half-way."""

    def arm(root: Path) -> None:
        real_open = builtins.open
        root = Path(root).resolve()

        def failing_open(file, mode="r", *args, **kwargs):
            handle = real_open(file, mode, *args, **kwargs)
            writing = any(flag in mode for flag in "wax+")
            inside = isinstance(file, int) or (isinstance(file, (str, Path)) and root in Path(file).resolve().parents)
            return _HalfWriter(handle) if writing and inside else handle

        monkeypatch.setattr(builtins, "open", failing_open)
        monkeypatch.setattr(io, "open", failing_open)

    return arm


@pytest.fixture()
def store(tmp_path):
    return RunStore(tmp_path / "store")


def _run(store: RunStore) -> str:
    return store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy="oracle",
                            config={"model": "tiny-bert"})


def test_failed_json_write_keeps_the_previous_version(store, fail_half_way):
    rid = _run(store)
    first = {"step": 1, "layers": list(range(40)), "note": "the first version " * 20}
    store.write_json(rid, "summary/result.json", first)
    fail_half_way(store.run_dir(rid))
    with pytest.raises(OSError, match="injected"):
        store.write_json(rid, "summary/result.json", {"step": 2, "layers": list(range(80)), "note": "x" * 900})
    assert store.read_json(rid, "summary/result.json") == first
    assert [f.name for f in (store.run_dir(rid) / "summary").iterdir()] == ["result.json"]  # no temp left


def test_failed_table_write_keeps_the_previous_version(store, fail_half_way):
    rid = _run(store)
    first = pd.DataFrame({"layer": range(12), "accuracy": [0.5 + i / 100 for i in range(12)]})
    store.write_table(rid, "steps/1/oracle.csv", first)
    fail_half_way(store.run_dir(rid))
    second = pd.DataFrame({"layer": range(300), "accuracy": [0.1] * 300})
    with pytest.raises(OSError, match="injected"):
        store.write_table(rid, "steps/1/oracle.csv", second)
    pd.testing.assert_frame_equal(store.read_table(rid, "steps/1/oracle.csv"), first)
    assert [f.name for f in (store.run_dir(rid) / "steps/1").iterdir()] == ["oracle.csv"]  # no temp left


def test_the_injected_failure_does_corrupt_a_plain_write(tmp_path, fail_half_way):
    """The check above can fail: the same injection truncates a file written in place."""
    target = tmp_path / "plain.json"
    target.write_text('{"v": 1}')
    fail_half_way(tmp_path)
    with pytest.raises(OSError, match="injected"):
        target.write_text('{"v": 2, "padding": "' + "x" * 100 + '"}')
    assert target.read_text() != '{"v": 1}'
