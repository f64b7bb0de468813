"""What the lesson reads, cached: its runs (from the store and the recorded pack), each run's facts
(:func:`core.runs.handout.run_facts`), a step's signals and oracle, the profile bank, the shipped readings and the
reference figures. Nothing here trains or computes a model; a piece that is not there comes back as None."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
import streamlit as st

from core.config import DataConfig
from core.fusion import FusionChoice, read_choice
from core.fusion.bank import BankError, bank_dir, bank_or_none, load_outcomes
from core.lesson import course, reference
from core.lesson.readings import Readings, ReadingsError, load_readings, readings_dir
from core.runs import artifacts
from core.runs.handout import ReportRefused, RunFacts, run_facts
from core.runs.record import Run
from core.signals import SIGNALS

from . import cached_store, state, tables, theme


@dataclass(frozen=True)
class Ctx:
    """Everything a chapter draws from: the lesson's runs and where its files are."""

    runs: course.LessonRuns

    @property
    def model(self) -> str:
        return self.runs.model or state.model()

    @property
    def dataset(self) -> str:
        return self.runs.dataset or state.dataset()

    def dataset_label(self) -> str:
        return state.dataset_label(self.dataset)


def context() -> Ctx:
    """The lesson's runs: the sidebar's dataset when it has finished runs, else the pack's first dataset."""
    found = course.lesson_runs(cached_store.runs(kind="prune"), list(SIGNALS), state.dataset(),
                               best_signal=partial(_best_signal))
    return Ctx(found)


def _best_signal(model: str, candidates: list[str]) -> str | None:
    return reference.best_single_signal(model, candidates)


# ------------------------------------------------------------------------------------------ runs
@st.cache_data(show_spinner=False, max_entries=32)
def _facts(run_id: str, token: str) -> RunFacts | None:
    try:
        return run_facts(cached_store.store(), run_id, theme.strategy_label)
    except ReportRefused:
        return None


def facts(run: Run | None) -> RunFacts | None:
    """The run's steps, stories (regret against the most accurate removal) and intervals; None when unfinished."""
    return None if run is None else _facts(run.id, cached_store.version(run))


def oracle(run: Run, step: int) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """A step's oracle table and its per-example outcomes (either None when not stored)."""
    return (cached_store.step_table(run.id, step, artifacts.ORACLE_TABLE),
            cached_store.outcomes(run.id, step, artifacts.ORACLE_OUTCOMES))


def heatmap(run: Run, step: int) -> tables.HeatmapData | None:
    signals = cached_store.step_table(run.id, step, artifacts.SIGNALS_TABLE)
    if signals is None or signals.empty:
        return None
    steps = cached_store.steps(run)
    n = int(steps.iloc[0]["n_layers"]) if not steps.empty else None
    return tables.heatmap_data(signals, list(SIGNALS), n)


def choice(run: Run | None, step: int) -> FusionChoice | None:
    if run is None:
        return None
    raw = cached_store.choice(run.id, step)
    return read_choice(raw) if raw else None


def chosen_layer(run: Run | None, step: int) -> int | None:
    if run is None:
        return None
    layer = cached_store.choice(run.id, step).get("layer")
    return None if layer is None else int(layer)


def shap_step(run: Run | None) -> int | None:
    """The first step of a fusion run whose ranker stored SHAP values (None: none did)."""
    if run is None:
        return None
    for k in cached_store.artifact_steps(run.id, artifacts.CHOICE):
        found = choice(run, k)
        if found is not None and found.explanation is not None:
            return k
    return None


# ------------------------------------------------------------------------------------------ shipped files
def _stamp(folder: Path) -> tuple:
    if not folder.is_dir():
        return ()
    return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()))


@st.cache_resource(show_spinner=False, max_entries=2)
def _bank(folder: str, stamp: tuple) -> tuple[pd.DataFrame | None, pd.DataFrame | None, str | None]:
    bank, problem = bank_or_none(folder)
    if bank is None:
        return None, None, problem
    try:
        return bank.rows, load_outcomes(folder, bank), None
    except BankError as exc:
        return bank.rows, None, str(exc)


def bank() -> tuple[pd.DataFrame | None, pd.DataFrame | None, str | None]:
    """The profile bank's rows, its per-example outcomes (None without) and why it is unusable (None: usable)."""
    folder = bank_dir()
    return _bank(str(folder), _stamp(folder))


@st.cache_resource(show_spinner=False, max_entries=16)
def _bank_step(folder: str, stamp: tuple, model: str, dataset: str) -> course.BankStep | None:
    rows, outcomes, _ = _bank(folder, stamp)
    return course.bank_step(rows, outcomes, model, dataset) if rows is not None else None


def bank_step(model: str, dataset: str) -> course.BankStep | None:
    """Step 1 of the bank's lowest seed of (model, dataset): what a chapter shows while its run is not in the pack."""
    folder = bank_dir()
    return _bank_step(str(folder), _stamp(folder), model, dataset)


def bank_line(ctx: Ctx, found: course.BankStep) -> None:
    """The line a chapter shows when it stands on the bank instead of a recorded run."""
    st.info(f"The recorded runs of {ctx.model} on {ctx.dataset_label()} are not in the pack yet (they are still being "
            f"computed), so this chapter reads step 1 of the profile bank's seed {found.seed} of the same model and "
            f"dataset (run {found.run_id}).", icon=":material/inventory_2:")


@st.cache_data(show_spinner=False, max_entries=8)
def _readings(model: str, dataset: str, folder: str, stamp: tuple) -> tuple[Readings | None, str | None]:
    try:
        return load_readings(model, dataset, folder), None
    except ReadingsError as exc:
        return None, str(exc)


def readings(model: str, dataset: str) -> tuple[Readings | None, str | None]:
    """The shipped readings of (model, dataset), or (None, None) when none ship, or (None, why refused)."""
    folder = readings_dir()
    return _readings(model, dataset, str(folder), _stamp(folder))


def reliability() -> reference.Reliability | None:
    """The oracle's reliability at the app's default validation rows (``DataConfig().val_cap``)."""
    return reference.reliability(DataConfig().val_cap)


def noise_floor(model: str) -> reference.Regret | None:
    return reference.overall_regret(model, reference.NOISE_FLOOR)
