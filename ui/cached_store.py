"""The pages' cached, read-mostly access to the run store (:class:`core.runs.store.RunStore`), and the
shared runner they submit runs to (the job layer's :class:`~core.jobs.runner.Runner`).

* The :class:`~core.runs.store.RunStore` and the :class:`~core.jobs.runner.Runner` live in ``st.cache_resource``
  (one per store folder, shared by every session and page).
* Tables read from the store live in ``st.cache_data`` keyed by a *version*: finished runs never change,
  so their tables are read once; a running run's tables are keyed by its last event, so a poll re-reads
  only when something happened. Artifacts (CSV/JSON per step) are keyed by the file's modification time,
  and a missing file is never cached.

The store folder is ``PRUNE_STORE_DIR`` (``core.paths.store_dir``), read on every call so tests can point
pages at a temporary store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from core.fusion.bank import bank_dir, bank_or_none
from core.jobs.estimate import Place, batch_text, queue
from core.jobs.kinds import job_kind
from core.jobs.queue import get_job, job_for
from core.jobs.runner import Runner
from core.jobs.schedule import tick
from core.merging.verdict import BudgetVerdict, budget_verdict
from core.paths import shown_path, store_dir
from core.runs import artifacts, noise
from core.runs.pack import Pack, budget_text, pack_dir, pack_or_none, pack_stamp
from core.runs.pack_store import StoreWithPack
from core.runs.record import MergeSummary, PruneSummary, Run, summary_of
from ui import paper_plots


def root() -> str:
    return str(store_dir())


def shown_root() -> str:
    """The run store as a page may name it (repository-relative, or its last two parts): never the machine's path."""
    return shown_path(store_dir())


@st.cache_resource(show_spinner=False)
def _pack(folder: str, stamp: str) -> tuple[Pack | None, str | None]:
    """The recorded pack, checked once per change of its manifest: (pack, None), (None, None) without one, or
    (None, why it was refused)."""
    return pack_or_none(folder) if folder else (None, None)


def _pack_key() -> tuple[str, str]:
    folder = pack_dir()
    return (str(folder) if folder is not None else "", pack_stamp(folder))


@st.cache_resource(show_spinner=False)
def _store(path: str, pack_folder: str, stamp: str) -> StoreWithPack:
    return StoreWithPack(path, _pack(pack_folder, stamp)[0])


@st.cache_resource(show_spinner=False)
def _runner(path: str) -> Runner:
    return Runner(path)


def store() -> StoreWithPack:
    """The run store (shared), with the recorded pack's runs after the user's own (read-only: core.runs.pack)."""
    return _store(root(), *_pack_key())


def pack() -> Pack | None:
    """The recorded pack the app ships (``data/pack``, ``PRUNE_PACK_DIR``), or None (none, or refused)."""
    return _pack(*_pack_key())[0]


def pack_problem() -> str | None:
    """Why the recorded pack was refused (a file missing or changed), or None."""
    return _pack(*_pack_key())[1]


def recorded_day(run: Run) -> str:
    """``recorded 2026-12-07`` for a recorded run (the day it finished), empty for the user's own."""
    found = pack()
    return f"recorded {found.recorded_on(run)}" if run.recorded and found is not None else ""


def recorded_note(run: Run) -> str:
    """``recorded 2026-12-07 · <budget> · bf16`` for a recorded run, empty for the user's own."""
    day = recorded_day(run)
    if not day:
        return ""
    precision = summary_of(run.kind, run.summary).precision
    return " · ".join(p for p in (day, budget_text(run.config), precision or "") if p)


def runner() -> Runner:
    """The job runner (shared); starting it marks runs whose worker died as interrupted."""
    return _runner(root())


def submit(kind: str, configs: list[dict[str, Any]], group_id: str | None = None,
           strategy: str | None = None) -> list[str]:
    """Queue runs on the shared runner (one job: one worker process runs them in order, when a slot is free);
    returns their ids."""
    return runner().submit(kind, configs, group_id=group_id, strategy=strategy)


def queue_places() -> dict[str, Place]:
    """Every waiting job's place in the store's queue and when it should start, by job id (fresh on every call,
    never cached). It is also a liveness check: a dead worker's slot goes to the next job within one poll."""
    tick(store())
    return {p.job_id: p for p in queue(store())}


def queue_place(job_id: str | None) -> Place | None:
    """The waiting job's place (None when it is not waiting)."""
    return queue_places().get(job_id) if job_id else None


def waiting_text(run: Run) -> str:
    """What a run that has not started yet waits for: its job's place in the queue and when it should start, or
    its turn among the runs its job's worker runs one after another."""
    place = None if run.recorded else queue_place(run.job_id)
    if place is not None:
        return place.text
    job = get_job(store(), run.job_id) if run.job_id and not run.recorded else None
    return (batch_text(job, run.id) if job is not None else None) or "Queued: waiting for the worker to start…"


