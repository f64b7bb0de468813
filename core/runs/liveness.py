"""Is a job's process alive? The one check behind every liveness decision: the store's reads (a run whose worker
is gone reads as interrupted), the studies' and deploy checks' records, and the job layer's reaper
(:mod:`core.jobs.liveness`)."""

from __future__ import annotations

import os


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (finished child not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
