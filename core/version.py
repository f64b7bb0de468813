"""Which code produced a result: the git commit of this checkout (recorded with every run and bank row)."""

from __future__ import annotations

import functools
import subprocess

from core.paths import PROJECT_ROOT


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``git describe --always --dirty`` of the project, or ``"unknown"`` outside a git checkout."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, timeout=5, check=True)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
