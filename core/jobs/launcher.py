"""The one way a job's process starts: ``python -m core.jobs.worker KIND STORE ARGS...`` as a fresh interpreter in
its own session (never ``multiprocessing``: the caller's ``__main__``, a Streamlit page or pytest, is never
re-executed, and the worker outlives a reload of the page that started it), with the project on
``PYTHONPATH``, no stdin and no stdout (stderr, where tracebacks go, stays the caller's). A daemon thread
waits for it (no zombie) and hands the ended process to ``on_exit``.

The worker applies :data:`SETTINGS` to itself first (:func:`worker_setup`): it runs at a lower priority, so the
app's server stays responsive while a job trains, and uses every core for its tensors.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from core.config import ConfigError
from core.paths import PROJECT_ROOT

WORKER_MODULE = "core.jobs.worker"
#: the worker's job id (its row in the store's jobs table), in the worker's environment
JOB_ENV = "PRUNE_JOB_ID"


@dataclass(frozen=True)
class WorkerSettings:
    """How a worker process runs: ``niceness`` added to its priority (0 leaves it), ``threads`` for torch
    (0: one per CPU core)."""

    niceness: int = 5
    threads: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.niceness <= 19:
            raise ConfigError(f"WorkerSettings.niceness must be within 0..19, got {self.niceness!r}")
        if self.threads < 0:
            raise ConfigError(f"WorkerSettings.threads must be >= 0 (0: one per core), got {self.threads!r}")

    @property
    def torch_threads(self) -> int:
        return self.threads or max(1, os.cpu_count() or 1)


#: every kind of job: training takes the idle CPU (niceness 5) on every core
SETTINGS = WorkerSettings()


def environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment: the caller's (or ``base``) with the project first on ``PYTHONPATH``."""
    env = dict(os.environ if base is None else base)
    root = str(PROJECT_ROOT)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def command(kind: str, store_root: str | Path, args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", WORKER_MODULE, str(kind), str(store_root), *map(str, args)]


def spawn(kind: str, store_root: str | Path, args: Sequence[str], *, job_id: str | None = None,
          on_exit: Callable[[subprocess.Popen[bytes]], object] | None = None) -> subprocess.Popen[bytes]:
    """Start a worker for a job of ``kind`` on the store at ``store_root``; returns its process. ``job_id`` (its
    row in the jobs table, :data:`JOB_ENV` in its environment) is what its heartbeat updates. ``on_exit`` runs in
    the reaper thread once the process has ended (``returncode`` set)."""
    env = environment()
    env.pop(JOB_ENV, None)
    if job_id:
        env[JOB_ENV] = job_id
    proc = subprocess.Popen(command(kind, store_root, args), cwd=str(PROJECT_ROOT), env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
    threading.Thread(target=_reap, args=(proc, on_exit), name=f"reap-{proc.pid}", daemon=True).start()
    return proc


def _reap(proc: subprocess.Popen[bytes], on_exit: Callable[[subprocess.Popen[bytes]], object] | None) -> None:
    proc.wait()
    if on_exit is not None:
        on_exit(proc)


def worker_setup(settings: WorkerSettings = SETTINGS) -> None:
    """Apply ``settings`` to this (worker) process: torch threads, then niceness."""
    torch.set_num_threads(settings.torch_threads)
    if settings.niceness:
        with contextlib.suppress(OSError, AttributeError):  # AttributeError: no os.nice (Windows)
            os.nice(settings.niceness)


def exit_reason(returncode: int | None, pid: int) -> str:
    """Why a worker process ended, in words (``returncode`` as :attr:`subprocess.Popen.returncode`)."""
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        why = " (what the out-of-memory killer does)" if name == "SIGKILL" else ""
        return f"The worker process (pid {pid}) was killed by {name}{why}."
    if returncode:
        return f"The worker process (pid {pid}) exited with code {returncode}."
    return f"The worker process (pid {pid}) ended before the job finished."
