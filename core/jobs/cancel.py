"""The one cancel path. Runs and studies stop cooperatively: a flag in the store that the worker reads after
every event (within one training batch); a queued one ends as cancelled at once. A deploy check has no such
point (an ONNX export is one call), so its worker's process group is terminated. A deploy check's job:
:func:`core.jobs.deploy.deploy_job`; a run's: :meth:`Job.of_run`; a study's: :meth:`Job.of_study`."""

from __future__ import annotations

import contextlib
import os
import signal
import time

from core.jobs.kinds import RUN_KINDS, JobKind
from core.jobs.record import Job
from core.runs.record import RunStatus
from core.runs.store import RunStore
from core.studies import records


def cancel_run(store: RunStore, run_id: str) -> None:
    store.request_cancel(run_id)


def cancel_study(store: RunStore, study_id: str) -> None:
    records.request_cancel(store, study_id)


def cancel_deploy(store: RunStore, run_id: str) -> None:
    from core.jobs.deploy import JOB_FILE, deploy_job  # loads torch: only when a deploy check is cancelled

    job = deploy_job(store, run_id)
    if job is None or not job.active:
        return
    if job.pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job.pid, signal.SIGTERM)  # the worker leads its own session (the launcher starts it so)
    state = store.read_json(run_id, JOB_FILE) or {}
    store.write_json(run_id, JOB_FILE, {**state, "status": RunStatus.CANCELLED, "message": "Cancelled",
                                        "error": None, "updated_at": time.time()})


def cancel(store: RunStore, job: Job) -> None:
    """Cancel ``job`` whatever its kind (a finished job is left as it is)."""
    if job.kind in RUN_KINDS:
        cancel_run(store, job.id)
    elif job.kind == JobKind.STUDY:
        cancel_study(store, job.id)
    else:
        cancel_deploy(store, job.id)
