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

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.jobs.kinds import JobKind, job_kind
from core.jobs.launcher import worker_setup
from core.runs.record import RunStatus
from core.runs.store import RunStore


def _run_worker(store: RunStore, args: Sequence[str]) -> int:
    from core.jobs.execute import execute_run

    statuses = [execute_run(store, run_id) for run_id in args]
    return 0 if all(s == RunStatus.DONE for s in statuses) else 1


def _study_worker(store: RunStore, args: Sequence[str]) -> int:
    from core.studies.execute import run_local
    from core.studies.records import set_status

    study_id, resume = args[0], "--resume" in args[1:]
    try:
        study = run_local(store, study_id, resume=resume)
    except Exception as exc:  # recorded for the page; the runs themselves are already marked
        set_status(store, study_id, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    return 0 if study.status == RunStatus.DONE else 1


def _deploy_worker(store: RunStore, args: Sequence[str]) -> int:
    from core.deploy.bench import DeployBenchConfig
    from core.deploy.worker import run_job

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


def main(argv: Sequence[str]) -> int:
    if len(argv) < 3:
        print("usage: python -m core.jobs.worker KIND STORE ARGS...", file=sys.stderr)
        return 2
    spec = WORKERS[job_kind(argv[0])]
    worker_setup()
    return spec.work(RunStore(argv[1]), list(argv[2:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
