"""Typed records at the store boundary: a stored run reads as a :class:`Run` (old stores included), its summary
through :class:`PruneSummary` / :class:`MergeSummary` (the figures the pages show, decoded once)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from core.runs.record import ACTIVE, FINAL, MergeSummary, PruneSummary, Run, RunStatus, parse_status, summary_of
from core.runs.store import RunStore

#: the runs table as the first version of the store created it (no ``cell_id``: studies came later)
FIRST_SCHEMA = """
CREATE TABLE runs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL, model TEXT NOT NULL,
    dataset TEXT NOT NULL, strategy TEXT NOT NULL, group_id TEXT, status TEXT NOT NULL, config TEXT NOT NULL,
    created_at REAL NOT NULL, started_at REAL, finished_at REAL, heartbeat_at REAL, pid INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0, error TEXT, summary TEXT);
"""

OLD_SUMMARY = {"teacher": {"test_accuracy": 0.9, "params_total": 100}, "removed_order": [11, 10],
               "final_layers": 10, "before_kd": {"test_accuracy": 0.8}, "after_kd": {"test_accuracy": 0.85},
               "after_kd_metrics": {"test_accuracy": 0.85, "num_layers": 10}, "timings_s": {"total": 120.0}}


def test_a_run_stored_by_the_first_version_of_the_store_still_opens(tmp_path):
    folder = tmp_path / "store"
    folder.mkdir()
    con = sqlite3.connect(folder / "runs.sqlite")
    con.executescript(FIRST_SCHEMA)
    con.execute("INSERT INTO runs (id, kind, name, model, dataset, strategy, status, config, created_at, started_at,"
                " finished_at, summary) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                ("20261121-203259-abcdef", "prune", "oracle · tiny-bert · keywords", "tiny-bert", "keywords",
                 "oracle", "done", json.dumps({"model": "tiny-bert", "layers_to_remove": 2}), 10.0, 11.0, 71.0,
                 json.dumps(OLD_SUMMARY)))
    con.execute("INSERT INTO runs (id, kind, name, model, dataset, strategy, status, config, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?)", ("old-queued", "prune", "n", "tiny-bert", "keywords", "random",
                                                 "failed", "{}", 12.0))
    con.commit()
    con.close()
    store = RunStore(folder)  # adds the columns a newer store has
    run = store.get_run("20261121-203259-abcdef")
    assert isinstance(run, Run) and run.status is RunStatus.DONE and run.status == "done"
    assert run.cell_id is None and run.group_id is None and run.pid is None and run.cancel_requested is False
    assert run.config == {"model": "tiny-bert", "layers_to_remove": 2} and run.seconds == 60.0
    summary = PruneSummary.of(run.summary)
    assert summary.final_accuracy == 0.85 and summary.teacher_accuracy == 0.9 and summary.final_layers == 10
    assert summary.removed_order == [11, 10] and summary.total_seconds == 120.0 and summary.strategies_in_tree == 1
    failed = store.get_run("old-queued")
    assert failed.summary == {} and failed.error is None and not failed.active and not failed.weak_teacher
    assert [r.id for r in store.list_runs()] == ["old-queued", "20261121-203259-abcdef"]
    assert store.runs_frame()["status"].tolist() == ["failed", "done"]


def test_from_dict_is_tolerant_of_old_and_unknown_keys_and_strict_about_what_a_run_needs():
    run = Run.from_dict({"id": "r", "kind": "merge", "model": "m", "dataset": "d", "status": "running",
                         "config": '{"window": "5-8"}', "summary": None, "cancel_requested": 1, "pid": "42",
                         "some_later_column": "ignored"})
    assert run.strategy == "merge" and run.name == "merge · m · d" and run.config == {"window": "5-8"}
    assert run.summary == {} and run.cancel_requested is True and run.pid == 42 and run.active
    assert Run.from_dict(run.to_dict()) == run and json.loads(json.dumps(run.to_dict()))["status"] == "running"
    with pytest.raises(ValueError, match=r"needs \['model'\]"):
        Run.from_dict({"id": "r", "kind": "prune", "dataset": "d", "status": "done"})
    with pytest.raises(ValueError, match="status must be one of"):
        Run.from_dict({"id": "r", "kind": "prune", "model": "m", "dataset": "d", "status": "exploded"})


def test_one_status_vocabulary():
    assert set(ACTIVE) | set(FINAL) == set(RunStatus) and not set(ACTIVE) & set(FINAL)
    assert parse_status("starting") is RunStatus.QUEUED and parse_status("died") is RunStatus.INTERRUPTED
    assert RunStatus.QUEUED.active and not RunStatus.DONE.active


def test_summaries_decode_final_accuracy_once_for_both_kinds():
    assert PruneSummary.of({"before_kd": {"test_accuracy": 0.7}}).final_accuracy == 0.7  # no distillation
    assert PruneSummary.of(None).final_accuracy is None and PruneSummary.of({}).total_seconds is None
    merge = summary_of("merge", {"teacher": {"test_accuracy": 0.9, "params_total": 10},
                                 "final": {"test_accuracy": 0.8, "latency_ms": 3.0}, "window_label": "L5-L8",
                                 "params": {"removed": 4},
                                 "pruning": {"depth": 2, "removed_layers": [3, 7], "latency_ms": 1.5,
                                             "finetuned": {"test_accuracy": 0.6, "params_total": 7},
                                             "distilled": {"test_accuracy": 0.65, "params_total": 7}}})
    assert isinstance(merge, MergeSummary) and merge.final_accuracy == 0.8 and merge.window_label == "L5-L8"
    side = merge.pruning
    assert side is not None and side.final_accuracy == 0.65 and side.depth == 2 and side.removed_layers == [3, 7]
    assert side.latency_ms == 1.5  # the side's own latency when its final scores have none
    undistilled = MergeSummary.of({"pruning": {"finetuned": {"test_accuracy": 0.6}}}).pruning
    assert undistilled is not None and undistilled.final_accuracy == 0.6
    assert MergeSummary.of({}).pruning is None and isinstance(summary_of("prune", {}), PruneSummary)
