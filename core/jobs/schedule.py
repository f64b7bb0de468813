"""The scheduler: every job of every kind waits in the store's one queue (:mod:`core.jobs.queue`) and at most
:func:`core.jobs.slots.max_jobs` of them run at once; each ends through one exit hook (:func:`settle`) under one
liveness rule (:func:`dead_because`).

There is no scheduler process. A slot is claimed inside one ``BEGIN IMMEDIATE`` transaction of the store's own
SQLite (count the running jobs, take the oldest waiting one, start its worker, record its pid, commit), and that is
tried at the three moments a slot can change hands:

* on submit (:func:`submit`): the new job starts at once when a slot is free, else it waits as queued;
* on a worker's exit: the launcher's reaper thread in the process that started it runs :func:`settle` with the exit
  code, then :func:`dispatch`;
* on every liveness check (:func:`tick`: the pages' polls, the runner's start, :func:`core.jobs.liveness.reap`): a
  worker that died where no reaper thread saw it (the app restarted, a worker killed) frees its slot within one poll.

The liveness rule: a running job is dead when its worker's pid no longer runs (or is a zombie) or its heartbeat (the
worker beats every :data:`HEARTBEAT_S` seconds from a thread of its own) is older than :data:`HEARTBEAT_TIMEOUT_S`
(its first beat may take :data:`STARTUP_TIMEOUT_S` from the claim: a worker imports torch first, slowly on a busy
machine). A waiting job is never dead: nothing runs it yet. Cancelling a waiting job ends it (and its records) as
cancelled without a worker ever starting (:func:`withdraw`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence

from core.jobs import launcher
from core.jobs.kinds import JobKind
from core.jobs.queue import (
    JobRow,
    get_job,
    insert,
    mark_claimed,
    mark_ended,
    new_job,
    next_waiting,
    running_count,
)
from core.jobs.slots import max_jobs
from core.jobs.targets import HOOKS
from core.runs.liveness import pid_alive
from core.runs.record import RunStatus
from core.runs.store import RunStore

#: seconds between two heartbeats of a worker
HEARTBEAT_S = 5.0
#: a running job whose worker has not beaten for this long is dead (a frozen process, or a pid now another's)
HEARTBEAT_TIMEOUT_S = 120.0
#: the time a started worker has for its first beat (its imports come first)
STARTUP_TIMEOUT_S = 600.0

CANCELLED_WAITING = "Cancelled while it waited in the queue: no worker was started."

#: the workers this process started, by job id (the runner's join and alive read them)
SPAWNED: dict[str, subprocess.Popen[bytes]] = {}
_spawned_lock = threading.Lock()


def submit(store: RunStore, kind: JobKind, targets: Sequence[str], args: Sequence[str], *, model: str = "",
           units: int = 1) -> JobRow:
    """Put a job in the queue (its records read as queued from now on) and start it when a slot is free; returns
    the job as it is after that (``running`` when it started, ``queued`` when it waits)."""
    job = new_job(kind, targets, args, model=model, units=units)
    max_jobs()  # a wrong PRUNE_MAX_JOBS is the submitter's error, before anything is recorded
    with store.transaction() as con:
        insert(con, job)
        HOOKS[kind].queued(con, store, job)
    dispatch(store)
    return get_job(store, job.id) or job


def dispatch(store: RunStore) -> list[JobRow]:
    """Apply the liveness rule to the running jobs, then start waiting jobs while slots are free; returns the
    jobs started (their workers are in :data:`SPAWNED`)."""
    check_running(store)
    return _fill_slots(store)


def tick(store: RunStore) -> list[JobRow]:
    """A liveness check: end the running jobs whose worker is dead, give their slots to waiting jobs; returns the
    jobs that ended."""
    ended = check_running(store)
    _fill_slots(store)
    return ended


def _fill_slots(store: RunStore) -> list[JobRow]:
    slots = max_jobs()
    started: list[JobRow] = []
    with store.connection() as con:  # a read first: most polls find nothing to start and take no write lock
        if next_waiting(con) is None or running_count(con) >= slots:
            return started
    while True:
        job, proc = _claim_one(store, slots)
        if job is None:
            return started
        if proc is not None:
            with _spawned_lock:
                SPAWNED[job.id] = proc
            started.append(job)


def _claim_one(store: RunStore, slots: int) -> tuple[JobRow | None, subprocess.Popen[bytes] | None]:
    """Claim one slot for the oldest waiting job and start its worker, in one transaction: (the job, its worker),
    (a job, None) when it was ended instead (nothing left to run), (None, None) when no slot or no job is left."""
    proc: subprocess.Popen[bytes] | None = None
    try:
        with store.transaction() as con:  # one claimer at a time, across processes
            job = next_waiting(con) if running_count(con) < slots else None
            if job is None:
                return None, None
            hooks = HOOKS[job.kind]
            if not hooks.pending(con, store, job):  # everything it would run was cancelled while it waited
                mark_ended(con, job.id, RunStatus.CANCELLED, CANCELLED_WAITING, waiting_only=True)
                return job, None
            proc = launcher.spawn(job.kind, store.root, job.args, job_id=job.id,
                                  on_exit=functools.partial(_exited, store, job.id))
            mark_claimed(con, job.id, proc.pid)
            hooks.claimed(con, store, job, proc.pid)
        return job, proc
    except BaseException:  # the claim rolled back (or never committed): its worker must not run a waiting job
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        raise


def _exited(store: RunStore, job_id: str, proc: subprocess.Popen[bytes]) -> None:
    """The launcher's reaper thread: the worker of ``job_id`` has ended (and been waited for)."""
    settle(store, job_id, launcher.exit_reason(proc.returncode, proc.pid), pid=proc.pid)
    dispatch(store)


