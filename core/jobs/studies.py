"""Starting and watching a study in a worker process (the study's cells run in
:func:`core.studies.execute.run_local` there; the command line may instead run them in its own process). A study
is one job of the store's queue (:mod:`core.jobs.schedule`): it waits as queued while every slot is taken."""

from __future__ import annotations

import subprocess

from core.jobs import schedule
from core.jobs.kinds import JobKind
from core.jobs.queue import job_for
from core.runs.liveness import pid_alive
from core.runs.record import ACTIVE, RunStatus
from core.runs.store import RunStore
from core.studies import records

DIED = ("The study's process stopped before it finished (killed or the app restarted); start it again to finish "
        "the missing cells.")


def start_study_job(store: RunStore, study_id: str, *, resume: bool = False) -> subprocess.Popen[bytes] | None:
    """Queue the job of ``study_id``; the study reads as queued from now on, and as running once its worker has
    started. ``resume`` runs a cancelled study's missing cells (without it, a study cancelled before its worker
    started stays so). Returns the worker's process when it started at once, None while the job waits for a
    slot."""
    study = records.get_study(store, study_id)  # a KeyError now, not in the worker
    cells = [c.cell_id for c in study.cells()]
    units = max(1, len(cells) - len(records.done_cells(store, cells)))
    job = schedule.submit(store, JobKind.STUDY, [study_id], [study_id, *(["--resume"] if resume else [])],
                          model=",".join(study.config.models), units=units)
    return schedule.process(job.id)


def watch_study(store: RunStore, study_id: str) -> records.Study:
    """The study as stored, after marking it interrupted if the process that owns it is gone (it can be
    resumed). Raises ``KeyError`` for an unknown id."""
    return refresh_study(store, records.get_study(store, study_id))


def refresh_study(store: RunStore, study: records.Study) -> records.Study:
    """``study`` after the liveness rule: its job's (:func:`core.jobs.schedule.check_job`), or for a study started
    before the job queue, its recorded worker's pid."""
    job = job_for(store, JobKind.STUDY, study.id)
    if job is not None and job.running and schedule.check_job(store, job) is not None:
        return records.get_study(store, study.id)
    if study.status in ACTIVE and study.pid and not pid_alive(study.pid):
        records.set_status(store, study.id, RunStatus.INTERRUPTED, error=DIED)
        return records.get_study(store, study.id)
    return study
