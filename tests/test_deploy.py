"""Deployment check on tiny runs: ONNX export of a pruned and a merged run (loads in ONNX Runtime, parity on
the run's test texts, tied FFNs counted in the file), a failing parity check (reported, not offered), the
deploy benchmark (every row printed, result kept with the run), the background job and the CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import ConfigError, DataConfig
from core.deploy import bench as B
from core.deploy import onnx_export as ox
from core.deploy import worker as W
from core.deploy.bench_result import AccuracyStatistics, OutcomeSource
from core.deploy.records import ExportInfo
from core.jobs import deploy as J
from core.jobs.execute import execute_run
from core.pruning.config import PruneConfig
from core.runs.store import RunStore
from core.train import DistillConfig

SMALL = DataConfig(train_cap=150, val_cap=45, test_cap=45)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny model gains nothing from a second thread on the busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[RunStore, str, str]:
    """A store with one finished tiny pruned run (2 layers removed) and one tiny merged run (window 2-4)."""
    from core.merging.config import MergeConfig

    store = RunStore(tmp_path_factory.mktemp("deploy-store"))
    prune = PruneConfig(model="tiny-bert", dataset="keywords", strategy="top_down", layers_to_remove=2,
                        step_epochs=0.5, data=SMALL, calibration_size=32, distill=False)
    merge = MergeConfig(model="tiny-bert", dataset="keywords", window="2-4", epochs=0.5, distill=False,
                        compare_pruning=False, data=SMALL, calibration_size=32, kd=DistillConfig(epochs=0.5))
    ids = []
    for kind, cfg in (("prune", prune), ("merge", merge)):
        rid = store.create_run(kind=kind, model=cfg.model, dataset=cfg.dataset, strategy=kind, config=cfg.to_dict())
        assert execute_run(store, rid) == "done", store.get_run(rid).error
        ids.append(rid)
    return store, ids[0], ids[1]


@pytest.fixture(scope="module")
def pruned_record(runs):
    store, pruned, _ = runs
    return ox.export_run(store, pruned)


@pytest.fixture(scope="module")
def merged_record(runs):
    store, _, merged = runs
    return ox.export_run(store, merged)


def _ort_vs_torch(store: RunStore, run_id: str) -> float:
    """Max |logit diff| on a shape the export never saw (dynamic batch and sequence, with padding)."""
    session = ox.ort_session(ox.offered_onnx(store, run_id), threads=1)
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    ids = torch.randint(5, 100, (3, 17), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    batch = {"input_ids": ids, "attention_mask": mask}
    return float(np.abs(ox.ort_logits(session, batch) - ox.torch_logits(ox.load_run_model(store, run_id), batch)).max())


# ------------------------------------------------------------------------------------------ export
def test_pruned_run_exports_loads_in_onnx_runtime_and_keeps_parity(runs, pruned_record):
    store, pruned, _ = runs
    rec = pruned_record
    assert rec.passed and rec.status == "passed" and rec.file == ox.ONNX_FILE
    p = rec.parity
    assert p.texts == 45 and p.predictions_identical and p.prediction_mismatches == 0
    assert 0.0 <= p.max_abs_diff <= ox.PARITY_ATOL and p.passed
    assert p.onnx_accuracy == p.torch_accuracy
    assert store.read_json(pruned, ox.PARITY_FILE) == json.loads(json.dumps(rec.to_dict()))
    assert ox.read_parity(store, pruned) == rec
    assert ox.offered_onnx(store, pruned) == store.run_dir(pruned) / ox.ONNX_FILE
    assert _ort_vs_torch(store, pruned) <= ox.PARITY_ATOL
    f = rec.ffn_weights  # 10 layers, none tied: 2 FFN matrices per layer
    assert f.layers == f.distinct_ffns == 10 and f.ffn_weight_initializers == 20 == f.expected
    assert f.tied_kept_once and not f.duplicated
    again = ox.export_run(store, pruned)  # a passing export on disk is reused, not redone
    assert again.created_at == rec.created_at


def test_merged_run_keeps_its_tied_ffns_once_in_the_file(runs, merged_record):
    store, _, merged = runs
    rec = merged_record
    assert rec.passed and rec.parity.predictions_identical
    assert _ort_vs_torch(store, merged) <= ox.PARITY_ATOL
    f = rec.ffn_weights
    assert f.layers == 12 and f.distinct_ffns == 10
    assert f.ffn_weight_initializers == 20 and f.per_layer == 24  # window 2-4 stored once, not 3 times
    assert f.tied_kept_once and not f.duplicated
    # the exporter's own constant folding copies a tied weight per use: the record says so
    assert f.from_exporter is not None and f.from_exporter >= f.ffn_weight_initializers
    assert "tied kept once: yes" in ox.parity_text(rec)
    assert re.search(r"test accuracy \(95 % Wilson over the 45 texts\): PyTorch \d\.\d{4} \[\d\.\d{4}, \d\.\d{4}\]",
                     ox.parity_text(rec))


def test_census_counts_a_duplicated_file_as_duplicated(runs, merged_record, tmp_path):
    """The census is not a constant: the merged model's FFNs exported untied (one copy per layer) count 24."""
    import copy

    from core.merging.ffn import unique_ffn_count
    from core.models.registry import encoder_layers

    store, _, merged = runs
    model = ox.load_run_model(store, merged)
    untied = copy.deepcopy(model)
    for layer in encoder_layers(untied):
        layer.intermediate = copy.deepcopy(layer.intermediate)
        layer.output.dense = copy.deepcopy(layer.output.dense)
    assert unique_ffn_count(untied) == 12
    info, from_exporter = ox.export_onnx(untied, tmp_path / "untied.onnx")
    census = ox.ffn_weight_census(tmp_path / "untied.onnx", model)  # counted against the tied model
    assert census.ffn_weight_initializers == 20  # equal copies merged by content after export
    assert info.duplicate_constants_merged > 0 and from_exporter >= 20


