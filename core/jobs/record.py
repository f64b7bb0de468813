"""One view of every job's work, whatever its kind and wherever its records are kept: a run's row in the runs
table, a study's row in the studies table, a deploy check's ``deploy/job.json`` in its run's folder. One status
vocabulary (:class:`~core.runs.record.RunStatus`, here also called :data:`JobStatus`) for all three. The job itself
(queued, running, how it ended, its worker's pid and heartbeat) is a row of the store's one jobs table
(:class:`core.jobs.queue.JobRow`); ``job_id`` links the view to it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.jobs.kinds import JobKind, job_kind
from core.runs.record import ACTIVE, Run, RunStatus, parse_status

if TYPE_CHECKING:
    from core.studies.records import Study

#: the status of any job: queued, running, done, failed, cancelled, interrupted
JobStatus = RunStatus


@dataclass(frozen=True)
class Job:
    """A job: ``id`` is the run's or the study's id (a deploy check: the id of the run it checks); ``task``
    says what a deploy check does (``export`` or ``bench``)."""

    kind: JobKind
    id: str
    status: RunStatus
    pid: int | None = None
    task: str = ""
    progress: float | None = None
    message: str = ""
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    cancel_requested: bool = False
    #: its row in the jobs table (None for work recorded before the job queue)
    job_id: str | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @classmethod
    def of_run(cls, run: Run) -> Job:
        return cls(kind=job_kind(run.kind), id=run.id, status=run.status, pid=run.pid, error=run.error,
                   started_at=run.started_at, finished_at=run.finished_at, cancel_requested=run.cancel_requested,
                   job_id=run.job_id)

    @classmethod
    def of_study(cls, study: Study) -> Job:
        return cls(kind=JobKind.STUDY, id=study.id, status=parse_status(study.status), pid=study.pid,
                   error=study.error, started_at=study.created_at, finished_at=study.finished_at,
                   cancel_requested=study.cancel_requested)

    @classmethod
    def of_deploy(cls, run_id: str, state: Mapping[str, Any], job_id: str | None = None) -> Job:
        """A deploy check from its ``deploy/job.json`` (earlier versions wrote ``starting``: read as queued)."""
        progress, status = state.get("progress"), parse_status(state.get("status") or RunStatus.QUEUED)
        return cls(kind=JobKind.DEPLOY, id=run_id, status=status, pid=state.get("pid"),
                   task=str(state.get("job") or ""),
                   progress=None if progress is None else float(progress), message=str(state.get("message") or ""),
                   error=state.get("error"), started_at=state.get("started_at"),
                   finished_at=None if status in ACTIVE else state.get("updated_at"), job_id=job_id)
