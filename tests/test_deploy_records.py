"""The deploy check's typed records (issue 32): a parity record and a deploy benchmark as the code before the
dataclasses wrote them (dict fixtures, keys as stored in run folders) load, read through attributes and write
back the same JSON; the Runs page shows the figures of a stored benchmark and parity record through them. No
model is trained here: the run is a row of the store with the files a deploy check leaves."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from core.deploy import bench as B
from core.deploy import onnx_export as ox
from core.deploy.bench_result import AccuracyStatistics, BenchResult, BenchRow, DeployBenchConfig
from core.deploy.records import ParityRecord
from core.runs import artifacts
from core.runs.store import RunStore
from core.stats import Interval

PARITY = {"texts": 45, "max_abs_diff": 2.384185791015625e-07, "mean_abs_diff": 5.21e-08, "atol": 0.001,
          "predictions_identical": True, "prediction_mismatches": 0, "torch_accuracy": 0.8222222222222222,
          "onnx_accuracy": 0.8222222222222222, "passed": True}
TEACHER_PARITY = {**PARITY, "max_abs_diff": 4.76837158203125e-07, "torch_accuracy": 0.9111111111111111,
                  "onnx_accuracy": 0.9111111111111111}
#: deploy/onnx_parity.json as export_run wrote it (unchanged since the first deploy check, a2b06af)
OLD_PARITY_RECORD = {
    "run_id": "20261203-101500-abcdef", "kind": "prune", "model": "tiny-bert", "dataset": "keywords",
    "created_at": 1764756900.25, "file": "deploy/model.onnx", "status": "passed",
    "export": {"exporter": ox.EXPORTER, "seconds": 3.41, "bytes": 1834567, "duplicate_constants_merged": 4},
    "parity": PARITY,
    "ffn_weights": {"layers": 12, "distinct_ffns": 10, "ffn_weight_initializers": 20, "expected": 20,
                    "per_layer": 24, "tied_kept_once": True, "duplicated": False, "from_exporter": 24},
    "versions": {"torch": "2.9.0", "onnx": "1.19.1", "onnxruntime": "1.23.2", "onnxscript": "0.5.6",
                 "python": "3.11.9"}}
ROWS = [{"batch": 1, "seq": 32, "teacher_torch_ms": 6.0, "compressed_torch_ms": 5.0, "teacher_ort_ms": 3.0,
         "compressed_ort_ms": 2.5, "speedup_torch": 1.2, "speedup_ort": 1.2, "ort_vs_teacher_torch": 2.4, "ideal": 1.2},
        {"batch": 8, "seq": 128, "teacher_torch_ms": 60.0, "compressed_torch_ms": 48.0, "teacher_ort_ms": 30.0,
         "compressed_ort_ms": 25.0, "speedup_torch": 1.25, "speedup_ort": 1.2, "ort_vs_teacher_torch": 2.4,
         "ideal": 1.2}]
#: deploy/bench.json as the benchmark wrote it before per-example outcomes were kept (a2b06af to 0e6b17e): bare
#: accuracies, no intervals, differences, level, outcomes or test_texts
OLD_BENCH = {
    "run_id": "20261203-101500-abcdef", "kind": "prune", "model": "tiny-bert", "dataset": "keywords",
    "created_at": 1764757000.5, "seconds": 41.3,
    "config": {"batch_sizes": [1, 8], "seq_lengths": [32, 128], "repeats": 10, "warmup": 2, "int8": False},
    "threads": 2, "machine": {"cpus": 2, "platform": "Linux-6.8-x86_64", "processor": "x86_64"},
    "other_runs_active": ["20261203-095000-123456"], "teacher_layers": 12, "compressed_layers": 10,
    "distinct_ffns": 10, "ideal": 1.2,
    "accuracy": {"teacher_torch": 0.9111111111111111, "compressed_torch": 0.8222222222222222,
                 "compressed_ort": 0.8222222222222222},
    "parity": {"compressed": PARITY, "teacher": TEACHER_PARITY}, "rows": ROWS,
    "versions": OLD_PARITY_RECORD["versions"]}


def _interval(k: int, n: int = 45) -> dict:
    from core.stats import wilson_interval

    return wilson_interval(k, n).to_dict()


#: deploy/bench.json as the benchmark wrote it from issue 21 until the records were typed: intervals, paired
#: differences, level, where the outcomes are, test_texts; here with int8 (it lost accuracy)
INT8_ROWS = [{**ROWS[0], "compressed_int8_ms": 1.5, "speedup_int8": 2.0}]
NEW_BENCH = {
    **{k: v for k, v in OLD_BENCH.items() if k not in ("accuracy", "parity", "rows", "versions")},
    "config": {**OLD_BENCH["config"], "batch_sizes": [1], "seq_lengths": [32], "int8": True},
    "other_runs_active": [],
    "accuracy": {"teacher_torch": 41 / 45, "compressed_torch": 37 / 45, "compressed_ort": 37 / 45,
                 "compressed_int8": 35 / 45},
    "intervals": {"teacher_torch": _interval(41), "compressed_torch": _interval(37), "compressed_ort": _interval(37),
                  "compressed_int8": _interval(35)},
    "differences": {
        "ort_vs_torch": {"a": "compressed_ort", "b": "compressed_torch",
                         "interval": {"estimate": 0.0, "low": 0.0, "high": 0.0, "level": 0.95, "method": "paired "
                                      "bootstrap", "n": 45}, "a_only": 0, "b_only": 0, "mcnemar_p": 1.0,
                         "within_noise": True,
                         "verdict": "within noise (ONNX Runtime − PyTorch: 0.000 [0.000, 0.000])"},
        "int8_vs_float32": {"a": "compressed_int8", "b": "compressed_ort",
                            "interval": {"estimate": -0.0444, "low": -0.1111, "high": 0.0, "level": 0.95,
                                         "method": "paired bootstrap", "n": 45}, "a_only": 0, "b_only": 2,
                            "mcnemar_p": 0.5, "within_noise": True,
                            "verdict": "within noise (int8 − float32: -0.044 [-0.111, 0.000])"}},
    "level": 0.95,
    "outcomes": {"compressed_torch": {"step": 2, "evaluation": "deploy_torch"},
                 "compressed_ort": {"step": 2, "evaluation": "deploy_ort"},
                 "compressed_int8": {"step": 2, "evaluation": "deploy_int8"},
                 "teacher_torch": {"step": 0, "evaluation": "test", "reused": True, "prediction_mismatches": 3}},
    "test_texts": 45,
    "parity": {"compressed": PARITY, "teacher": TEACHER_PARITY}, "rows": INT8_ROWS,
    "versions": OLD_PARITY_RECORD["versions"]}


def _json(obj: object) -> object:
    return json.loads(json.dumps(obj))


# ------------------------------------------------------------------------------------------ records
def test_an_old_parity_record_loads_reads_through_attributes_and_round_trips():
    record = ParityRecord.from_dict(copy.deepcopy(OLD_PARITY_RECORD))
    assert record.passed and record.file == ox.ONNX_FILE
    assert record.parity.texts == 45 and record.parity.predictions_identical and record.parity.atol == 0.001
    assert record.ffn_weights.from_exporter == 24 and record.ffn_weights.tied_kept_once
    assert record.export.bytes == 1834567 and record.versions["onnx"] == "1.19.1"
    assert _json(record.to_dict()) == OLD_PARITY_RECORD
    assert ParityRecord.from_dict(record.to_dict()) == record
    text = ox.parity_text(record)
    assert "parity PASSED" in text and "20 for 10 distinct FFN(s) in 12 layers" in text
    assert "the exporter itself wrote 24 (its constant folding" in text and "NOT offered" not in text
    failed = ParityRecord.from_dict({**OLD_PARITY_RECORD, "status": "failed", "file": None})
    assert not failed.passed and failed.file is None and "NOT offered" in ox.parity_text(failed)


def test_a_bench_result_stored_before_outcomes_were_kept_loads_and_round_trips():
    result = BenchResult.from_dict(copy.deepcopy(OLD_BENCH))
    assert result.config == DeployBenchConfig(batch_sizes=(1, 8), seq_lengths=(32, 128), repeats=10, warmup=2,
                                              threads=2)
    assert result.threads == 2 and result.machine.cpus == 2 and result.other_runs_active == ("20261203-095000-123456",)
    assert result.stats.accuracy["teacher_torch"] == pytest.approx(0.9111, abs=1e-4)
    assert not result.stats.intervals and not result.stats.differences and not result.outcomes
    assert result.level is None and result.test_texts is None and result.texts == 45  # the parity check's count
    assert result.rows[1] == BenchRow(8, 128, 60.0, 48.0, 30.0, 25.0, 1.25, 1.2, 2.4, 1.2)
    assert not result.int8 and "compressed_int8_ms" not in result.table()
    assert _json(result.to_dict()) == OLD_BENCH  # written back with the keys it had, nothing added
    assert BenchResult.from_dict(result.to_dict()) == result
    text = B.bench_text(result)
    assert "test accuracy: teacher torch 0.9111, compressed torch 0.8222, compressed ort 0.8222" in text
    assert "warning: 1 other run(s) were training" in text and "compr. int8 ms" not in text


def test_a_bench_result_with_intervals_and_int8_loads_and_round_trips():
    result = BenchResult.from_dict(copy.deepcopy(NEW_BENCH))
    assert result.int8 and result.config.int8 and result.rows[0].speedup_int8 == 2.0
    assert result.stats.intervals["compressed_ort"] == Interval(**_interval(37))
    assert result.stats.differences["int8_vs_float32"].b_only == 2 and result.stats.int8_lost
    assert result.outcomes["teacher_torch"].reused and result.outcomes["compressed_ort"].reused is None
    assert result.test_texts == result.texts == 45 and result.level == 0.95
    assert _json(result.to_dict()) == NEW_BENCH
    lines = result.accuracy_lines()
    assert lines[0].startswith("test accuracy on 45 test texts (95 % intervals")
    assert "  int8 vs float32: within noise (int8 − float32: -0.044 [-0.111, 0.000]); 0 text(s) right only in " \
           "int8, 2 only in float32" in lines
    assert any("predicts 3 text(s) differently" in line for line in lines)
    text = B.bench_text(result)
    assert "int8 LOST accuracy: 0.778 [" in text and "(paired)" in text
    assert set(result.table().columns) == set(INT8_ROWS[0])


def test_accuracy_statistics_without_intervals_print_bare_accuracies():
    assert AccuracyStatistics({"teacher_torch": 0.5}).lines() == ["test accuracy: teacher torch 0.5000"]
    assert AccuracyStatistics({"teacher_torch": 0.5}).to_dict() == {"accuracy": {"teacher_torch": 0.5}}


def test_a_stored_nan_reads_back_as_nan():
    """The store writes NaN and infinities as null; a record with one still loads."""
    import math

    record = ParityRecord.from_dict({**OLD_PARITY_RECORD, "parity": {**PARITY, "max_abs_diff": None}})
    assert math.isnan(record.parity.max_abs_diff)


# ------------------------------------------------------------------------------------------ page
@pytest.fixture()
def deployed(tmp_path, monkeypatch) -> tuple[RunStore, str]:
    """A finished run with a model folder, an offered ONNX file, its parity record and an old-format benchmark."""
    from core.config import DataConfig
    from core.pruning.config import PruneConfig

    store = RunStore(tmp_path / "store")
    cfg = PruneConfig(model="tiny-bert", dataset="keywords", strategy="top_down", layers_to_remove=2,
                      data=DataConfig(train_cap=150, val_cap=45, test_cap=45)).to_dict()
    run_id = store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy="top_down", config=cfg)
    store.mark_running(run_id)
    store.finish(run_id, "done", summary={"teacher": {"test_accuracy": 0.91}, "after_kd": {"test_accuracy": 0.82}})
    folder = store.run_dir(run_id)
    (folder / artifacts.MODEL_CONFIG).parent.mkdir(parents=True, exist_ok=True)
    (folder / artifacts.MODEL_CONFIG).write_text("{}")
    (folder / ox.ONNX_FILE).parent.mkdir(parents=True, exist_ok=True)
    (folder / ox.ONNX_FILE).write_bytes(b"onnx")
    store.write_json(run_id, ox.PARITY_FILE, {**OLD_PARITY_RECORD, "run_id": run_id})
    store.write_json(run_id, B.BENCH_FILE, {**OLD_BENCH, "run_id": run_id})
    monkeypatch.setenv("PRUNE_STORE_DIR", str(store.root))
    return store, run_id


def _runs_page(run_id: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "pages" / "runs.py"), default_timeout=60)
    at.run()
    at.selectbox(key="runs_export").set_value(run_id).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_runs_page_shows_the_deploy_figures_of_the_stored_records(deployed):
    store, run_id = deployed
    at = _runs_page(run_id)
    assert "ONNX model (.onnx)" in [b.label for b in at.get("download_button")]
    shown = "\n".join(str(c.value) for c in at.caption)
    # the parity record: texts, max difference, threshold, FFN census
    assert "Parity on 45 test texts: max |logit difference| 2.4e-07 (≤ 0.001)" in shown
    assert "20 FFN weight matrices in the file for 10 distinct FFN(s) in 12 layers" in shown
    # the benchmark: repeats, threads, layers, accuracies with Wilson intervals over the parity check's texts
    assert "median of 10 interleaved rounds per shape, 2 thread(s)" in shown
    assert "teacher 12 layers, compressed 10 (10 distinct FFNs)" in shown
    assert "Test accuracy (95 % Wilson over 45 test texts): teacher torch 0.911 [" in shown
    assert any("1 other run(s) were training" in str(w.value) for w in at.warning)
    table = at.dataframe[-1].value
    assert list(table["batch"]) == [1, 8] and "ideal ×" in table.columns and "compressed int8 ms" not in table.columns


def test_runs_page_shows_a_failed_parity_and_the_paired_int8_loss(deployed):
    store, run_id = deployed
    store.write_json(run_id, ox.PARITY_FILE, {**OLD_PARITY_RECORD, "run_id": run_id, "status": "failed",
                                              "file": None, "parity": {**PARITY, "max_abs_diff": 0.02,
                                                                       "prediction_mismatches": 3, "passed": False}})
    store.write_json(run_id, B.BENCH_FILE, {**NEW_BENCH, "run_id": run_id})
    at = _runs_page(run_id)
    assert "ONNX model (.onnx)" not in [b.label for b in at.get("download_button")]
    assert any("max |logit difference| 2.0e-02 (threshold 0.001), 3 of 45 predictions differ" in str(e.value)
               for e in at.error)
    shown = "\n".join(str(c.value) for c in at.caption)
    assert "Differences are paired on the same texts" in shown and "int8 vs float32: within noise" in shown
    assert any("int8 quantization lost accuracy: 0.778 [" in str(w.value) and "(paired)" in str(w.value)
               for w in at.warning)
    assert "compressed int8 ms" in at.dataframe[-1].value.columns