def test_failed_parity_is_reported_and_not_offered(runs, pruned_record, monkeypatch, tmp_path, capsys):
    store, pruned, _ = runs
    good = tmp_path / "good.onnx"
    shutil.copyfile(store.run_dir(pruned) / ox.ONNX_FILE, good)
    real_logits = ox.ort_logits
    monkeypatch.setattr(ox, "export_onnx", lambda model, path: (shutil.copyfile(good, path), (
        ExportInfo("copy", 0.0, good.stat().st_size, 0), 20))[1])
    monkeypatch.setattr(ox, "ort_logits", lambda session, batch: real_logits(session, batch) + 0.01)
    rec = ox.export_run(store, pruned, force=True)
    assert rec.status == "failed" and not rec.passed and rec.file is None and not rec.parity.passed
    assert rec.parity.max_abs_diff > ox.PARITY_ATOL and rec.parity.predictions_identical
    assert store.read_json(pruned, ox.PARITY_FILE)["status"] == "failed"
    assert ox.offered_onnx(store, pruned) is None
    assert not (store.run_dir(pruned) / ox.ONNX_FILE).exists()
    assert "NOT offered" in ox.parity_text(rec)
    # the CLI reports it and writes no ONNX file
    from core.cli import main as cli

    monkeypatch.setenv("PRUNE_STORE_DIR", str(store.root))
    assert cli.main(["export", pruned, str(tmp_path / "out"), "--onnx"]) == 1
    out = capsys.readouterr().out
    assert "parity FAILED" in out and "NOT offered" in out
    assert (tmp_path / "out" / "config.json").exists() and not (tmp_path / "out" / "model.onnx").exists()
    # restore the good export for the tests that follow
    monkeypatch.undo()
    shutil.copyfile(good, store.run_dir(pruned) / ox.ONNX_FILE)
    store.write_json(pruned, ox.PARITY_FILE, pruned_record.to_dict())
    assert ox.offered_onnx(store, pruned) is not None


