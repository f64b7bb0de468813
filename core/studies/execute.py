"""Running a study: the cells not yet finished, one tree per group, on this machine or on Ray.

* :func:`start_study` records a study and fixes the profile snapshot its fusion cells train on.
* :func:`run_local` walks every pending group in this process (the CLI's default, and the app's worker
  process, :mod:`core.jobs.worker`); events are recorded as they happen, cancel is honoured within one
  training batch.
* :func:`run_ray` sends each pending group to Ray as one task (``num_cpus``, and a GPU when CUDA is present).
  Workers never open the store: they return each run's events and the driver records them, so a worker on
  another node needs no shared disk. Ray retries a task whose worker died; Ctrl-C cancels the tasks and
  leaves the store consistent (finished groups recorded, the rest waiting).

Killed at any point and started again, a study continues with the cells that have no finished run.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypedDict

import pandas as pd
import torch

from core.fusion.bank import training_profiles
from core.paths import PROJECT_ROOT
from core.pruning.tree import TreeWalk
from core.runs.events import Event, Stage
from core.runs.record import ACTIVE, RunStatus
from core.runs.recorder import record_event
from core.runs.store import RunStore
from core.studies.config import Cell, StudyConfig, groups
from core.studies.records import (
    Study,
    cancel_requested,
    clear_cancel,
    create_study,
    done_cells,
    get_study,
    load_snapshot,
    set_status,
)
from core.teacher_phase import stored_dataset

if TYPE_CHECKING:
    from core.pruning.config import PruneConfig

#: per-batch progress events a remote worker does not send back (the driver records one per stage instead)
_CHATTY = (Stage.TEACHER, Stage.FINETUNE, Stage.DISTILL)

OnEvent = Callable[[str, Event], None]


def start_study(store: RunStore, cfg: StudyConfig, profiles: pd.DataFrame | None = None) -> Study:
    """Record a study. ``profiles`` (default: the shipped bank plus this store's profiles) is the fixed snapshot
    that its fusion cells train on, so no result depends on which cell finished first."""
    if profiles is None:
        profiles = training_profiles(store)
    return create_study(store, cfg, profiles)


def pending(store: RunStore, study: Study) -> dict[str, list[Cell]]:
    """The groups that still have cells without a finished run (only those cells)."""
    cells = study.cells()
    done = done_cells(store, [c.cell_id for c in cells])
    return groups([c for c in cells if c.cell_id not in done])


def _create_runs(store: RunStore, study: Study, cells: list[Cell]) -> list[str]:
    ids = []
    for c in cells:
        config = {**c.cfg.to_dict(), "study_id": study.id, "cell_id": c.cell_id, "profile_snapshot": c.snapshot}
        ids.append(store.create_run(kind="prune", model=c.cfg.model, dataset=c.cfg.dataset, strategy=c.cfg.strategy,
                                    config=config, name=f"{c.cfg.strategy} · {c.cfg.model} · {c.cfg.dataset} · "
                                    f"seed {c.cfg.seed} · {study.name}", group_id=study.id, cell_id=c.cell_id))
    return ids


def _dataset_for(store: RunStore, key: str) -> Any:
    return stored_dataset(store, key)


def _strip(ev: Event, keep_models: bool) -> Event:
    return ev if keep_models or ev.stage != Stage.DONE else replace(ev, artifacts={})


def _finish_event(store: RunStore, rid: str, ev: Event) -> None:
    record_event(store, rid, ev)
    if ev.stage == Stage.DONE:
        store.finish(rid, RunStatus.DONE, summary=ev.payload)


def _fail_open(store: RunStore, run_ids: Iterable[str], status: str, error: str | None) -> None:
    for rid in run_ids:
        run = store.get_run(rid)
        if run and run.status in ACTIVE:
            if error:
                store.add_event(rid, status, message=error)
            store.finish(rid, status, error=error)


# ------------------------------------------------------------------------------------------------- local
def run_group(store: RunStore, study: Study, cells: list[Cell], snapshot: pd.DataFrame, *, keep_models: bool = False,
              on_event: OnEvent | None = None) -> dict[str, str]:
    """Walk one group's cells together in this process, recording as it goes; returns run id -> status."""
    run_ids = _create_runs(store, study, cells)
    for rid in run_ids:
        store.mark_running(rid, os.getpid())
    walk = TreeWalk([c.cfg for c in cells], run_ids, profiles=snapshot,
                    dataset=_dataset_for(store, cells[0].cfg.dataset))
    status = {rid: "running" for rid in run_ids}
    try:
        for rid, ev in walk.events():
            _finish_event(store, rid, _strip(ev, keep_models))
            if ev.stage == Stage.DONE:
                status[rid] = RunStatus.DONE
            if on_event is not None:
                on_event(rid, ev)
            _drop_cancelled(store, study.id, walk, status)
            if all(s != "running" for s in status.values()):
                break
    except KeyboardInterrupt:
        _fail_open(store, run_ids, "interrupted", "Stopped (Ctrl-C) before the run finished; the study resumes it.")
        raise
    except Exception as exc:  # this group fails, the study goes on with the next
        msg = f"{type(exc).__name__}: {exc}"
        for rid in run_ids:
            if status[rid] == "running":
                store.add_event(rid, Stage.FAILED, message=msg, payload={"traceback": traceback.format_exc()[-4000:]})
                store.finish(rid, "failed", error=msg)
                status[rid] = "failed"
    return status


def _drop_cancelled(store: RunStore, study_id: str, walk: TreeWalk, status: dict[str, str]) -> None:
    """A cancelled study cancels each of the group's runs; a run cancelled (by the study or on its own) leaves the
    walk and is recorded as cancelled (``status`` updated in place)."""
    run_ids = list(status)
    if cancel_requested(store, study_id):
        for r in run_ids:
            store.request_cancel(r)
    for r in run_ids:
        if status[r] == "running" and store.cancel_requested(r):
            walk.drop(r)
            store.add_event(r, Stage.CANCELLED, message="Cancelled by the user")
            store.finish(r, "cancelled")
            status[r] = "cancelled"


def _may_start(store: RunStore, study_id: str, resume: bool) -> bool:
    """A cancel asked before the study started wins, unless this is an explicit resume (which clears it)."""
    if resume:
        clear_cancel(store, study_id)
        return True
    return not cancel_requested(store, study_id)


def run_local(store: RunStore, study_id: str, *, keep_models: bool = False, on_event: OnEvent | None = None,
              on_group: Callable[[int, int, list[Cell]], None] | None = None, resume: bool = False) -> Study:
    """Run every pending cell of the study in this process, one group (tree) at a time. ``resume``: also after
    the study was cancelled (an explicit "resume" from the user)."""
    study = get_study(store, study_id)
    if not _may_start(store, study_id, resume):
        return _settle(store, study_id)
    snapshot = load_snapshot(store, study)
    todo = pending(store, study)
    set_status(store, study_id, "running", executor="local", pid=os.getpid())
    try:
        for i, cells in enumerate(todo.values()):
            if cancel_requested(store, study_id):
                break
            if on_group is not None:
                on_group(i, len(todo), cells)
            run_group(store, study, cells, snapshot, keep_models=keep_models, on_event=on_event)
    except KeyboardInterrupt:
        set_status(store, study_id, "interrupted", error="Stopped (Ctrl-C); run it again to finish the missing cells.")
        raise
    return _settle(store, study_id)


def _settle(store: RunStore, study_id: str) -> Study:
    study = get_study(store, study_id)
    left = sum(len(c) for c in pending(store, study).values())
    if cancel_requested(store, study_id):
        set_status(store, study_id, "cancelled")
    elif left:
        set_status(store, study_id, "failed", error=f"{left} cell(s) did not finish; see their runs' errors and run "
                   "the study again to retry them.")
    else:
        set_status(store, study_id, "done")
    return get_study(store, study_id)


# ------------------------------------------------------------------------------------------------- Ray
class RuntimeEnv(TypedDict, total=False):
    """The part of Ray's ``runtime_env`` this module sets."""

    env_vars: dict[str, str]
    working_dir: str
    excludes: list[str]


class RemoteWalk(TypedDict):
    """What a Ray task sends back: every run's events, and which process on which node walked them."""

    events: dict[str, list[Event]]
    pid: int
    node: str


def ray_runtime_env(address: str | None) -> RuntimeEnv:
    """How Ray workers find this code: on this machine through ``PYTHONPATH``; on a cluster, Ray uploads the
    project folder (code and the shipped ``data/`` files, not the virtualenv or run stores) as the job's
    working directory. The cluster's nodes need the pinned requirements installed."""
    if not address:
        return {"env_vars": {"PYTHONPATH": str(PROJECT_ROOT)}}
    return {"working_dir": str(PROJECT_ROOT), "excludes": [".venv", ".git", "data/runs", "docs", "tests/artifacts"]}


def _walk_remote(configs: list[PruneConfig], run_ids: list[str], snapshot: pd.DataFrame, dataset: Any,
                 keep_models: bool, threads: int, pid_dir: str | None) -> RemoteWalk:
    """The body of a Ray task: walk one group, return every run's events (no store access)."""
    if pid_dir:  # lets an operator (or a test) see which worker process runs which group
        os.makedirs(pid_dir, exist_ok=True)
        with open(os.path.join(pid_dir, f"{run_ids[0]}.pid"), "w") as fh:
            fh.write(str(os.getpid()))
    torch.set_num_threads(max(1, threads))
    walk = TreeWalk(list(configs), run_ids, profiles=snapshot, dataset=dataset)
    events: dict[str, list[Event]] = {rid: [] for rid in run_ids}
    for rid, ev in walk.events():
        if ev.stage in _CHATTY and ev.progress is not None and events[rid] and events[rid][-1].stage == ev.stage \
                and events[rid][-1].step == ev.step:
            events[rid][-1] = ev  # keep only the latest progress event of a stage
            continue
        events[rid].append(_strip(ev, keep_models))
    return RemoteWalk(events=events, pid=os.getpid(), node=os.uname().nodename)


@dataclass(frozen=True)
class RayOptions:
    """How :func:`run_ray` uses Ray. ``address`` (or ``RAY_ADDRESS``) attaches to a cluster; without either,
    ``ray.init()`` starts a local instance (Ray's own convention), with ``init_kwargs``. ``cpus_per_task`` (default:
    every CPU Ray sees) is each task's ``num_cpus`` and its torch threads; a task is retried ``max_retries`` times;
    ``pid_dir`` receives a file per task naming its worker process."""

    address: str | None = None
    cpus_per_task: int | None = None
    keep_models: bool = False
    max_retries: int = 3
    pid_dir: str | None = None
    init_kwargs: Mapping[str, Any] | None = None


OnGroupDone = Callable[[int, int, dict[str, str]], None]


def run_ray(store: RunStore, study_id: str, options: RayOptions | None = None, *,
            on_group_done: OnGroupDone | None = None, resume: bool = False) -> Study:
    """Run every pending group of the study as a Ray task (:class:`RayOptions`); ``on_group_done(k, n, status)``
    after each recorded group."""
    import ray  # noqa: PLC0415 deferred: cost (ray)

    opts = options or RayOptions()
    study = get_study(store, study_id)
    if not _may_start(store, study_id, resume):
        return _settle(store, study_id)
    snapshot = load_snapshot(store, study)
    todo = pending(store, study)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=opts.address, runtime_env=ray_runtime_env(opts.address or os.environ.get("RAY_ADDRESS")),
                 **(opts.init_kwargs or {}))
    try:
        cpus = opts.cpus_per_task or max(1, int(ray.available_resources().get("CPU", 1)))
        gpus = 1 if torch.cuda.is_available() else 0
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=opts.max_retries)(_walk_remote)
        snap_ref = ray.put(snapshot)
        executor = f"ray{'@' + opts.address if opts.address else ''}"
        set_status(store, study_id, "running", executor=executor, pid=os.getpid())
        refs: dict[Any, list[str]] = {}
        for cells in todo.values():
            run_ids = _create_runs(store, study, cells)
            for rid in run_ids:
                store.mark_running(rid, os.getpid())
            ref = task.remote([c.cfg for c in cells], run_ids, snap_ref,
                              _dataset_for(store, cells[0].cfg.dataset), opts.keep_models, cpus, opts.pid_dir)
            refs[ref] = run_ids
        _collect_remote(store, study_id, refs, on_group_done)
    finally:
        if started_here:
            ray.shutdown()
    return _settle(store, study_id)


