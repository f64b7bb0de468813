"""Where things live on disk: the user cache (converted models, teachers) and the run store."""

from __future__ import annotations

import os
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


def store_dir() -> Path:
    """The run store (SQLite database plus one folder per run). Override with ``PRUNE_STORE_DIR``."""
    base = os.environ.get("PRUNE_STORE_DIR")
    path = Path(base) if base else PROJECT_ROOT / "data" / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path
