"""The body of a deploy job (ONNX export with parity, or the deploy benchmark) and the file that records it.

A deploy job belongs to a finished run, is not a run itself (it adds no row to the run list), and at most one
runs per run at a time. The job layer starts it in a worker process (:func:`core.jobs.deploy.start_deploy`);
:func:`run_job` keeps its state in the run folder (``deploy/job.json``: job, pid, status, progress, message,
error; the status is a :class:`core.runs.record.RunStatus`) and writes its result as the usual artifacts
(``deploy/onnx_parity.json``, ``deploy/bench.json``).
"""

from __future__ import annotations

import os
import time
import traceback
from typing import Any

from core.deploy.bench import DeployBenchConfig, run_bench
from core.deploy.onnx_export import export_run
from core.runs.artifacts import DEPLOY_JOB
from core.runs.record import RunStatus
from core.runs.store import RunStore

JOB_FILE = DEPLOY_JOB  # deploy/job.json in the run folder
JOBS = ("export", "bench")


def run_job(store: RunStore, run_id: str, job: str, cfg: DeployBenchConfig) -> RunStatus:
    """Run one deploy job in this process, keeping ``deploy/job.json`` up to date; returns its status."""
    base = {"job": job, "pid": os.getpid(), "started_at": time.time(), "config": {"repeats": cfg.repeats,
                                                                                   "int8": cfg.int8}}

    def write(status: RunStatus, progress: float, message: str, **extra: Any) -> None:
        store.write_json(run_id, JOB_FILE, {**base, "status": status, "progress": progress, "message": message,
                                            "updated_at": time.time(), **extra})

    def on_progress(fraction: float, message: str) -> None:
        write(RunStatus.RUNNING, fraction, message)

    write(RunStatus.RUNNING, 0.0, "Started")
    status: RunStatus
    try:
        if job == "export":
            record = export_run(store, run_id, on_progress=on_progress)
            status = RunStatus.DONE if record.passed else RunStatus.FAILED
            write(status, 1.0, f"ONNX parity {record.status}",
                  error=None if status == RunStatus.DONE else "the export failed parity; it is not offered")
        else:
            run_bench(store, run_id, cfg, on_progress=on_progress)
            status = RunStatus.DONE
            write(status, 1.0, "Finished")
    except Exception as exc:  # the job fails, the worker reports it
        status = RunStatus.FAILED
        write(status, 1.0, "Failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()[-3000:])
    return status