def _collect_remote(store: RunStore, study_id: str, refs: dict[Any, list[str]],
                    on_group_done: OnGroupDone | None) -> None:
    """Record each group as its task returns (``refs``: task -> its run ids); a cancelled study or Ctrl-C stops
    the tasks still running and leaves their runs to be resumed."""
    import ray  # noqa: PLC0415 deferred: cost (ray)

    done_groups = 0
    waiting = list(refs)
    try:
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1, timeout=2.0)
            if cancel_requested(store, study_id):
                _stop_remote(store, refs, waiting, "cancelled", None)
                waiting = []
            for ref in ready:
                status = _record_remote(store, ref, refs[ref])
                done_groups += 1
                if on_group_done is not None:
                    on_group_done(done_groups, len(refs), status)
    except KeyboardInterrupt:
        _stop_remote(store, refs, waiting, "interrupted", "Stopped (Ctrl-C) before the run finished; the study "
                     "resumes it.")
        set_status(store, study_id, "interrupted", error="Stopped (Ctrl-C); run it again to finish the missing "
                   "cells.")
        raise


def _stop_remote(store: RunStore, refs: dict[Any, list[str]], waiting: list[Any], status: str,
                 error: str | None) -> None:
    """Cancel the tasks still ``waiting``, then end their open runs with ``status``."""
    import ray  # noqa: PLC0415 deferred: cost (ray)

    for ref in waiting:
        ray.cancel(ref, force=True)
    for ref in waiting:
        _fail_open(store, refs[ref], status, error)