def job_place(kind: str, target: str) -> Place | None:
    """The place of the waiting job of ``kind`` (``study``, ``deploy``) that works on ``target`` (its id, the
    run it checks), or None when none waits."""
    job = job_for(store(), job_kind(kind), target)
    return queue_place(job.id) if job is not None and job.waiting else None


def clear() -> None:
    """Forget cached tables (after deleting runs)."""
    _steps.clear()
    _json_file.clear()
    _csv_file.clear()
    _all_steps.clear()
    _profiles.clear()
    _test_size.clear()
    _prune_intervals.clear()
    _merge_verdict.clear()
    _final_intervals.clear()


# ---------------------------------------------------------------------------------------- runs
def runs(**filters: Any) -> list[Run]:
    """All runs: the user's own, newest first (one small SQLite query: not cached, so statuses are always fresh),
    then the recorded pack's (``run.recorded``)."""
    return store().list_runs(**filters)


def own_runs(**filters: Any) -> list[Run]:
    """The user's own runs only, newest first."""
    return store().own_runs(**filters)


def get_run(run_id: str) -> Run | None:
    return store().get_run(run_id)


def version(run: Run) -> str:
    """A token that changes whenever the run's stored tables may have changed."""
    if run.recorded:  # changes only when the pack is rebuilt
        return f"recorded:{_pack_key()[1]}"
    if run.active:
        last = store().last_event(run.id)
        return f"{run.status}:{last.seq if last else -1}"
    return f"{run.status}:{run.finished_at}"


@st.cache_data(show_spinner=False, max_entries=512)
def _steps(path: str, run_id: str, token: str) -> pd.DataFrame:
    return store().steps(run_id)


def steps(run: Run) -> pd.DataFrame:
    """One row per finished step of ``run`` (step 0 is the unpruned teacher)."""
    return _steps(root(), run.id, version(run))


@st.cache_data(show_spinner=False, max_entries=64)
def _all_steps(path: str, key: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    return store().all_steps([run_id for run_id, _ in key])


def all_steps(run_list: list[Run]) -> pd.DataFrame:
    """The steps of several runs in one frame (column ``run_id``)."""
    key = tuple(sorted((r.id, version(r)) for r in run_list))
    frame = _all_steps(root(), key)
    return frame.copy()


@st.cache_data(show_spinner=False, max_entries=32)
def _profiles(path: str, model: str | None, key: tuple[str, ...]) -> pd.DataFrame:
    return store().profiles(model=model, with_recorded=True)


def profiles(model: str | None = None) -> pd.DataFrame:
    """All stored (run, step, layer) rows of signals + oracle, optionally for one model."""
    key = tuple(sorted(f"{r.id}:{version(r)}" for r in runs(kind="prune")))
    return _profiles(root(), model, key)


# ----------------------------------------------------------------------------------- artifacts
def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


@st.cache_data(show_spinner=False, max_entries=1024)
def _csv_file(path: str, mtime: int) -> pd.DataFrame:
    """A stored table: CSV, or Parquet (per-example outcomes, ``steps/<k>/outcomes/<e>.parquet``)."""
    return pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)


@st.cache_data(show_spinner=False, max_entries=1024)
def _json_file(path: str, mtime: int) -> Any:
    return json.loads(Path(path).read_text())


def table(run_id: str, relpath: str) -> pd.DataFrame | None:
    """A table artifact of a run, CSV or Parquet (``artifacts.step_table(3, artifacts.SIGNALS_TABLE)``,
    ``artifacts.step_outcomes(0, "test")``), or None while it does not exist."""
    path = store().run_dir(run_id) / relpath
    mtime = _mtime(path)
    return None if mtime is None else _csv_file(str(path), mtime).copy()


def json_artifact(run_id: str, relpath: str) -> Any | None:
    """A JSON artifact of a run (``artifacts.step_choice(3)``, ``artifacts.SUMMARY``), or None."""
    path = store().run_dir(run_id) / relpath
    mtime = _mtime(path)
    return None if mtime is None else _json_file(str(path), mtime)


def artifact_steps(run_id: str, name: str) -> list[int]:
    """Steps of a run that have the artifact ``steps/<k>/<name>`` (e.g. ``artifacts.CHOICE``), ascending."""
    return artifacts.steps_with(store().run_dir(run_id), name)


def choice(run_id: str, step: int) -> dict[str, Any]:
    """Step ``step``'s decision (``steps/<k>/choice.json``); empty while the step has not chosen yet."""
    return json_artifact(run_id, artifacts.step_choice(step)) or {}


