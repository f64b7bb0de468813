"""The reaper: every job whose worker is gone before it finished ends, its unfinished records as interrupted,
saying why, and its slot goes to the next waiting job. The rule is the job layer's one
(:func:`core.jobs.schedule.dead_because`: the worker's pid no longer runs, or its heartbeat stopped), applied to
every running job of the store's jobs table by :func:`core.jobs.schedule.tick`. Work recorded before the job queue
(a run, a study or a deploy check with no job row) is still judged by the pid it recorded. The reads do this for
what they return (:meth:`RunStore.get_run`, :func:`core.jobs.studies.watch_study`,
:func:`core.jobs.deploy.deploy_job`); :func:`reap` does it for every job. (The launcher's reaper thread in the
process that started a worker settles it the moment it exits, with the exit code in the reason.)"""

from __future__ import annotations

from core.deploy.worker import JOB_FILE
from core.jobs import schedule
from core.jobs.deploy import deploy_job
from core.jobs.kinds import RUN_KINDS, JobKind
from core.jobs.queue import JobRow
from core.jobs.record import Job
from core.jobs.studies import refresh_study
from core.runs.record import ACTIVE
from core.runs.store import RunStore
from core.studies import records


def _views(store: RunStore, job: JobRow) -> list[Job]:
    """The work of an ended job, as the views the pages know."""
    if job.kind in RUN_KINDS:
        return [Job.of_run(run) for run_id in job.targets if (run := store.get_run(run_id, check=False))]
    if job.kind == JobKind.STUDY:
        return [Job.of_study(records.get_study(store, job.targets[0]))]
    found = deploy_job(store, job.targets[0])
    return [found] if found is not None else []


def reap(store: RunStore) -> list[Job]:
    """End every job in ``store`` whose worker is gone and start waiting jobs in the freed slots; returns the work
    that ended (runs, studies, deploy checks) as it is now."""
    ended = {(j.kind, j.id): j for job in schedule.tick(store) for j in _views(store, job)}
    for run_id in store.refresh_liveness():  # runs recorded before the queue (and any worker seen dead first here)
        if (run := store.get_run(run_id, check=False)) is not None:
            ended[(JobKind(run.kind), run_id)] = Job.of_run(run)
    for study in records.list_studies(store):
        if study.status in ACTIVE and study.pid:
            now = refresh_study(store, study)
            if now.status != study.status:
                ended[(JobKind.STUDY, study.id)] = Job.of_study(now)
    for job_file in sorted(store.root.glob(f"runs/*/{JOB_FILE}")):  # deploy checks recorded before the queue
        run_id = job_file.relative_to(store.root / "runs").parts[0]
        state = store.read_json(run_id, JOB_FILE) or {}
        if Job.of_deploy(run_id, state).active:
            job = deploy_job(store, run_id)
            if job is not None and not job.active:
                ended[(JobKind.DEPLOY, run_id)] = job
    return list(ended.values())
