"""The reaper: every job whose process is gone before it finished ends as interrupted, saying why. Runs and
studies record their worker's pid, deploy checks theirs in ``deploy/job.json``; a pid that no longer runs (or is
a zombie) means the worker died. The reads do this for what they return (:meth:`RunStore.get_run`,
:func:`core.jobs.studies.watch_study`, :func:`core.jobs.deploy.deploy_job`); :func:`reap` does it for every job.
(:class:`core.jobs.runner.Runner` and the launcher's reaper thread also settle their own children the moment
they exit, with the exit code in the reason.)"""

from __future__ import annotations

from core.deploy.worker import JOB_FILE
from core.jobs.deploy import deploy_job
from core.jobs.record import Job
from core.jobs.studies import refresh_study
from core.runs.record import ACTIVE
from core.runs.store import RunStore
from core.studies import records


def reap(store: RunStore) -> list[Job]:
    """Interrupt every active run, study and deploy check in ``store`` whose process is gone; returns those jobs
    as they are now."""
    ended = [Job.of_run(run) for run_id in store.refresh_liveness()
             if (run := store.get_run(run_id, check=False)) is not None]
    for study in records.list_studies(store):
        if study.status in ACTIVE and study.pid:
            now = refresh_study(store, study)
            if now.status != study.status:
                ended.append(Job.of_study(now))
    for job_file in sorted(store.root.glob(f"runs/*/{JOB_FILE}")):
        run_id = job_file.relative_to(store.root / "runs").parts[0]
        state = store.read_json(run_id, JOB_FILE) or {}
        if Job.of_deploy(run_id, state).active:
            job = deploy_job(store, run_id)
            if job is not None and not job.active:
                ended.append(job)
    return ended
