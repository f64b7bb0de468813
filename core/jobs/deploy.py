"""Starting and watching a run's deploy check (:mod:`core.deploy.worker` does the work in a worker process). A
deploy check is one job of the store's queue (:mod:`core.jobs.schedule`); its progress is the run's
``deploy/job.json``, which its worker writes."""

from __future__ import annotations

import subprocess
import time

from core.config import ConfigError, check_choice
from core.deploy.bench import DeployBenchConfig
from core.deploy.worker import JOB_FILE, JOBS
from core.jobs import schedule
from core.jobs.kinds import JobKind
from core.jobs.queue import job_for
from core.jobs.record import Job
from core.runs.liveness import pid_alive
from core.runs.record import RunStatus
from core.runs.store import RunStore

#: seconds a deploy check recorded before the job queue may stay without a process id before it counts as dead
STARTUP_S = 120.0


def deploy_job(store: RunStore, run_id: str) -> Job | None:
    """The run's last deploy check (``None`` if it never had one), after the liveness rule: its job's
    (:func:`core.jobs.schedule.check_job`), or for a check recorded before the job queue, its file's pid."""
    row = job_for(store, JobKind.DEPLOY, run_id)
    if row is not None and row.running:
        schedule.check_job(store, row)
    state = store.read_json(run_id, JOB_FILE)
    if not state:
        return None
    job = Job.of_deploy(run_id, state, job_id=row.id if row is not None else None)
    if not job.active or (row is not None and row.active):
        return job
    never_started = job.pid is None and time.time() - float(job.started_at or 0) > STARTUP_S
    if never_started or (job.pid is not None and not pid_alive(job.pid)):
        store.write_json(run_id, JOB_FILE, {**state, "status": RunStatus.INTERRUPTED, "updated_at": time.time(),
                                            "error": "the worker process ended without finishing"})
        return Job.of_deploy(run_id, store.read_json(run_id, JOB_FILE) or state, job_id=job.job_id)
    return job


def deploy_running(store: RunStore, run_id: str) -> bool:
    """A deploy check of the run is waiting in the queue or running."""
    job = deploy_job(store, run_id)
    return bool(job and job.active)


def start_deploy(store: RunStore, run_id: str, job: str, *, repeats: int = DeployBenchConfig.repeats,
                 int8: bool = False) -> subprocess.Popen[bytes] | None:
    """Queue a deploy check (``export`` or ``bench``) of ``run_id``; refuses while one is waiting or running for
    that run. Returns the worker's process when it started at once, None while the job waits for a slot."""
    check_choice("start_deploy", "job", job, JOBS)
    DeployBenchConfig(repeats=repeats, int8=int8)  # validate here, in the caller, not in the worker
    run = store.get_run(run_id)
    if run is None:
        raise ConfigError(f"start_deploy.run_id: no run {run_id!r}")
    if deploy_running(store, run_id):
        raise ValueError(f"A deploy job is already running (or waiting in the queue) for run {run_id}; wait for it "
                         "to finish.")
    row = schedule.submit(store, JobKind.DEPLOY, [run_id], [run_id, job, str(repeats), str(int(int8))],
                          model=run.model)
    return schedule.process(row.id)