def test_cli_export_onnx_writes_the_checked_file(runs, pruned_record, monkeypatch, tmp_path, capsys):
    from core.cli import main as cli

    store, pruned, _ = runs
    monkeypatch.setenv("PRUNE_STORE_DIR", str(store.root))
    assert cli.main(["export", pruned, str(tmp_path / "out"), "--onnx", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "passed" and Path(out["path"]) == tmp_path / "out" / "model.onnx"
    assert (tmp_path / "out" / "model.onnx").read_bytes() == (store.run_dir(pruned) / ox.ONNX_FILE).read_bytes()
    assert json.loads((tmp_path / "out" / "onnx_parity.json").read_text())["status"] == "passed"


# ------------------------------------------------------------------------------------------ bench
def test_bench_config_is_validated():
    with pytest.raises(ConfigError, match="DeployBenchConfig.repeats"):
        B.DeployBenchConfig(repeats=0)
    with pytest.raises(ConfigError, match="DeployBenchConfig.batch_sizes"):
        B.DeployBenchConfig(batch_sizes=())


def test_interleaved_medians_time_every_engine_every_round():
    calls = {"a": 0, "b": 0}

    def engine(name, seconds):
        def run():
            calls[name] += 1
            time.sleep(seconds)
        return run

    ms = B.interleaved_medians({"a": engine("a", 0.0), "b": engine("b", 0.02)}, rounds=3, warmup=1)
    assert calls == {"a": 4, "b": 4} and ms["b"] > ms["a"] and ms["b"] >= 19.0


def test_bench_deploy_prints_every_row_and_keeps_the_result(runs, pruned_record, monkeypatch, capsys):
    from benchmarks import main as benchmarks

    store, pruned, _ = runs
    monkeypatch.setenv("PRUNE_STORE_DIR", str(store.root))
    assert benchmarks(["deploy", pruned, "--repeats", "2", "--warmup", "0", "--int8"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] and line.split()[0].isdigit()]
    assert [(int(r[0]), int(r[1])) for r in rows] == [(1, 32), (1, 128), (8, 32), (8, 128), (32, 32), (32, 128)]
    assert all(len(r) == 12 and float(r[-1]) == pytest.approx(1.2) for r in rows)  # ideal 12 / 10 layers
    assert "compr. int8 ms" in out and "compressed int8" in out and "parity" in out
    result = store.read_json(pruned, B.BENCH_FILE)
    assert len(result["rows"]) == 6 and result["teacher_layers"] == 12 and result["compressed_layers"] == 10
    for row in result["rows"]:
        for engine in B.ENGINES:
            assert row[f"{engine}_ms"] > 0
        assert row["speedup_ort"] == pytest.approx(row["teacher_ort_ms"] / row["compressed_ort_ms"])
    assert 0.0 <= result["accuracy"]["compressed_int8"] <= 1.0
    assert result["parity"]["teacher"]["predictions_identical"]
    # every accuracy with its interval, every comparison paired with its verdict, the method said once
    assert "test accuracy on 45 test texts (95 % intervals: an accuracy's is Wilson's" in out
    assert re.search(r"compressed int8 \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", out)
    assert "ONNX Runtime vs PyTorch: within noise (ONNX Runtime − PyTorch: 0.000 [0.000, 0.000])" in out
    assert "int8 vs float32: " in out and "compressed vs teacher: " in out


def test_bench_keeps_per_example_outcomes_that_give_its_accuracies_exactly(runs, pruned_record):
    """The deploy check's outcome files round-trip through the store: they are what the models predict on the
    run's test texts, and the accuracies, intervals and paired differences it reports are theirs exactly."""
    import pandas as pd

    from core.runs import artifacts
    from core.stats import accuracy_of, paired_accuracy_of

    store, pruned, _ = runs
    if (store.read_json(pruned, B.BENCH_FILE) or {}).get("config", {}).get("int8") is not True:  # run on its own
        B.run_bench(store, pruned, B.DeployBenchConfig(batch_sizes=(1,), seq_lengths=(32,), repeats=1, warmup=0,
                                                       int8=True))
    result = store.read_json(pruned, B.BENCH_FILE)
    step = B.deploy_step(store, pruned)
    assert step > 0 and result["test_texts"] == 45
    assert result["outcomes"] == {
        "compressed_torch": {"step": step, "evaluation": artifacts.DEPLOY_TORCH_OUTCOMES},
        "compressed_ort": {"step": step, "evaluation": artifacts.DEPLOY_ORT_OUTCOMES},
        "compressed_int8": {"step": step, "evaluation": artifacts.DEPLOY_INT8_OUTCOMES},
        # the teacher's test outcomes the run kept at step 0, reused, and the same predictions as here
        "teacher_torch": {"step": 0, "evaluation": artifacts.TEST_OUTCOMES, "reused": True,
                          "prediction_mismatches": 0}}
    assert artifacts.DEPLOY_TEACHER_OUTCOMES not in store.outcome_evaluations(pruned).get(step, [])
    frames = {engine: store.read_outcomes(pruned, w["step"], w["evaluation"])
              for engine, w in result["outcomes"].items()}
    assert set(frames) == set(result["accuracy"]) == set(result["intervals"])
    for engine, frame in frames.items():
        assert frame is not None and len(frame) == 45 and frame["example"].tolist() == list(range(45))
        assert float((frame["pred"] == frame["label"]).mean()) == result["accuracy"][engine]
        assert accuracy_of(frame).to_dict() == result["intervals"][engine]
        assert result["intervals"][engine]["method"] == "Wilson"
    assert result["accuracy"]["compressed_torch"] == result["parity"]["compressed"]["torch_accuracy"]
    assert result["accuracy"]["compressed_ort"] == result["parity"]["compressed"]["onnx_accuracy"]
    # the stored files are what the models predict now (written and read back unchanged)
    from core.data.batches import batches

    run = store.get_run(pruned)
    task = ox.run_task(store, run)
    test = task.encoded["test"]
    teacher, _ = B._teacher(store, run, task)
    t_logits = np.concatenate([ox.torch_logits(teacher, b) for b in batches(test, 64)])
    ref, got, labels = ox.parity_logits(ox.load_run_model(store, pruned),
                                        ox.ort_session(ox.offered_onnx(store, pruned), threads=1), test)
    int8 = B._session_logits(ox.ort_session(store.run_dir(pruned) / ox.DEPLOY_DIR / "model.int8.onnx", 1), test)
    pd.testing.assert_frame_equal(frames["compressed_torch"], B.engine_outcomes(ref, labels, t_logits))
    pd.testing.assert_frame_equal(frames["compressed_ort"], B.engine_outcomes(got, labels, t_logits, ref))
    pd.testing.assert_frame_equal(frames["compressed_int8"], B.engine_outcomes(int8, labels, t_logits, ref))
    assert list(frames["compressed_ort"].columns) == ["example", "label", "pred", "loss", "kl_to_teacher",
                                                      "kl_to_torch"]
    assert frames["compressed_ort"]["kl_to_torch"].max() < 1e-5  # parity: the same distribution
    assert "kl_to_torch" not in frames["compressed_torch"]
    assert frames["compressed_torch"]["kl_to_teacher"].notna().all()
    # the paired differences are those of the files
    for key, (a, b, _, _) in B.COMPARISONS.items():
        d = result["differences"][key]
        assert (d["a"], d["b"]) == (a, b)
        assert d["interval"] == paired_accuracy_of(frames[a], frames[b]).interval.to_dict()
    ort = result["differences"]["ort_vs_torch"]
    assert ort["within_noise"] and ort["a_only"] == ort["b_only"] == 0 and ort["verdict"].startswith("within noise")


def test_the_verdict_of_identical_predictions_is_within_noise():
    """On synthetic outcomes: identical predictions read "within noise" (difference exactly 0); a model right on
    every row against one wrong on most is ahead beyond noise, and the lines say both."""
    import pandas as pd

    n = 200
    labels = np.arange(n) % 2
    right = pd.DataFrame({"example": np.arange(n), "label": labels, "pred": labels})
    mostly_wrong = right.assign(pred=np.where(np.arange(n) < 150, 1 - labels, labels))
    stats = B.accuracy_statistics({"teacher_torch": right, "compressed_torch": mostly_wrong,
                                   "compressed_ort": mostly_wrong.copy()})
    assert stats.accuracy == {"teacher_torch": 1.0, "compressed_torch": 0.25, "compressed_ort": 0.25}
    same = stats.differences["ort_vs_torch"]
    assert same.within_noise and same.interval.estimate == 0.0
    assert same.verdict == "within noise (ONNX Runtime − PyTorch: 0.000 [0.000, 0.000])"
    apart = stats.differences["compressed_vs_teacher"]
    assert not apart.within_noise and apart.verdict.startswith("teacher ahead by 0.750 [")
    assert apart.b_only == 150 and apart.a_only == 0
    assert "int8_vs_float32" not in stats.differences  # no int8 measured: no comparison
    lines = stats.lines(n)
    assert lines[0].startswith(f"test accuracy on {n} test texts (95 % intervals")
    assert "compressed ort 0.250 [" in lines[0]
    assert any(line.startswith("  ONNX Runtime vs PyTorch: within noise") for line in lines)
    assert any(line.startswith("  compressed vs teacher: teacher ahead by") for line in lines)
    # a result stored before intervals were kept prints its bare accuracies as it did
    assert AccuracyStatistics({"teacher_torch": 0.5}).lines() == ["test accuracy: teacher torch 0.5000"]


def test_teacher_outcomes_are_step_0s_or_computed_and_kept(runs, tmp_path):
    """The teacher's side reuses step 0's test outcomes of the same rows (saying how many predictions differ from
    the teacher here); without them it is computed from the teacher's logits and kept as deploy_teacher."""
    from core.runs import artifacts

    store, _, merged = runs
    kept = store.read_outcomes(merged, 0, artifacts.TEST_OUTCOMES)
    assert kept is not None
    labels = kept["label"].to_numpy().astype(np.int64)
    pred = kept["pred"].to_numpy().astype(np.int64)
    classes = int(max(labels.max(), pred.max())) + 1
    logits = np.eye(classes, dtype=np.float32)[pred]  # the same predictions as stored
    step = B.deploy_step(store, merged)
    frame, where = B.teacher_outcomes(store, merged, logits, labels, step)
    assert where == OutcomeSource(0, "test", reused=True, prediction_mismatches=0)
    assert frame.equals(kept)
    flipped = np.eye(classes, dtype=np.float32)[(pred + 1) % classes]  # every prediction another
    assert B.teacher_outcomes(store, merged, flipped, labels, step)[1].prediction_mismatches == len(kept)
    path = store.run_dir(merged) / artifacts.step_outcomes(0, artifacts.TEST_OUTCOMES)
    shutil.move(path, tmp_path / "test.parquet")
    try:
        frame, where = B.teacher_outcomes(store, merged, flipped, labels, step)
        assert where.to_dict() == {"step": step, "evaluation": artifacts.DEPLOY_TEACHER_OUTCOMES, "reused": False}
        back = store.read_outcomes(merged, step, artifacts.DEPLOY_TEACHER_OUTCOMES)
        assert back is not None and back.equals(frame)
        assert back["pred"].tolist() == ((pred + 1) % classes).tolist() and back["label"].tolist() == labels.tolist()
    finally:
        shutil.move(tmp_path / "test.parquet", path)
    B.teacher_outcomes(store, merged, logits, labels, step)  # step 0's again: the computed file goes
    assert store.read_outcomes(merged, step, artifacts.DEPLOY_TEACHER_OUTCOMES) is None


# ------------------------------------------------------------------------------------------ worker
def test_deploy_job_runs_in_a_worker_process_and_records_its_state(runs, merged_record):
    store, _, merged = runs
    proc = J.start_deploy(store, merged, "export")  # the checked export is on disk: the worker reuses it
    with pytest.raises(ValueError, match="already running"):
        J.start_deploy(store, merged, "export")
    proc.wait(timeout=240)
    job = J.deploy_job(store, merged)
    assert job is not None and job.status == "done" and job.task == "export" and job.progress == 1.0, job
    assert not J.deploy_running(store, merged)


def test_a_job_whose_worker_died_reads_as_interrupted(runs):
    store, pruned, _ = runs
    store.write_json(pruned, W.JOB_FILE, {"job": "bench", "status": "running", "pid": 2**22 + 12345,
                                          "progress": 0.3, "message": "Timing", "started_at": time.time()})
    job = J.deploy_job(store, pruned)  # reported (and recorded) as interrupted, the word every job uses
    assert job is not None and job.status == "interrupted" and not J.deploy_running(store, pruned)
    assert store.read_json(pruned, W.JOB_FILE)["status"] == "interrupted"
    with pytest.raises(ConfigError, match="start_deploy.job"):
        J.start_deploy(store, pruned, "train")
    os.remove(store.run_dir(pruned) / W.JOB_FILE)


# ------------------------------------------------------------------------------------------ page
def test_runs_page_offers_the_checked_onnx_and_shows_the_bench(runs, pruned_record, merged_record, monkeypatch):
    from streamlit.testing.v1 import AppTest

    store, pruned, merged = runs
    if store.read_json(pruned, B.BENCH_FILE) is None:  # run on its own: a quick bench first
        B.run_bench(store, pruned, B.DeployBenchConfig(batch_sizes=(1,), seq_lengths=(32,), repeats=1, warmup=0))
    monkeypatch.setenv("PRUNE_STORE_DIR", str(store.root))
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "pages" / "runs.py"), default_timeout=90)
    at.run()
    at.selectbox(key="runs_export").set_value(pruned).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "ONNX model (.onnx)" in [b.label for b in at.get("download_button")]
    shown = "\n".join(str(c.value) for c in at.caption)
    assert "measured while the machine trains" in shown and "max |logit difference|" in shown
    texts = store.read_json(pruned, B.BENCH_FILE)["parity"]["compressed"]["texts"]
    assert f"Test accuracy (95 % Wilson over {texts:,} test texts): teacher torch " in shown
    assert re.search(r"compressed ort \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", shown)
    assert "Differences are paired on the same texts" in shown
    assert "ONNX Runtime vs PyTorch: within noise (ONNX Runtime − PyTorch: 0.000 [0.000, 0.000])" in shown
    bench_table = at.dataframe[-1].value
    assert "ideal ×" in bench_table.columns and len(bench_table) == len(store.read_json(pruned, B.BENCH_FILE)["rows"])
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert "Speedup of the compressed model over its teacher" in titles
    # a failed parity record: said so, no download
    record = store.read_json(merged, ox.PARITY_FILE)
    store.write_json(merged, ox.PARITY_FILE, {**record, "status": "failed", "file": None,
                                              "parity": {**record["parity"], "passed": False}})
    try:
        at.selectbox(key="runs_export").set_value(merged).run()
        assert not at.exception, [e.value for e in at.exception]
        assert "ONNX model (.onnx)" not in [b.label for b in at.get("download_button")]
        assert any("failed parity and is not offered" in str(e.value) for e in at.error)
    finally:
        store.write_json(merged, ox.PARITY_FILE, record)
