"""Pruning runs end to end on the tiny model, recorded in the run store: every step, table and event, the
fusion protocol, export, cancel within a batch, failures recorded, and the worker process (crash recovery)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from core.config import DataConfig
from core.jobs.execute import execute_run
from core.jobs.runner import Runner
from core.pruning.config import PruneConfig
from core.pruning.loop import prune_events
from core.runs import artifacts
from core.runs.store import RunStore

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
    assert execute_run(store, rid) == "done", store.get_run(rid).error
    return rid


def test_prune_config_validation_names_field():
    with pytest.raises(ValueError, match="PruneConfig.strategy"):
        tiny_cfg(strategy="magic")
    with pytest.raises(ValueError, match="PruneConfig.layers_to_remove"):
        tiny_cfg(layers_to_remove=0)
    cfg = tiny_cfg(distill=True)
    assert PruneConfig.from_dict(cfg.to_dict()) == cfg


def test_prune_run_records_everything(store):
    rid = _run(store, tiny_cfg(distill=True))
    steps = store.steps(rid)
    assert list(steps["n_layers"]) == [12, 11, 10]
    assert steps["removed"].iloc[1:].notna().all()
    # the oracle strategy removes exactly the oracle's best layer at every step
    assert list(steps["removed"].iloc[1:].astype(int)) == list(steps["oracle_best"].iloc[1:].astype(int))
    assert (steps["params_total"].diff().iloc[1:] < 0).all()
    summary = store.read_json(rid, artifacts.SUMMARY)
    assert summary["removed_order"] == list(steps["removed"].iloc[1:].astype(int))
    assert "after_kd" in summary and "before_kd" in summary and summary["ratio"] > 0
    for k in (1, 2):
        signals = store.read_table(rid, artifacts.step_table(k, artifacts.SIGNALS_TABLE))
        oracle = store.read_table(rid, artifacts.step_table(k, artifacts.ORACLE_TABLE))
        assert len(signals) == len(oracle) == 13 - k
    assert len(store.profiles("tiny-bert")) == 12 + 11  # profiled before each removal
    stages = [e.stage for e in store.events(rid)]
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
    from core.fusion import read_choice

    rid = _run(store, tiny_cfg(strategy="rf_fusion", layers_to_remove=2))
    choices = {k: read_choice(store.read_json(rid, artifacts.step_choice(k))) for k in (1, 2)}
    assert choices[1].protocol.name == "none" and choices[2].protocol.name == "within_run"
    assert choices[2].target == "kl"  # what the pages label by: the run's own profiles carry the oracle KL
    steps = store.steps(rid)
    for k, choice in choices.items():  # the removed layer is the arg-max of the stored prediction
        assert choice.chosen_layer == choice.candidates[max(range(len(choice.scores)), key=choice.scores.__getitem__)]
        assert int(steps.loc[steps["step"] == k, "removed"].iloc[0]) == choice.chosen_layer
    # profiles of another dataset for the same model exist -> leave-one-dataset-out, never the pruned dataset
    profiles = store.profiles("tiny-bert").assign(dataset="other-dataset", run_id="elsewhere")
    events = prune_events(tiny_cfg(strategy="lr_fusion", layers_to_remove=1), run_id="x", profiles=profiles)
    choice = next(ev for ev in events if ev.stage == "choice")
    info = choice.payload["info"]
    assert info["protocol"]["name"] == "leave_one_dataset_out"
    assert info["protocol"]["datasets"] == ["other-dataset"]
    shap = info["explanation"]
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

    assert execute_run(store, rid, on_event=on_event) == "cancelled"
    assert seen[-1] == "finetune" and seen.count("finetune") == 2
    run = store.get_run(rid)
    assert run.status == "cancelled"
    assert list(store.steps(rid)["n_layers"]) == [12]  # nothing half-written is recorded as a step


def test_failed_run_is_recorded_not_raised(store):
    cfg = tiny_cfg(dataset="no-such-dataset")
    rid = store.create_run(kind="prune", model=cfg.model, dataset=cfg.dataset, strategy=cfg.strategy,
                           config=cfg.to_dict())
    assert execute_run(store, rid) == "failed"
    assert "no-such-dataset" in store.get_run(rid).error


def test_runner_runs_in_a_worker_and_recovers_a_killed_one(tmp_path):
    runner = Runner(tmp_path / "store")
    ok, = runner.submit("prune", [tiny_cfg(layers_to_remove=1).to_dict()])
    runner.join(ok, timeout=600)
    assert runner.store.get_run(ok).status == "done"
    # a worker killed mid-run leaves a run that the next runner marks interrupted
    doomed, = runner.submit("prune", [tiny_cfg(layers_to_remove=3, step_epochs=5.0).to_dict()])
    deadline = time.time() + 300
    while time.time() < deadline and runner.store.get_run(doomed).status != "running":
        time.sleep(0.2)
    proc = runner._procs[doomed]
    os.kill(proc.pid, signal.SIGKILL)
    runner.join(doomed, 30)
    assert not runner.alive(doomed)
    # the runner that owned it sees its worker gone and never reports it as running
    assert runner.store.get_run(doomed).status == "interrupted"
    again = Runner(tmp_path / "store")
    assert again.store.get_run(doomed).status == "interrupted"
    assert again.store.get_run(ok).status == "done"
