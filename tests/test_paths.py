"""Atomic writes (core.paths): a reader sees the old file or folder or the new one, never half of one."""

from __future__ import annotations

import os
import time

import pytest

from core.paths import atomic_dir, atomic_file, atomic_write_text, remove_stale_tmp


def test_atomic_write_text_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "a.json"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two" and [p.name for p in path.parent.iterdir()] == ["a.json"]


def test_atomic_file_keeps_the_old_file_on_error(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="half way"):
        with atomic_file(path) as tmp:
            tmp.write_text("new, half writ")
            raise RuntimeError("half way")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.csv"]


def test_atomic_dir_replaces_keeps_or_rolls_back(tmp_path):
    dst = tmp_path / "model"
    with atomic_dir(dst) as tmp:
        assert tmp != dst and not dst.exists()
        (tmp / "w").write_text("1")
    with atomic_dir(dst) as tmp:  # replace=True: the new folder wins
        (tmp / "w").write_text("2")
    assert (dst / "w").read_text() == "2"
    with atomic_dir(dst, replace=False) as tmp:  # first writer wins: the existing folder stays
        (tmp / "w").write_text("3")
    assert (dst / "w").read_text() == "2"
    with pytest.raises(ValueError):
        with atomic_dir(dst) as tmp:
            (tmp / "w").write_text("4")
            raise ValueError("killed")
    assert (dst / "w").read_text() == "2" and [p.name for p in tmp_path.iterdir()] == ["model"]


def test_remove_stale_tmp_spares_young_ones(tmp_path):
    stale, fresh = tmp_path / "m.tmp-1-aaaa", tmp_path / "m.tmp-2-bbbb"
    stale.mkdir()
    fresh.write_text("x")
    os.utime(stale, (time.time() - 7200,) * 2)
    remove_stale_tmp(tmp_path / "m", 3600)
    assert not stale.exists() and fresh.exists()
