"""What a job of each kind works on, and how its records follow the job's one lifecycle
(:mod:`core.jobs.schedule`): the runs of a pruning or merging job (rows of the runs table), a study (its row in the
studies table), a deploy check (``deploy/job.json`` in the run's folder). The scheduler calls these hooks and
nothing else of a kind:

* ``queued``     in the transaction that puts the job in the queue: the records read as queued
* ``pending``    in the claiming transaction: is there still work to start (else the job ends cancelled, no worker)
* ``claimed``    in the claiming transaction: the records take the worker's pid (so its death is seen at once)
* ``outcome``    how the work ended (None while some of it is still queued or running)
* ``interrupt``  the one exit hook's part: records the worker left unfinished end as interrupted, saying why
* ``withdraw``   a waiting job was cancelled: its records end as cancelled
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from core.jobs.kinds import JobKind
from core.jobs.queue import JobRow
from core.runs.artifacts import DEPLOY_JOB
from core.runs.record import ACTIVE, RunStatus, parse_status
from core.runs.store import RunStore
from core.studies import records

#: how a study's error ends when its worker stopped early
RESUME_HINT = "Resume finishes the missing cells."


@dataclass(frozen=True)
class KindHooks:
    queued: Callable[[sqlite3.Connection, RunStore, JobRow], None]
    pending: Callable[[sqlite3.Connection, RunStore, JobRow], bool]
    claimed: Callable[[sqlite3.Connection, RunStore, JobRow, int], None]
    outcome: Callable[[RunStore, JobRow], RunStatus | None]
    interrupt: Callable[[RunStore, JobRow, str], None]
    withdraw: Callable[[RunStore, JobRow], None]


def _marks(n: int) -> str:
    return ",".join("?" * n)


# ------------------------------------------------------------------------------------------ runs (prune, merge)
def _runs_queued(con: sqlite3.Connection, store: RunStore, job: JobRow) -> None:
    con.execute(f"UPDATE runs SET job_id=? WHERE id IN ({_marks(len(job.targets))})", (job.id, *job.targets))


def _runs_pending(con: sqlite3.Connection, store: RunStore, job: JobRow) -> bool:
    return con.execute("SELECT 1 FROM runs WHERE job_id=? AND status='queued' AND cancel_requested=0 LIMIT 1",
                       (job.id,)).fetchone() is not None


def _runs_claimed(con: sqlite3.Connection, store: RunStore, job: JobRow, pid: int) -> None:
    con.execute("UPDATE runs SET pid=? WHERE job_id=? AND status='queued' AND pid IS NULL", (pid, job.id))


def _runs_outcome(store: RunStore, job: JobRow) -> RunStatus | None:
    statuses = [run.status for run_id in job.targets if (run := store.get_run(run_id, check=False)) is not None]
    if not statuses or any(s in ACTIVE for s in statuses):
        return None  # still at work (or its runs were deleted: nothing says how it ended)
    for worst in (RunStatus.FAILED, RunStatus.INTERRUPTED, RunStatus.CANCELLED):
        if worst in statuses:
            return worst
    return RunStatus.DONE


def _runs_interrupt(store: RunStore, job: JobRow, reason: str) -> None:
    for run_id in job.targets:
        run = store.get_run(run_id, check=False)
        if run is not None and run.active:
            store.interrupt(run_id, reason)


def _runs_withdraw(store: RunStore, job: JobRow) -> None:
    for run_id in job.targets:
        store.request_cancel(run_id)  # a queued run ends cancelled at once


# ------------------------------------------------------------------------------------------ study
def _study_queued(con: sqlite3.Connection, store: RunStore, job: JobRow) -> None:
    con.execute("UPDATE studies SET status='queued', pid=NULL, error=NULL, finished_at=NULL WHERE id=?",
                (job.targets[0],))


def _study_pending(con: sqlite3.Connection, store: RunStore, job: JobRow) -> bool:
    row = con.execute("SELECT status FROM studies WHERE id=?", (job.targets[0],)).fetchone()
    return row is not None and row[0] == RunStatus.QUEUED


def _study_claimed(con: sqlite3.Connection, store: RunStore, job: JobRow, pid: int) -> None:
    con.execute("UPDATE studies SET pid=? WHERE id=? AND status='queued'", (pid, job.targets[0]))


def _study_outcome(store: RunStore, job: JobRow) -> RunStatus | None:
    status = parse_status(records.get_study(store, job.targets[0]).status)
    return None if status in ACTIVE else status


def _study_interrupt(store: RunStore, job: JobRow, reason: str) -> None:
    if records.get_study(store, job.targets[0]).status in ACTIVE:
        records.set_status(store, job.targets[0], RunStatus.INTERRUPTED, error=f"{reason} {RESUME_HINT}")


def _study_withdraw(store: RunStore, job: JobRow) -> None:
    records.request_cancel(store, job.targets[0])  # a queued study ends cancelled at once


# ------------------------------------------------------------------------------------------ deploy check
def _deploy_state(store: RunStore, job: JobRow) -> dict:
    return store.read_json(job.targets[0], DEPLOY_JOB) or {}


def _deploy_write(store: RunStore, row: JobRow, state: dict, **changes: object) -> None:
    store.write_json(row.targets[0], DEPLOY_JOB, {**state, **changes, "updated_at": time.time()})


def _deploy_queued(con: sqlite3.Connection, store: RunStore, job: JobRow) -> None:
    _deploy_write(store, job, {}, job=job.args[1], status=RunStatus.QUEUED, progress=0.0, pid=None,
                  message="Waiting in the queue", started_at=time.time())


def _deploy_status(state: dict) -> RunStatus:
    return parse_status(state.get("status") or RunStatus.QUEUED)


def _deploy_pending(con: sqlite3.Connection, store: RunStore, job: JobRow) -> bool:
    return _deploy_status(_deploy_state(store, job)) == RunStatus.QUEUED


def _deploy_claimed(con: sqlite3.Connection, store: RunStore, job: JobRow, pid: int) -> None:
    state = _deploy_state(store, job)
    if _deploy_status(state) == RunStatus.QUEUED:  # the worker may already have written its own state
        _deploy_write(store, job, state, pid=pid, message="Starting")


def _deploy_outcome(store: RunStore, job: JobRow) -> RunStatus | None:
    status = _deploy_status(_deploy_state(store, job))
    return None if status in ACTIVE else status


def _deploy_interrupt(store: RunStore, job: JobRow, reason: str) -> None:
    state = _deploy_state(store, job)
    if _deploy_status(state) in ACTIVE:
        _deploy_write(store, job, state, status=RunStatus.INTERRUPTED, error=reason)


def _deploy_withdraw(store: RunStore, job: JobRow) -> None:
    state = _deploy_state(store, job)
    if _deploy_status(state) in ACTIVE:
        _deploy_write(store, job, state, status=RunStatus.CANCELLED, message="Cancelled", error=None)


_RUNS = KindHooks(_runs_queued, _runs_pending, _runs_claimed, _runs_outcome, _runs_interrupt, _runs_withdraw)
HOOKS: dict[JobKind, KindHooks] = {
    JobKind.PRUNE: _RUNS,
    JobKind.MERGE: _RUNS,
    JobKind.STUDY: KindHooks(_study_queued, _study_pending, _study_claimed, _study_outcome, _study_interrupt,
                             _study_withdraw),
    JobKind.DEPLOY: KindHooks(_deploy_queued, _deploy_pending, _deploy_claimed, _deploy_outcome, _deploy_interrupt,
                              _deploy_withdraw),
}
