"""Run store: schema, events, artifacts, crash recovery, concurrent writers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core.runs import artifacts
from core.runs.events import StoredEvent
from core.runs.store import RunStore, pid_alive


@pytest.fixture()
def store(tmp_path):
    return RunStore(tmp_path / "store")


def _new(store, **kw):
    return store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy=kw.get("s", "oracle"),
                            config={"model": "tiny-bert", "x": float("nan")})


def test_wal_mode_and_roundtrip(store):
    import sqlite3

    con = sqlite3.connect(store.db_path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    rid = _new(store)
    run = store.get_run(rid)
    assert run.status == "queued" and run.config["x"] is None  # NaN stored as null, valid JSON
    store.mark_running(rid)
    store.add_event(rid, "signals", step=1, progress=0.1, message="m", payload={"a": 1})
    store.add_event(rid, "oracle", step=1, progress=0.2)
    evs = store.events(rid)
    assert [e.seq for e in evs] == [0, 1] and evs[0].payload == {"a": 1}
    assert store.events(rid, after=0)[0].stage == "oracle"
    # typed records: the columns as attributes, no payload read as an empty one
    assert (evs[0].run_id, evs[0].step, evs[0].progress, evs[0].message) == (rid, 1, 0.1, "m")
    assert evs[1].payload == {} and store.last_event(rid) == evs[1]
    assert StoredEvent.from_row({**evs[1].to_dict(), "step": float("nan"), "payload": '{"b": 2}'}) == \
        StoredEvent(rid, 1, evs[1].ts, "oracle", None, 0.2, "", {"b": 2})  # a table's gap, JSON text
    store.add_step(rid, 0, {"n_layers": 12, "test_accuracy": 0.9})
    store.add_step(rid, 1, {"n_layers": 11, "test_accuracy": 0.8})
    steps = store.steps(rid)
    assert list(steps["n_layers"]) == [12, 11]
    store.finish(rid, "done", summary={"ok": True})
    assert store.get_run(rid).summary == {"ok": True}
    with pytest.raises(ValueError):
        store.finish(rid, "weird")


def test_artifacts_are_atomic(store):
    rid = _new(store)
    frame = pd.DataFrame({"a": [1, 2]})
    store.write_table(rid, artifacts.step_table(1, artifacts.SIGNALS_TABLE), frame)
    assert store.read_table(rid, "steps/1/signals.csv").equals(frame)  # the name every stored run uses
    store.write_json(rid, "x.json", {"v": [1, 2]})
    assert store.read_json(rid, "x.json") == {"v": [1, 2]}
    assert store.read_json(rid, "missing.json") is None
    assert not list(store.run_dir(rid).rglob(".*tmp*"))


def test_stages_are_one_vocabulary_stored_as_plain_strings(store):
    from core.runs.events import Event, Stage, stage_label

    assert Event("choice").stage is Stage.CHOICE  # a string is accepted and typed
    with pytest.raises(ValueError, match="Event.stage"):
        Event("chioce")
    rid = _new(store)
    store.add_event(rid, Stage.STEP_DONE, step=1)
    stored = store.events(rid)[0].stage
    assert type(stored) is str and stored == "step_done" == Stage.STEP_DONE
    assert all(stage.label and stage_label(stage.value) == stage.label for stage in Stage)  # every stage labelled
    assert stage_label("a_stage_of_an_older_run") == "a_stage_of_an_older_run"


def test_artifact_names_are_the_stored_ones():
    assert artifacts.step_choice(3) == "steps/3/choice.json"
    assert artifacts.step_table(0, artifacts.FFN_SIMILARITY_TABLE) == "steps/0/ffn_similarity.csv"
    assert (artifacts.SUMMARY, artifacts.MODEL_CONFIG) == ("summary.json", "model/config.json")
    with pytest.raises(ValueError, match="step"):
        artifacts.step_file(None, artifacts.CHOICE)  # type: ignore[arg-type]


def test_recover_marks_dead_workers_interrupted(store):
    rid = _new(store)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.mark_running(rid, pid=dead.pid)
    alive = _new(store)
    store.mark_running(alive, pid=os.getpid())
    assert not pid_alive(dead.pid)
    assert store.recover() == [rid]
    assert store.get_run(rid).status == "interrupted"
    assert store.get_run(alive).status == "running"


def test_cancel_and_delete(store):
    rid = _new(store)
    store.request_cancel(rid)
    assert store.cancel_requested(rid) and store.get_run(rid).status == "cancelled"
    running = _new(store)
    store.mark_running(running, pid=os.getpid())
    with pytest.raises(RuntimeError, match="cancel it first"):
        store.delete_run(running)
    store.delete_run(rid)
    assert store.get_run(rid) is None and not store.run_dir(rid).exists()


WRITER = """
import sys
from core.runs.store import RunStore
s = RunStore(sys.argv[1])
for i in range(int(sys.argv[3])):
    s.add_event(sys.argv[2], "finetune", step=1, progress=i / 60)
    s.add_step(sys.argv[2], i, {"i": i})
"""


def test_two_writers_do_not_corrupt(store):
    a, b = _new(store), _new(store)
    root = Path(__file__).resolve().parent.parent
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(store.root), rid, "60"], cwd=root)
             for rid in (a, b)]
    for p in procs:
        assert p.wait(120) == 0
    for rid in (a, b):
        evs = store.events(rid)
        assert [e.seq for e in evs] == list(range(60))
        assert list(store.steps(rid)["i"]) == list(range(60))


def test_run_report_is_a_record_and_downloads_the_stored_json(store):
    """The Runs page's report (issue 32): the run, its typed summary and its steps; to_dict is the JSON a person
    downloads, with the summary's keys as stored."""
    from core.runs.report import run_report

    rid = _new(store)
    store.mark_running(rid)
    store.add_step(rid, 0, {"n_layers": 12, "test_accuracy": 0.9})
    stored = {"teacher": {"test_accuracy": 0.9}, "removed_order": [3], "after_kd": {"test_accuracy": 0.8},
              "ratio": 1.5, "timings_s": {"total": 12.0}}
    store.finish(rid, "done", summary=stored)
    report = run_report(store, rid)
    assert report.run.id == rid and report.summary.after_kd_accuracy == 0.8 and list(report.steps["n_layers"]) == [12]
    out = report.to_dict()
    assert out["run"]["id"] == rid and out["run"]["status"] == "done" and out["config"] == {"model": "tiny-bert",
                                                                                            "x": None}
    assert out["summary"] == stored and out["steps"] == [{"step": 0, "n_layers": 12, "test_accuracy": 0.9}]
