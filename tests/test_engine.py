"""The pruning engine end to end on the tiny model: teacher cache, prune loop, store records, runner,
cancel and crash recovery, fusion protocol, export."""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch

from core.config import DataConfig
from core.pruning.loop import PruneConfig, prune_events
from core.runs.runner import Runner, execute_run
from core.runs.store import RunStore
from core.data.task import prepare_task
from core.teacher import ensure_teacher

SMALL = DataConfig(train_cap=150, val_cap=45, test_cap=45)


def tiny_cfg(**kw) -> PruneConfig:
    base = dict(model="tiny-bert", dataset="keywords", strategy="oracle", layers_to_remove=2, step_epochs=1.0,
                data=SMALL, calibration_size=32, distill=False)
    base.update(kw)
    return PruneConfig(**base)


@pytest.fixture()
def store(tmp_path):
    return RunStore(tmp_path / "store")


def _run(store: RunStore, cfg: PruneConfig) -> str:
    rid = store.create_run(kind="prune", model=cfg.model, dataset=cfg.dataset, strategy=cfg.strategy,
                           config=cfg.to_dict())
    assert execute_run(store, rid) == "done", store.get_run(rid)["error"]
    return rid


def test_prune_config_validation_names_field():
    with pytest.raises(ValueError, match="PruneConfig.strategy"):
        tiny_cfg(strategy="magic")
    with pytest.raises(ValueError, match="PruneConfig.layers_to_remove"):
        tiny_cfg(layers_to_remove=0)
    cfg = tiny_cfg(distill=True)
    assert PruneConfig.from_dict(cfg.to_dict()) == cfg


def test_teacher_is_cached_and_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNE_CACHE_DIR", str(tmp_path / "cache"))
    task = prepare_task("tiny-bert", "keywords", SMALL)
    first = ensure_teacher(task)
    assert not first.cached and first.metrics["test"]["accuracy"] >= 0.9
    second = ensure_teacher(task)
    assert second.cached  # read from disk, not trained (timings belong in benchmarks, not tests)
    assert second.metrics == first.metrics and second.path == first.path
    a, b = first.load(), second.load()
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_prune_run_records_everything(store):
    rid = _run(store, tiny_cfg(distill=True))
    steps = store.steps(rid)
    assert list(steps["n_layers"]) == [12, 11, 10]
    assert steps["removed"].iloc[1:].notna().all()
    # the oracle strategy removes exactly the oracle's best layer at every step
    assert list(steps["removed"].iloc[1:].astype(int)) == list(steps["oracle_best"].iloc[1:].astype(int))
    assert (steps["params_total"].diff().iloc[1:] < 0).all()
    summary = store.read_json(rid, "summary.json")
    assert summary["removed_order"] == list(steps["removed"].iloc[1:].astype(int))
    assert "after_kd" in summary and "before_kd" in summary and summary["ratio"] > 0
    for k in (1, 2):
        signals = store.read_table(rid, f"steps/{k}/signals.csv")
        oracle = store.read_table(rid, f"steps/{k}/oracle.csv")
        assert len(signals) == len(oracle) == 13 - k
    assert len(store.profiles("tiny-bert")) == 12 + 11  # profiled before each removal
    stages = [e["stage"] for e in store.events(rid)]
    for stage in ("prepare", "signals", "oracle", "choice", "finetune", "step_done", "distill", "done"):
        assert stage in stages

    from transformers import AutoModelForSequenceClassification

    from core.runs.export import export_model, model_zip_bytes

    out = export_model(store, rid, store.root / "export")
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_hidden_layers == 10
    assert sorted(model.config.kept_layers) == sorted(set(range(12)) - set(summary["removed_order"]))
    assert len(model_zip_bytes(store, rid)) > 1000


def test_fusion_protocol_within_run_then_leave_one_dataset_out(store, monkeypatch):
    rid = _run(store, tiny_cfg(strategy="rf_fusion", layers_to_remove=2))
    first = store.read_json(rid, "steps/1/choice.json")["info"]["protocol"]
    second = store.read_json(rid, "steps/2/choice.json")["info"]["protocol"]
    assert first["protocol"] == "none" and second["protocol"] == "within_run"
    assert store.read_json(rid, "steps/2/choice.json")["info"]["target"] == "gap"  # what the pages label by
    # profiles of another dataset for the same model exist -> leave-one-dataset-out, never the pruned dataset
    profiles = store.profiles("tiny-bert").assign(dataset="other-dataset", run_id="elsewhere")
    events = prune_events(tiny_cfg(strategy="lr_fusion", layers_to_remove=1), run_id="x", profiles=profiles)
    choice = next(ev for ev in events if ev.stage == "choice")
    info = choice.payload["info"]
    assert info["protocol"]["protocol"] == "leave_one_dataset_out"
    assert info["protocol"]["datasets"] == ["other-dataset"]
    shap = info["shap"]
    assert len(shap["values"]) == 12 and len(shap["values"][0]) == 12
    for row, pred in zip(shap["values"], shap["prediction"]):
        assert abs(shap["base_value"] + sum(row) - pred) < 1e-6