def step_table(run_id: str, step: int, table_name: str) -> pd.DataFrame | None:
    """A per-step table (``artifacts.SIGNALS_TABLE``, ``ORACLE_TABLE``, ...), or None while it does not exist."""
    return table(run_id, artifacts.step_table(step, table_name))


def outcomes(run_id: str, step: int, evaluation: str) -> pd.DataFrame | None:
    """Per-example outcomes of one evaluation (``artifacts.TEST_OUTCOMES``, ``comparison_outcomes(...)``) at
    ``step``, or None when the run did not keep them (runs stored before issue 21): a
    :data:`core.runs.noise.Reader`."""
    return table(run_id, artifacts.step_outcomes(step, evaluation))


def test_size(run: Run) -> int | None:
    """The run's test split size (from its teacher-guard event; for intervals of runs without outcomes)."""
    return _test_size(root(), run.id, version(run) if run.active else "final")


@st.cache_data(show_spinner=False, max_entries=512)
def _test_size(path: str, run_id: str, token: str) -> int | None:
    return noise.test_size(store().events(run_id))


def prune_intervals(run: Run) -> noise.PruneIntervals:
    """Every test accuracy of a pruning run with its interval (:func:`core.runs.noise.prune_intervals`), computed
    once per change of the run (the paired bootstraps take tens of milliseconds each)."""
    return _prune_intervals(root(), run.id, version(run))


@st.cache_data(show_spinner=False, max_entries=256)
def _prune_intervals(path: str, run_id: str, token: str) -> noise.PruneIntervals:
    run = store().get_run(run_id)
    if run is None:
        return noise.PruneIntervals({}, {})
    return noise.prune_intervals(run_id, store().steps(run_id), summary(run), outcomes, test_size(run))


def final_intervals(run: Run) -> noise.FinalIntervals:
    """A run's teacher and final model with their intervals and the difference (pruning or merge run)."""
    return _final_intervals(root(), run.id, version(run))


@st.cache_data(show_spinner=False, max_entries=1024)
def _final_intervals(path: str, run_id: str, token: str) -> noise.FinalIntervals:
    run = store().get_run(run_id)
    if run is None:
        return noise.FinalIntervals(None, None, None)
    if run.kind == "merge":
        return noise.merge_final(run_id, summary(run), outcomes, test_size(run))
    return _prune_intervals(path, run_id, token).final_intervals()


def merge_verdict(run: Run) -> BudgetVerdict | None:
    """A merge run's prune-vs-merge verdict with its paired interval (:func:`core.merging.verdict.budget_verdict`)."""
    return _merge_verdict(root(), run.id, version(run))


@st.cache_data(show_spinner=False, max_entries=256)
def _merge_verdict(path: str, run_id: str, token: str) -> BudgetVerdict | None:
    run = store().get_run(run_id)
    if run is None:
        return None
    return budget_verdict(merge_summary(run), lambda step, e: outcomes(run_id, step, e), test_size(run))


def summary(run: Run) -> dict[str, Any]:
    """What the run reported when it finished (``summary.json``, else the store's copy), as stored."""
    return json_artifact(run.id, artifacts.SUMMARY) or run.summary


def run_summary(run: Run) -> PruneSummary | MergeSummary:
    """:func:`summary` read through its figures (final accuracy, timings, ...), typed by the run's kind."""
    return summary_of(run.kind, summary(run))


def merge_summary(run: Run) -> MergeSummary:
    return MergeSummary.of(summary(run))


def has_model(run_id: str) -> bool:
    return (store().run_dir(run_id) / artifacts.MODEL_CONFIG).exists()


def _stamp(folder: Path) -> tuple:
    """What changes when a folder's files are rewritten: each file's name, size and modification time."""
    if not folder.is_dir():
        return ()
    return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()))


def first_open_lines(label: Any) -> list[str]:
    """Home's "already measured" bullets, read once per change of the bank or reference files (Home reruns on
    every click; the bank's checksum and the reference CSVs need not be read each time)."""
    bank_folder, ref_folder = bank_dir(), paper_plots.reference_dir()
    return _first_open_lines(str(bank_folder), str(ref_folder), _stamp(bank_folder), _stamp(ref_folder), label)


@st.cache_data(show_spinner=False, max_entries=4)
def _first_open_lines(bank_folder: str, ref_folder: str, bank_stamp: tuple, ref_stamp: tuple,
                      _label: Any) -> list[str]:
    bank, bank_problem = bank_or_none(bank_folder)
    try:
        ref, ref_problem = paper_plots.load_reference(ref_folder), None
    except paper_plots.ReferenceFilesError as exc:
        ref, ref_problem = None, str(exc)
    return paper_plots.first_open_lines(bank, bank_problem, ref, ref_problem, _label)
