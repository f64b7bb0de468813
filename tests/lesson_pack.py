"""What the lesson's tests stand on (issue 31): a recorded pack of tiny runs with the four strategies the lesson
reads (random-forest fusion, the oracle, one single signal, top-down), a profile bank with two seeds of the same
tiny model and dataset (so a guess can be scored on other seeds), and the shipped-readings files made from the
tiny teacher. Every run is the engine's own code path (``execute_run``), pinned to fp32."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from core.jobs.execute import execute_run
from core.lesson.readings import PRESETS, make_readings, write_readings
from core.runs.pack_make import PackSelection, make_pack
from core.runs.store import RunStore
from tests.packs import made_once, tiny_config

STRATEGIES = ("rf_fusion", "oracle", "weight_entropy", "top_down")


@dataclass(frozen=True)
class LessonPack:
    store: Path  # the runs (with their weights)
    pack: Path  # the recorded pack made from the seed-0 runs
    bank: Path  # a profile bank of the oracle runs, seeds 0 and 1, with per-example outcomes
    readings: Path  # readings of the keywords presets through the tiny teacher
    ids: dict[str, str]  # strategy -> seed-0 run id


def _run(store: RunStore, strategy: str, seed: int = 0) -> str:
    config = tiny_config(strategy)
    config["seed"] = seed
    config["data"]["seed"] = seed
    run_id = store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy=strategy, config=config)
    status = execute_run(store, run_id)
    assert status == "done", store.get_run(run_id).error
    return run_id


def make_lesson_pack(root: Path) -> LessonPack:
    from core.fusion.bank_build import bank_rows_from_store, outcomes_from_store, write_bank
    from core.playground import load_run

    store = RunStore(root / "store")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model gains nothing from a second thread
    try:
        ids = {s: _run(store, s) for s in STRATEGIES}
        _run(store, "oracle", seed=1)
    finally:
        torch.set_num_threads(threads)
    make_pack(store.root, root / "pack", PackSelection(datasets=None, strategies=None, seeds=(0,)))
    rows = bank_rows_from_store(store, model="tiny-bert")
    write_bank(rows, root / "bank", outcomes=outcomes_from_store(store, rows), note="tiny lesson test bank")
    loaded = load_run(store, ids["rf_fusion"])
    write_readings(make_readings(loaded, PRESETS["keywords"], "test"), root / "readings")
    return LessonPack(store.root, root / "pack", root / "bank", root / "readings", ids)


def shared_lesson_pack(tmp_path_factory) -> LessonPack:
    """The lesson pack made once per test session (:func:`tests.packs.made_once`; about 25 s): the lesson's test
    files only read its pack, bank and readings (a test that serves the store copies it first)."""
    return made_once(tmp_path_factory, "lesson", make_lesson_pack)