def test_cancel_is_honoured_within_a_batch(store):
    cfg = tiny_cfg(layers_to_remove=3, step_epochs=3.0)
    rid = store.create_run(kind="prune", model=cfg.model, dataset=cfg.dataset, strategy=cfg.strategy,
                           config=cfg.to_dict())
    seen = []

    def on_event(ev):
        seen.append(ev.stage)
        if ev.stage == "finetune" and seen.count("finetune") == 2:
            store.request_cancel(rid)

    from core.runs import runner

    assert runner.execute_run(store, rid, on_event=on_event) == "cancelled"
    assert seen[-1] == "finetune" and seen.count("finetune") == 2
    run = store.get_run(rid)
    assert run["status"] == "cancelled"
    assert list(store.steps(rid)["n_layers"]) == [12]  # nothing half-written is recorded as a step


def test_failed_run_is_recorded_not_raised(store):
    cfg = tiny_cfg(dataset="no-such-dataset")
    rid = store.create_run(kind="prune", model=cfg.model, dataset=cfg.dataset, strategy=cfg.strategy,
                           config=cfg.to_dict())
    assert execute_run(store, rid) == "failed"
    assert "no-such-dataset" in store.get_run(rid)["error"]


def test_runner_runs_in_a_worker_and_recovers_a_killed_one(tmp_path):
    runner = Runner(tmp_path / "store")
    ok, = runner.submit("prune", [tiny_cfg(layers_to_remove=1).to_dict()])
    runner.join(ok, timeout=600)
    assert runner.store.get_run(ok)["status"] == "done"
    # a worker killed mid-run leaves a run that the next runner marks interrupted
    doomed, = runner.submit("prune", [tiny_cfg(layers_to_remove=3, step_epochs=5.0).to_dict()])
    deadline = time.time() + 300
    while time.time() < deadline and runner.store.get_run(doomed)["status"] != "running":
        time.sleep(0.2)
    proc = runner._procs[doomed]
    os.kill(proc.pid, signal.SIGKILL)
    runner.join(doomed, 30)
    assert not runner.alive(doomed)
    assert runner.store.get_run(doomed)["status"] == "running"
    again = Runner(tmp_path / "store")
    assert again.store.get_run(doomed)["status"] == "interrupted"
    assert again.store.get_run(ok)["status"] == "done"


# ----------------------------------------------------------------------------------------------- CLI
def test_cli_lists_teaches_runs_exports_and_rejects_bad_values(tmp_path, monkeypatch, capsys):
    import json

    from core.cli import main as cli

    monkeypatch.setenv("PRUNE_STORE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("PRUNE_CACHE_DIR", str(tmp_path / "cache"))
    data = ["--model", "tiny-bert", "--dataset", "keywords", "--train-cap", "150", "--val-cap", "45",
            "--test-cap", "45"]
    assert cli.main(["models", "--json"]) == 0
    models = {m["key"]: m for m in json.loads(capsys.readouterr().out)}
    assert {"e5-small", "minilm-l6", "tiny-bert"} <= set(models)
    assert cli.main(["datasets", "--json"]) == 0
    assert "trec" in {d["key"] for d in json.loads(capsys.readouterr().out)}

    assert cli.main(["teach", *data, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["cached"] is False and first["metrics"]["test"]["accuracy"] >= 0.9
    assert cli.main(["teach", *data, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cached"] is True  # the run below reuses it too

    assert cli.main(["run", *data, "--strategy", "top_down", "--layers", "2", "--epochs", "0.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "done" and [s["n_layers"] for s in out["steps"]] == [12, 11, 10]
    assert out["summary"]["removed_order"] == [11, 10]  # top-down removes the last layers first
    assert "total" in out["summary"]["timings_s"]

    assert cli.main(["export", out["run_id"], str(tmp_path / "exported"), "--json"]) == 0
    capsys.readouterr()
    from transformers import AutoModelForSequenceClassification

    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "exported").config.num_hidden_layers == 10

    assert cli.main(["run", *data, "--strategy", "magic"]) == 2
    assert "PruneConfig.strategy" in capsys.readouterr().err
    assert cli.main(["teach", "--model", "tiny-bert", "--dataset", "keywords", "--max-length", "1"]) == 2
    assert "DataConfig.max_length" in capsys.readouterr().err
    # `merge` and `bench WHAT` pass every option on to their own parsers
    assert cli.main(["merge", "--model", "tiny-bert", "--layers", "5"]) == 2
    assert "MergeConfig.window" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "oracle", "--help"])
    assert exit_info.value.code == 0 and "--rows" in capsys.readouterr().out


def test_teacher_defaults_give_many_class_tasks_more_epochs():
    from core.teacher import MANY_CLASSES_EPOCHS, default_train_config

    assert default_train_config("e5-small", 6).epochs == 3.0
    assert default_train_config("e5-small").epochs == 3.0
    assert default_train_config("minilm-l6", 20).epochs == MANY_CLASSES_EPOCHS
    assert default_train_config("tiny-bert", 20) == default_train_config("tiny-bert")  # its own measured default
