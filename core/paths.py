"""Where things live on disk (the user cache, the run store) and how files and folders are written there:
atomically (a temporary sibling renamed into place), so a reader never sees half of one."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """User cache: converted models and fine-tuned teachers. Override with ``PRUNE_CACHE_DIR``."""
    base = os.environ.get("PRUNE_CACHE_DIR")
    if base:
        path = Path(base)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        path = (Path(xdg) if xdg else Path.home() / ".cache") / "layer-prune-explorer"
    path.mkdir(parents=True, exist_ok=True)
    return path


def shown_path(path: str | Path) -> str:
    """A path as a page or a report may name it: relative to the project (``data/reference``) when inside it, else
    only its last two parts (``study/store``): never a machine's absolute path."""
    p = Path(path)
    try:
        return p.resolve().relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return "/".join(p.parts[-2:]) if len(p.parts) >= 2 else p.name


def store_dir() -> Path:
    """The run store (SQLite database plus one folder per run). Override with ``PRUNE_STORE_DIR``."""
    base = os.environ.get("PRUNE_STORE_DIR")
    path = Path(base) if base else PROJECT_ROOT / "data" / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


# ------------------------------------------------------------------------------------- atomic writes
def _tmp_name(path: Path, kind: str = "tmp") -> Path:
    """A unique sibling of ``path``: ``<name>.<kind>-<pid>-<8 hex>`` (``remove_stale_tmp`` finds these)."""
    return path.with_name(f"{path.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Write one file atomically: yields a temporary sibling path to write; when the block ends without an
    exception it replaces ``path`` (``os.replace``), so a reader sees the old file or the new one, never half
    of one. On an exception the temporary file is deleted and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_file`)."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)


@contextlib.contextmanager
def atomic_dir(dst: str | Path, *, replace: bool = True) -> Iterator[Path]:
    """Write a folder atomically: yields a new empty sibling folder to fill; when the block ends without an
    exception it is renamed to ``dst``. An existing ``dst`` is replaced (``replace=True``: moved aside, then
    deleted) or kept (``replace=False``, "first writer wins": another process finished the same folder
    first, so the new copy is dropped). On an exception the temporary folder is deleted and ``dst`` is
    untouched. A process killed half way leaves only a ``<name>.tmp-*`` sibling (see :func:`remove_stale_tmp`)."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(dst)
    tmp.mkdir()
    try:
        yield tmp
        _move_into_place(tmp, dst, replace)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _move_into_place(src: Path, dst: Path, replace: bool) -> None:
    old = None
    if dst.exists():
        if not replace:
            return
        old = _tmp_name(dst, "tmp-old")
        dst.rename(old)
    try:
        src.rename(dst)
    except OSError:
        if not replace and dst.exists():  # a concurrent writer finished the same folder first
            return
        if old is not None and not dst.exists():
            old.rename(dst)  # put the previous folder back
            old = None
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def remove_stale_tmp(path: str | Path, older_than_s: float) -> None:
    """Delete the temporary siblings of ``path`` (:func:`atomic_file`, :func:`atomic_dir`) left by killed
    writers: those untouched for ``older_than_s`` seconds (a younger one may belong to a running writer)."""
    path = Path(path)
    for old in path.parent.glob(f"{path.name}.tmp-*"):
        try:
            if time.time() - old.stat().st_mtime <= older_than_s:
                continue
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
        except OSError:
            pass
