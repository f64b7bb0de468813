"""How many heavy jobs may run at once on this machine (the scheduler's slots) and how many torch threads each
worker then uses.

Every kind of job (a pruning or merging run, a study, a deploy check) is heavy: it loads a model and trains or
times it on every core it is given. One e5-small worker holds about :data:`WORKER_GIB` GiB. The default is what the
cores and the memory both allow: one job per :data:`CORES_PER_JOB` cores, and the workers together within half the
memory (1 on a 2-core, 24 GB machine; 8 on 16 cores and 128 GB). ``PRUNE_MAX_JOBS`` sets it (a whole number >= 1).
"""

from __future__ import annotations

import os

from core.config import ConfigError

#: the environment variable that sets the number of slots
MAX_JOBS_ENV = "PRUNE_MAX_JOBS"
#: cores one heavy job is given (a worker trains on all of them: two jobs on two cores are each twice as slow)
CORES_PER_JOB = 2
#: resident memory of one e5-small worker while pruning (measured 1.9 GB), rounded up
WORKER_GIB = 2.0
#: the share of the machine's memory the workers may hold together
MEMORY_SHARE = 0.5


def memory_gib() -> float | None:
    """The machine's memory in GiB (``/proc/meminfo``, else ``sysconf``), or None when neither says."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def default_slots(cores: int | None = None, mem_gib: float | None = None) -> int:
    """What the machine allows: ``cores // CORES_PER_JOB`` jobs, and no more than fit in half the memory."""
    cores = cores if cores is not None else (os.cpu_count() or 1)
    mem_gib = mem_gib if mem_gib is not None else memory_gib()
    by_cores = cores // CORES_PER_JOB
    by_memory = int(mem_gib * MEMORY_SHARE // WORKER_GIB) if mem_gib is not None else by_cores
    return max(1, min(by_cores, by_memory))


def max_jobs(environ: dict[str, str] | None = None) -> int:
    """The number of heavy jobs that may run at once: ``PRUNE_MAX_JOBS`` when set, else :func:`default_slots`."""
    env = os.environ if environ is None else environ
    text = env.get(MAX_JOBS_ENV, "").strip()
    if not text:
        return default_slots()
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{MAX_JOBS_ENV} must be a whole number >= 1 (heavy jobs at once), got {text!r}")
    return value


def threads_per_job(slots: int, cores: int | None = None) -> int:
    """Torch threads of one worker when ``slots`` jobs share the cores (all of them when one job runs)."""
    cores = cores if cores is not None else (os.cpu_count() or 1)
    return max(1, cores // max(1, slots))
