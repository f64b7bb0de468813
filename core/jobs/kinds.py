"""The kinds of job (prune, merge, study, deploy) and, for the two kinds of run, how a stored run becomes its
events. What a worker process of each kind does is the table :data:`core.jobs.worker.WORKERS`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import Any

from core.merging.loop import MergeConfig, merge_events
from core.pruning.config import PruneConfig
from core.runs.events import Event
from core.runs.record import Run
from core.runs.store import RunStore
from core.teacher_phase import stored_dataset


class JobKind(StrEnum):
    PRUNE = "prune"
    MERGE = "merge"
    STUDY = "study"
    DEPLOY = "deploy"


#: the kinds whose jobs are runs (a row of the runs table each)
RUN_KINDS: tuple[JobKind, ...] = (JobKind.PRUNE, JobKind.MERGE)


def _prune_events(store: RunStore, run: Run) -> Iterator[Event]:
    from core.fusion.bank import training_profiles  # noqa: PLC0415 deferred: cost (shap, matplotlib; python -m core --help)
    from core.pruning.loop import prune_events  # noqa: PLC0415 deferred: cost (shap, matplotlib; python -m core --help)

    cfg = PruneConfig.from_dict(run.config)
    profiles = training_profiles(store)  # the shipped bank + this store's runs (fusion picks leave-one-dataset-out)
    if not profiles.empty:
        profiles = profiles[profiles["run_id"] != run.id]
    return prune_events(cfg, run_id=run.id, profiles=profiles, dataset=stored_dataset(store, cfg.dataset))


def _merge_events(store: RunStore, run: Run) -> Iterator[Event]:
    cfg = MergeConfig.from_dict(run.config)
    return merge_events(cfg, run_id=run.id, dataset=stored_dataset(store, cfg.dataset))


_RUN_EVENTS: dict[str, Callable[[RunStore, Run], Iterator[Event]]] = {
    JobKind.PRUNE: _prune_events, JobKind.MERGE: _merge_events}


def job_kind(value: Any) -> JobKind:
    try:
        return JobKind(str(value))
    except ValueError:
        raise ValueError(f"job kind must be one of {[k.value for k in JobKind]}, got {value!r}") from None


def run_events(store: RunStore, run: Run) -> Iterator[Event]:
    """The events of a stored run of kind prune or merge (its work starts when they are consumed)."""
    events = _RUN_EVENTS.get(run.kind)
    if events is None:
        raise ValueError(f"unknown run kind {run.kind!r} (runs are {[k.value for k in RUN_KINDS]})")
    return events(store, run)
