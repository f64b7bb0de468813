"""Deploy jobs (ONNX export with parity, or the deploy benchmark) in a background process for the app.

A deploy job belongs to a finished run, is not a run itself (it adds no row to the run list), and at most one
runs per run at a time. :func:`start_job` starts ``python -m core.deploy.worker STORE RUN_ID JOB REPEATS INT8``
as a fresh interpreter (never the Streamlit script thread; it outlives a page reload); the worker writes its
state to the run folder (``deploy/job.json``: job, pid, status, progress, message, error) and its result
as the usual artifacts (``deploy/onnx_parity.json``, ``deploy/bench.json``). :func:`job_state` reads the
state back and reports a worker that died without finishing as ``died``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import traceback
from typing import Any

from core.config import ConfigError, check_choice
from core.deploy.bench import DeployBenchConfig, run_bench
from core.deploy.onnx_export import DEPLOY_DIR, export_run
from core.paths import PROJECT_ROOT
from core.runs.store import RunStore, pid_alive

JOB_FILE = f"{DEPLOY_DIR}/job.json"
JOBS = ("export", "bench")
#: seconds a started job may take to record its process id before it counts as dead
STARTUP_S = 120.0


def job_state(store: RunStore, run_id: str) -> dict[str, Any] | None:
    """The run's last deploy job (``None`` if it never had one); a running job whose process is gone is
    reported with status ``died``."""
    state = store.read_json(run_id, JOB_FILE)
    if not state or state.get("status") not in ("starting", "running"):
        return state
    pid = state.get("pid")
    never_started = pid is None and time.time() - float(state.get("started_at") or 0) > STARTUP_S
    if never_started or (pid is not None and not pid_alive(pid)):
        state = {**state, "status": "died", "error": "the worker process ended without finishing"}
    return state


def job_running(store: RunStore, run_id: str) -> bool:
    state = job_state(store, run_id)
    return bool(state and state.get("status") in ("starting", "running"))


def start_job(store: RunStore, run_id: str, job: str, *, repeats: int = DeployBenchConfig.repeats,
              int8: bool = False) -> subprocess.Popen:
    """Start a deploy job for ``run_id`` in a new process; refuses while one is running for that run."""
    check_choice("start_job", "job", job, JOBS)
    DeployBenchConfig(repeats=repeats, int8=int8)  # validate here, in the caller, not in the worker
    if store.get_run(run_id) is None:
        raise ConfigError(f"start_job.run_id: no run {run_id!r}")
    if job_running(store, run_id):
        raise ValueError(f"A deploy job is already running for run {run_id}; wait for it to finish.")
    store.write_json(run_id, JOB_FILE, {"job": job, "status": "starting", "progress": 0.0, "pid": None,
                                        "message": "Starting", "started_at": time.time()})
    root = str(PROJECT_ROOT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    args = [sys.executable, "-m", "core.deploy.worker", str(store.root), run_id, job, str(repeats), str(int(int8))]
    proc = subprocess.Popen(args, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            start_new_session=True)
    state = store.read_json(run_id, JOB_FILE) or {}
    if state.get("status") == "starting":  # the worker may already have written its own state
        store.write_json(run_id, JOB_FILE, {**state, "pid": proc.pid})
    return proc


def run_job(store: RunStore, run_id: str, job: str, cfg: DeployBenchConfig) -> str:
    """Run one deploy job in this process, keeping ``deploy/job.json`` up to date; returns its status."""
    base = {"job": job, "pid": os.getpid(), "started_at": time.time(), "config": {"repeats": cfg.repeats,
                                                                                   "int8": cfg.int8}}

    def write(status: str, progress: float, message: str, **extra: Any) -> None:
        store.write_json(run_id, JOB_FILE, {**base, "status": status, "progress": progress, "message": message,
                                            "updated_at": time.time(), **extra})

    def on_progress(fraction: float, message: str) -> None:
        write("running", fraction, message)

    write("running", 0.0, "Started")
    try:
        if job == "export":
            record = export_run(store, run_id, on_progress=on_progress)
            status = "done" if record["status"] == "passed" else "failed"
            write(status, 1.0, f"ONNX parity {record['status']}",
                  error=None if status == "done" else "the export failed parity; it is not offered")
        else:
            run_bench(store, run_id, cfg, on_progress=on_progress)
            status = "done"
            write(status, 1.0, "Finished")
    except Exception as exc:  # the job fails, the worker reports it
        status = "failed"
        write(status, 1.0, "Failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()[-3000:])
    return status


def _worker(store_root: str, run_id: str, job: str, repeats: str, int8: str) -> int:
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    with contextlib.suppress(OSError, AttributeError):
        os.nice(2)  # below the app's server, like the run worker; timing is relative (interleaved) anyway
    cfg = DeployBenchConfig(repeats=int(repeats), int8=int8 == "1")
    status = run_job(RunStore(store_root), run_id, job, cfg)
    print(json.dumps({"run_id": run_id, "job": job, "status": status}))
    return 0 if status == "done" else 1


if __name__ == "__main__":  # the worker process: python -m core.deploy.worker STORE RUN_ID JOB REPEATS INT8(0|1)
    sys.exit(_worker(*sys.argv[1:6]))
