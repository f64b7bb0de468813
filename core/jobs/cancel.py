"""The one cancel path. A job still waiting in the queue leaves it as cancelled, with its records, and no worker
ever starts for it (:func:`core.jobs.schedule.withdraw`). A running run or study stops cooperatively: a flag in the
store that the worker reads after every event (within one training batch). A running deploy check has no such point
(an ONNX export is one call), so its worker's process group is terminated. A deploy check's job:
:func:`core.jobs.deploy.deploy_job`; a run's: :meth:`Job.of_run`; a study's: :meth:`Job.of_study`."""

from __future__ import annotations

import contextlib
import os
import signal
import time

from core.jobs import schedule
from core.jobs.kinds import RUN_KINDS, JobKind
from core.jobs.queue import job_for
from core.jobs.record import Job
from core.runs.artifacts import DEPLOY_JOB
from core.runs.record import ACTIVE, RunStatus, parse_status
from core.runs.store import RunStore
from core.studies import records


def cancel_run(store: RunStore, run_id: str) -> None:
    """A queued run ends cancelled at once (its job leaves the queue when none of its runs is left); a running
    one stops after its current batch."""
    store.request_cancel(run_id)
    run = store.get_run(run_id, check=False)
    if run is not None and run.job_id:
        schedule.withdraw_if_idle(store, run.job_id)


def cancel_study(store: RunStore, study_id: str) -> None:
    job = job_for(store, JobKind.STUDY, study_id)
    if job is not None and schedule.withdraw(store, job.id):
        return
    records.request_cancel(store, study_id)


def cancel_deploy(store: RunStore, run_id: str) -> None:
    job = job_for(store, JobKind.DEPLOY, run_id)
    if job is not None and schedule.withdraw(store, job.id):
        return
    state = store.read_json(run_id, DEPLOY_JOB) or {}
    if parse_status(state.get("status") or RunStatus.QUEUED) not in ACTIVE:
        return
    pid = state.get("pid") or (job.pid if job is not None and job.running else None)
    if pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(pid), signal.SIGTERM)  # the worker leads its own session (the launcher starts it so)
    store.write_json(run_id, DEPLOY_JOB, {**state, "status": RunStatus.CANCELLED, "message": "Cancelled",
                                          "error": None, "updated_at": time.time()})


def cancel(store: RunStore, job: Job) -> None:
    """Cancel ``job`` whatever its kind (a finished job is left as it is)."""
    if job.kind in RUN_KINDS:
        cancel_run(store, job.id)
    elif job.kind == JobKind.STUDY:
        cancel_study(store, job.id)
    else:
        cancel_deploy(store, job.id)
