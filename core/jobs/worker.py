"""The worker process of every job: ``python -m core.jobs.worker KIND STORE ARGS...`` (started by
:func:`core.jobs.launcher.spawn`). It applies the launcher's settings to itself, then does its kind's work
(:data:`WORKERS`) on the store; the exit code is 0 when the job finished as ``done``.

=======  ===========================================  ==========================================
kind     arguments (after the store folder)           work
=======  ===========================================  ==========================================
prune    RUN_ID [RUN_ID ...]                          :func:`core.jobs.execute.execute_run` each
merge    RUN_ID [RUN_ID ...]                          the same (a merge run's events differ)
study    STUDY_ID [--resume]                          :func:`core.studies.execute.run_local`
deploy   RUN_ID export|bench REPEATS INT8(0|1)        :func:`core.deploy.worker.run_job`
=======  ===========================================  ==========================================
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.deploy.bench import DeployBenchConfig
from core.deploy.worker import run_job
from core.jobs.execute import execute_run
from core.jobs.kinds import JobKind, job_kind
from core.jobs.launcher import JOB_ENV, SETTINGS, WorkerSettings, worker_setup
from core.jobs.queue import beat, get_job
from core.jobs.schedule import HEARTBEAT_S
from core.jobs.slots import max_jobs, threads_per_job
from core.runs.record import RunStatus
from core.runs.store import RunStore
from core.studies.execute import run_local
from core.studies.records import set_status


def _run_worker(store: RunStore, args: Sequence[str]) -> int:
    statuses = [execute_run(store, run_id) for run_id in args]
    return 0 if all(s == RunStatus.DONE for s in statuses) else 1


def _study_worker(store: RunStore, args: Sequence[str]) -> int:
    study_id, resume = args[0], "--resume" in args[1:]
    try:
        study = run_local(store, study_id, resume=resume)
    except Exception as exc:  # recorded for the page; the runs themselves are already marked
        set_status(store, study_id, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    return 0 if study.status == RunStatus.DONE else 1


def _deploy_worker(store: RunStore, args: Sequence[str]) -> int:
    run_id, job, repeats, int8 = args[:4]
    status = run_job(store, run_id, job, DeployBenchConfig(repeats=int(repeats), int8=int8 == "1"))
    print(json.dumps({"run_id": run_id, "job": job, "status": status}))
    return 0 if status == RunStatus.DONE else 1


@dataclass(frozen=True)
class KindSpec:
    """One kind of job: its label and what its worker does (store and arguments -> exit code)."""

    kind: JobKind
    label: str
    work: Callable[[RunStore, Sequence[str]], int]


WORKERS: dict[JobKind, KindSpec] = {
    JobKind.PRUNE: KindSpec(JobKind.PRUNE, "pruning run", _run_worker),
    JobKind.MERGE: KindSpec(JobKind.MERGE, "merging run", _run_worker),
    JobKind.STUDY: KindSpec(JobKind.STUDY, "study", _study_worker),
    JobKind.DEPLOY: KindSpec(JobKind.DEPLOY, "deploy check", _deploy_worker),
}


def _heartbeat(store: RunStore, job_id: str, stop: threading.Event) -> None:
    """Beat every :data:`~core.jobs.schedule.HEARTBEAT_S` seconds while the worker lives (the job layer's
    liveness rule reads it); a busy store only delays a beat."""
    while True:
        with contextlib.suppress(sqlite3.Error):
            beat(store, job_id)
        if stop.wait(HEARTBEAT_S):
            return


def _owns(store: RunStore, job_id: str) -> bool:
    """This process is the worker its job's claim recorded (it waits for the claim to commit; a claim that rolled
    back leaves the job waiting for another worker, and this one must not run it)."""
    with store.transaction():
        pass
    job = get_job(store, job_id)
    return job is not None and job.running and job.pid == os.getpid()


def main(argv: Sequence[str]) -> int:
    if len(argv) < 3:
        print("usage: python -m core.jobs.worker KIND STORE ARGS...", file=sys.stderr)
        return 2
    spec = WORKERS[job_kind(argv[0])]
    store = RunStore(argv[1])
    job_id = os.environ.get(JOB_ENV)
    stop = threading.Event()
    if job_id and not _owns(store, job_id):
        print(f"worker {os.getpid()}: job {job_id} is not claimed by this process; nothing to do", file=sys.stderr)
        return 0
    if job_id:  # started by the scheduler: beat (from now on), and share the cores with the other slots
        threading.Thread(target=_heartbeat, args=(store, job_id, stop), name="heartbeat", daemon=True).start()
        worker_setup(WorkerSettings(niceness=SETTINGS.niceness, threads=threads_per_job(max_jobs())))
    else:
        worker_setup()
    try:
        return spec.work(store, list(argv[2:]))
    finally:
        stop.set()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
