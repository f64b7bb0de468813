"""Starting and watching a run's deploy check (:mod:`core.deploy.worker` does the work in a worker process)."""

from __future__ import annotations

import subprocess
import time

from core.config import ConfigError, check_choice
from core.deploy.bench import DeployBenchConfig
from core.deploy.worker import JOB_FILE, JOBS
from core.jobs.kinds import JobKind
from core.jobs.launcher import exit_reason, spawn
from core.jobs.record import Job
from core.runs.liveness import pid_alive
from core.runs.record import ACTIVE, RunStatus
from core.runs.store import RunStore

#: seconds a started job may take to record its process id before it counts as dead
STARTUP_S = 120.0


def deploy_job(store: RunStore, run_id: str) -> Job | None:
    """The run's last deploy check (``None`` if it never had one). One whose process is gone before it finished
    is marked interrupted (in its file too), saying so."""
    state = store.read_json(run_id, JOB_FILE)
    if not state:
        return None
    job = Job.of_deploy(run_id, state)
    if not job.active:
        return job
    never_started = job.pid is None and time.time() - float(job.started_at or 0) > STARTUP_S
    if never_started or (job.pid is not None and not pid_alive(job.pid)):
        _end(store, run_id, state, RunStatus.INTERRUPTED, "the worker process ended without finishing")
        return Job.of_deploy(run_id, store.read_json(run_id, JOB_FILE) or state)
    return job


def deploy_running(store: RunStore, run_id: str) -> bool:
    job = deploy_job(store, run_id)
    return bool(job and job.active)


def _end(store: RunStore, run_id: str, state: dict, status: RunStatus, error: str) -> None:
    store.write_json(run_id, JOB_FILE, {**state, "status": status, "error": error, "updated_at": time.time()})


def start_deploy(store: RunStore, run_id: str, job: str, *, repeats: int = DeployBenchConfig.repeats,
                 int8: bool = False) -> subprocess.Popen[bytes]:
    """Start a deploy check (``export`` or ``bench``) of ``run_id`` in a worker process; refuses while one is
    running for that run. Returns the worker's process."""
    check_choice("start_deploy", "job", job, JOBS)
    DeployBenchConfig(repeats=repeats, int8=int8)  # validate here, in the caller, not in the worker
    if store.get_run(run_id) is None:
        raise ConfigError(f"start_deploy.run_id: no run {run_id!r}")
    if deploy_running(store, run_id):
        raise ValueError(f"A deploy job is already running for run {run_id}; wait for it to finish.")
    store.write_json(run_id, JOB_FILE, {"job": job, "status": RunStatus.QUEUED, "progress": 0.0, "pid": None,
                                        "message": "Starting", "started_at": time.time()})

    def on_exit(proc: subprocess.Popen[bytes]) -> None:
        state = store.read_json(run_id, JOB_FILE) or {}
        if state.get("status") in ACTIVE:
            _end(store, run_id, state, RunStatus.INTERRUPTED, exit_reason(proc.returncode, proc.pid))

    proc = spawn(JobKind.DEPLOY, store.root, [run_id, job, str(repeats), str(int(int8))], on_exit=on_exit)
    state = store.read_json(run_id, JOB_FILE) or {}
    if state.get("status") == RunStatus.QUEUED:  # the worker may already have written its own state
        store.write_json(run_id, JOB_FILE, {**state, "pid": proc.pid})
    return proc