def _record_remote(store: RunStore, ref: Any, run_ids: list[str]) -> dict[str, str]:
    import ray  # noqa: PLC0415 deferred: cost (ray)

    try:
        result = ray.get(ref)
    except Exception as exc:  # the task failed after its retries: its runs fail, the study goes on
        msg = f"{type(exc).__name__}: {str(exc)[:500]}"
        _fail_open(store, run_ids, "failed", msg)
        return {rid: "failed" for rid in run_ids}
    status: dict[str, str] = {}
    for rid in run_ids:
        for ev in result["events"][rid]:
            _finish_event(store, rid, ev)
        run = store.get_run(rid)
        if run is None or run.status != RunStatus.DONE:
            store.finish(rid, RunStatus.FAILED, error="the worker returned no final event")
        now = store.get_run(rid)
        status[rid] = now.status if now is not None else RunStatus.FAILED
    return status


def wait_for(store: RunStore, study_id: str, timeout: float = 600.0, poll: float = 0.5) -> Study:
    """Block until the study leaves queued/running (tests and scripts)."""
    end = time.time() + timeout
    while time.time() < end:
        study = get_study(store, study_id)
        if study.status not in ACTIVE:
            return study
        time.sleep(poll)
    raise TimeoutError(f"study {study_id} still {get_study(store, study_id).status} after {timeout} s")
