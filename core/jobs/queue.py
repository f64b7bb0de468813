"""The store's ``jobs`` table (created by :mod:`core.runs.schema`): one row per job of any kind, read as a
:class:`JobRow`. This module only reads and writes rows; :mod:`core.jobs.schedule` decides when a job starts and
how it ends.

A job is ``queued`` (waiting for a slot), then ``running`` (claimed: its worker's pid and a heartbeat recorded),
then ended with the final status of its work (done, failed, cancelled, interrupted). A waiting job that is
cancelled ends ``cancelled`` without a worker ever starting. The claim counts the running jobs and takes the oldest
waiting one inside one ``BEGIN IMMEDIATE`` transaction (:meth:`core.runs.store.RunStore.transaction`): SQLite lets
one writer at a time in, so two processes (two app sessions, a worker's exit and a page's poll) never take the
same slot.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from core.jobs.kinds import JobKind, job_kind
from core.runs.record import ACTIVE, FINAL, RunStatus, parse_status
from core.runs.store import RunStore


@dataclass(frozen=True)
class JobRow:
    """One job: ``targets`` are what it works on (run ids, a study id, the run a deploy check checks), ``args``
    its worker's arguments (``python -m core.jobs.worker KIND STORE ARGS...``); ``model`` and ``units`` (runs,
    cells) are what its duration is estimated from."""

    id: str
    kind: JobKind
    targets: tuple[str, ...]
    args: tuple[str, ...]
    status: RunStatus
    created_at: float
    model: str = ""
    units: int = 1
    started_at: float | None = None
    finished_at: float | None = None
    heartbeat_at: float | None = None
    pid: int | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if not self.targets:
            raise ValueError(f"JobRow.targets must name what the job works on, got {self.targets!r}")
        if self.units < 1:
            raise ValueError(f"JobRow.units must be >= 1, got {self.units!r}")

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def waiting(self) -> bool:
        return self.status == RunStatus.QUEUED

    @property
    def running(self) -> bool:
        return self.status == RunStatus.RUNNING

    @property
    def seconds(self) -> float | None:
        """Wall time from its claim to its end, when both are known."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> JobRow:
        d = dict(row)
        return cls(id=str(d["id"]), kind=job_kind(d["kind"]), targets=tuple(json.loads(d["targets"])),
                   args=tuple(json.loads(d["args"])), status=parse_status(d["status"]),
                   created_at=float(d["created_at"]), model=str(d["model"] or ""), units=int(d["units"] or 1),
                   started_at=d["started_at"], finished_at=d["finished_at"], heartbeat_at=d["heartbeat_at"],
                   pid=None if d["pid"] is None else int(d["pid"]), error=d["error"])


def new_job(kind: JobKind, targets: Sequence[str], args: Sequence[str], *, model: str = "",
            units: int = 1) -> JobRow:
    """A new waiting job (not yet stored: :func:`insert`)."""
    job_id = time.strftime("%Y%m%d-%H%M%S") + "-j" + uuid.uuid4().hex[:6]
    return JobRow(id=job_id, kind=kind, targets=tuple(map(str, targets)), args=tuple(map(str, args)),
                  status=RunStatus.QUEUED, created_at=time.time(), model=model, units=max(1, units))


def insert(con: sqlite3.Connection, job: JobRow) -> None:
    con.execute("INSERT INTO jobs (id, kind, targets, args, model, units, status, created_at) VALUES (?,?,?,?,?,?,?,?)",
                (job.id, str(job.kind), json.dumps(list(job.targets)), json.dumps(list(job.args)), job.model,
                 job.units, str(job.status), job.created_at))


def get_job(store: RunStore, job_id: str) -> JobRow | None:
    with store.connection() as con:
        row = con.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
    return JobRow.from_row(row) if row else None


def job_for(store: RunStore, kind: JobKind, target: str) -> JobRow | None:
    """The newest job of ``kind`` that works on ``target`` (a run or study id), or None."""
    with store.connection() as con:
        row = con.execute("SELECT * FROM jobs WHERE kind=? AND EXISTS (SELECT 1 FROM json_each(jobs.targets) "
                          "WHERE value=?) ORDER BY created_at DESC, rowid DESC LIMIT 1",
                          (str(kind), target)).fetchone()
    return JobRow.from_row(row) if row else None


def active_jobs(store: RunStore) -> list[JobRow]:
    """The running jobs, then the waiting ones in the order they start (first come, first served)."""
    with store.connection() as con:
        rows = con.execute("SELECT * FROM jobs WHERE status IN (?, ?) ORDER BY status='queued', created_at, rowid",
                           (RunStatus.RUNNING.value, RunStatus.QUEUED.value)).fetchall()
    return [JobRow.from_row(r) for r in rows]


def finished_jobs(store: RunStore, kind: JobKind, model: str, limit: int = 20) -> list[JobRow]:
    """The newest ``limit`` jobs of ``kind`` and ``model`` that finished as done (their durations)."""
    with store.connection() as con:
        rows = con.execute("SELECT * FROM jobs WHERE kind=? AND model=? AND status='done' AND started_at IS NOT NULL "
                           "ORDER BY finished_at DESC LIMIT ?", (str(kind), model, limit)).fetchall()
    return [JobRow.from_row(r) for r in rows]


# ------------------------------------------------------------------------------------------ inside a claim
def running_count(con: sqlite3.Connection) -> int:
    return int(con.execute("SELECT COUNT(*) FROM jobs WHERE status='running'").fetchone()[0])


def next_waiting(con: sqlite3.Connection) -> JobRow | None:
    row = con.execute("SELECT * FROM jobs WHERE status='queued' ORDER BY created_at, rowid LIMIT 1").fetchone()
    return JobRow.from_row(row) if row else None


def mark_claimed(con: sqlite3.Connection, job_id: str, pid: int) -> None:
    """The job runs in worker ``pid`` from now on (no heartbeat yet: the worker is starting)."""
    now = time.time()
    con.execute("UPDATE jobs SET status='running', pid=?, started_at=?, heartbeat_at=NULL WHERE id=? AND "
                "status='queued'", (pid, now, job_id))


def mark_ended(con: sqlite3.Connection, job_id: str, status: RunStatus, error: str | None = None, *,
               waiting_only: bool = False) -> bool:
    """End an active job (only a waiting one with ``waiting_only``) as ``status``, a final one; False when it
    was not in that state."""
    if status not in FINAL:
        raise ValueError(f"a job ends as one of {[s.value for s in FINAL]}, got {status!r}")
    states = (RunStatus.QUEUED.value,) if waiting_only else (RunStatus.QUEUED.value, RunStatus.RUNNING.value)
    marks = ",".join("?" * len(states))
    changed = con.execute(f"UPDATE jobs SET status=?, finished_at=?, error=? WHERE id=? AND status IN ({marks})",
                          (str(status), time.time(), error, job_id, *states)).rowcount
    return bool(changed)


def beat(store: RunStore, job_id: str) -> None:
    """The worker's heartbeat: it is alive and working."""
    with store.transaction() as con:
        con.execute("UPDATE jobs SET heartbeat_at=? WHERE id=? AND status='running'", (time.time(), job_id))
