"""Starting and watching a study in a worker process (the study's cells run in
:func:`core.studies.execute.run_local` there; the command line may instead run them in its own process)."""

from __future__ import annotations

import subprocess

from core.jobs.kinds import JobKind
from core.jobs.launcher import exit_reason, spawn
from core.runs.liveness import pid_alive
from core.runs.record import ACTIVE, RunStatus
from core.runs.store import RunStore
from core.studies import records

DIED = ("The study's process stopped before it finished (killed or the app restarted); start it again to finish "
        "the missing cells.")


def start_study_job(store: RunStore, study_id: str, *, resume: bool = False) -> subprocess.Popen[bytes]:
    """Start the worker for ``study_id``; the study reads as queued (with the worker's pid) from now on. ``resume``
    runs a cancelled study's missing cells (without it, a study cancelled before its worker started stays so)."""
    records.get_study(store, study_id)  # a KeyError now, not in the worker

    def on_exit(proc: subprocess.Popen[bytes]) -> None:
        study = records.get_study(store, study_id)
        if study.status in ACTIVE and study.pid == proc.pid:
            records.set_status(store, study_id, RunStatus.INTERRUPTED,
                               error=exit_reason(proc.returncode, proc.pid) + " Resume finishes the missing cells.")

    proc = spawn(JobKind.STUDY, store.root, [study_id, *(["--resume"] if resume else [])], on_exit=on_exit)
    records.claim(store, study_id, proc.pid)
    return proc


def watch_study(store: RunStore, study_id: str) -> records.Study:
    """The study as stored, after marking it interrupted if the process that owns it is gone (it can be
    resumed). Raises ``KeyError`` for an unknown id."""
    return refresh_study(store, records.get_study(store, study_id))


def refresh_study(store: RunStore, study: records.Study) -> records.Study:
    if study.status in ACTIVE and study.pid and not pid_alive(study.pid):
        records.set_status(store, study.id, RunStatus.INTERRUPTED, error=DIED)
        return records.get_study(store, study.id)
    return study