def _committed(store: RunStore, job_id: str) -> JobRow | None:
    """The job as committed: waits for a claim in flight (a worker can exit before its claim commits)."""
    with store.transaction():
        pass
    return get_job(store, job_id)


def settle(store: RunStore, job_id: str, reason: str, *, pid: int | None = None) -> JobRow | None:
    """The one exit hook, for every kind: the worker of a running job is gone. Its records still unfinished end
    as interrupted with ``reason``; the job ends with the status its work ended with (done, failed, cancelled,
    interrupted). Returns the ended job, or None when it was not running (already settled, or ``pid`` is not its
    worker)."""
    job = _committed(store, job_id)
    if job is None or not job.running or (pid is not None and job.pid != pid):
        return None
    hooks = HOOKS[job.kind]
    if hooks.outcome(store, job) is None:
        hooks.interrupt(store, job, reason)
    status = hooks.outcome(store, job) or RunStatus.INTERRUPTED
    with store.transaction() as con:
        if not mark_ended(con, job.id, status, reason if status == RunStatus.INTERRUPTED else None):
            return None
    return get_job(store, job.id)


def dead_because(job: JobRow, now: float | None = None) -> str | None:
    """The liveness rule: why the running ``job`` is dead, or None while it lives (a waiting job always does)."""
    if not job.running:
        return None
    if not pid_alive(job.pid):
        return f"The worker process (pid {job.pid}) stopped before the job finished (killed, or it crashed)."
    silent = (now or time.time()) - (job.heartbeat_at or job.started_at or job.created_at)
    if silent > (HEARTBEAT_TIMEOUT_S if job.heartbeat_at else STARTUP_TIMEOUT_S):
        return f"The worker process (pid {job.pid}) gave no heartbeat for {silent:.0f} s and was stopped."
    return None


def _is_our_worker(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return launcher.WORKER_MODULE.encode() in fh.read()
    except OSError:
        return False


def check_job(store: RunStore, job: JobRow) -> JobRow | None:
    """Apply the liveness rule to one job: settle it when dead (then a silent worker that still runs is
    stopped); returns the ended job, or None while it lives."""
    why = dead_because(job)
    if why is None:
        return None
    ended = settle(store, job.id, why, pid=job.pid)
    if ended is not None and job.pid and pid_alive(job.pid) and _is_our_worker(job.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job.pid, signal.SIGKILL)  # frozen: it would hold its memory and maybe wake up later
    return ended


def check_running(store: RunStore) -> list[JobRow]:
    """Apply the liveness rule to every running job; returns those that ended."""
    with store.connection() as con:
        rows = con.execute("SELECT * FROM jobs WHERE status='running'").fetchall()
    ended = [check_job(store, JobRow.from_row(r)) for r in rows]
    return [job for job in ended if job is not None]


def withdraw(store: RunStore, job_id: str) -> bool:
    """Cancel a waiting job: its records end as cancelled and it leaves the queue without a worker ever
    starting. False when it is no longer waiting (a running job stops through its kind's cancel)."""
    job = get_job(store, job_id)
    if job is None or not job.waiting:
        return False
    with store.transaction() as con:
        ended = mark_ended(con, job_id, RunStatus.CANCELLED, CANCELLED_WAITING, waiting_only=True)
    if ended:
        HOOKS[job.kind].withdraw(store, job)
    return ended


def withdraw_if_idle(store: RunStore, job_id: str) -> bool:
    """End a waiting job as cancelled when nothing it would run is left (its runs were cancelled one by one)."""
    with store.transaction() as con:
        row = con.execute("SELECT * FROM jobs WHERE id=? AND status='queued'", (job_id,)).fetchone()
        if row is None or HOOKS[(job := JobRow.from_row(row)).kind].pending(con, store, job):
            return False
        return mark_ended(con, job_id, RunStatus.CANCELLED, CANCELLED_WAITING, waiting_only=True)


def process(job_id: str) -> subprocess.Popen[bytes] | None:
    """The worker of ``job_id`` when this process started it."""
    with _spawned_lock:
        return SPAWNED.get(job_id)
