"""Running one stored run (prune or merge) to completion in this process, recording as it goes.

:func:`execute_run` consumes the run's events (:func:`core.jobs.kinds.run_events`) and writes everything to the
store (events, steps, profiles, artifacts); it checks the cancel flag after every event, i.e. within one training
batch. A worker process calls it (:mod:`core.jobs.worker`); so does the command line, in its own process
(:func:`execute_with_bar`).
"""

from __future__ import annotations

import dataclasses
import os
import traceback
from collections.abc import Callable

from core.jobs.kinds import run_events
from core.runs.events import Event, Stage
from core.runs.progress import StageProgress
from core.runs.record import RunStatus
from core.runs.recorder import record_event
from core.runs.store import RunStore
from core.teacher import WeakTeacherError


class Cancelled(Exception):
    pass


def execute_run(store: RunStore, run_id: str, on_event: Callable[[Event], None] | None = None) -> RunStatus:
    """Run ``run_id`` to completion in this process; returns its final status."""
    run = store.get_run(run_id)
    if run is None:
        raise ValueError(f"no run {run_id!r}")
    if run.status != RunStatus.QUEUED:
        return run.status
    if store.cancel_requested(run_id):
        store.finish(run_id, RunStatus.CANCELLED)
        return RunStatus.CANCELLED

    store.mark_running(run_id, os.getpid())
    weak = False
    try:
        for raw in run_events(store, run):
            ev, weak = _flag_weak(store, run_id, raw, weak)
            record_event(store, run_id, ev)
            if on_event is not None:
                on_event(ev)
            if store.cancel_requested(run_id):
                raise Cancelled()
            if ev.stage == Stage.DONE:
                store.finish(run_id, RunStatus.DONE, summary=ev.payload)
                return RunStatus.DONE
        store.finish(run_id, RunStatus.DONE)
        return RunStatus.DONE
    except Cancelled:
        store.add_event(run_id, Stage.CANCELLED, message="Cancelled by the user")
        store.finish(run_id, RunStatus.CANCELLED)
        return RunStatus.CANCELLED
    except WeakTeacherError as exc:  # the guard: stopped before pruning; "prune anyway" resubmits with the flag
        store.add_event(run_id, Stage.WEAK_TEACHER, message=str(exc), payload=exc.check.to_dict())
        store.finish(run_id, RunStatus.FAILED, error=str(exc))
        return RunStatus.FAILED
    except Exception as exc:  # the run fails, the store and the app do not
        store.add_event(run_id, Stage.FAILED, message=f"{type(exc).__name__}: {exc}",
                        payload={"traceback": traceback.format_exc()[-4000:]})
        store.finish(run_id, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        return RunStatus.FAILED


def _flag_weak(store: RunStore, run_id: str, ev: Event, weak: bool) -> tuple[Event, bool]:
    """A weak teacher allowed to go on ("prune anyway") flags the run wherever it is shown: the summary at its
    ``teacher_check`` event, then the payloads of step 0 and of ``done``. Returns the event to record and whether
    the run is flagged."""
    if ev.stage == Stage.TEACHER_CHECK and ev.payload.get("weak") and ev.payload.get("allowed"):
        weak = True
        store.update_summary(run_id, {"weak_teacher": True})
    if weak and (ev.stage == Stage.DONE or (ev.stage == Stage.STEP_DONE and ev.step == 0)):
        ev = dataclasses.replace(ev, payload={**ev.payload, "weak_teacher": True})
    return ev, weak


def execute_with_bar(store: RunStore, run_id: str, quiet: bool = False) -> RunStatus:
    """:func:`execute_run` in this process with the CLI's progress (a bar on a terminal, a line per stage and
    per 10 % in a pipe or log: :class:`core.runs.progress.StageProgress`); returns the final status."""
    bar = StageProgress(run_id, quiet=quiet)

    def on_event(ev: Event) -> None:
        bar.update(ev.progress, ev.message, ev.stage)

    try:
        return execute_run(store, run_id, on_event=on_event)
    finally:
        bar.close()
