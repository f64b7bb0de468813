"""The walks' typed producers (issue 32, items 2 and 3): a pruning step's row (:class:`StepRow`) and a run's
summary (:class:`PruneSummary`, :class:`MergeSummary`) are records whose ``to_dict`` is exactly what the store and
the shipped pack hold, and whose readers give back every stored file unchanged; the precision is resolved once where
a walk starts and an unresolved ``auto`` is refused below that; the tiny model's recovery learning rate is one value;
the walks stay split into small functions."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from core.config import RESOLVED, as_resolved
from core.merging.config import MergeConfig
from core.merging.loop import MergeSetup
from core.metrics import measure_with_outcomes
from core.models.registry import TINY_RECOVERY_LR, recovery_lr
from core.pruning.config import PruneConfig
from core.pruning.tree import TreeWalk, WalkSetup
from core.runs.record import (
    MergeSummary,
    OracleMark,
    PruneSummary,
    RankerMark,
    StepRow,
    TeacherOrigin,
    summary_of,
)
from core.runs.store import RunStore
from core.train import DistillConfig, predict_logits

ROOT = Path(__file__).resolve().parent.parent
PACK_TABLES = ROOT / "data" / "pack" / "tables"
CPU = torch.device("cpu")

METRICS = {"num_layers": 11, "kept_layers": [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11], "test_accuracy": 0.75,
           "test_macro_f1": 0.7, "test_loss": 0.6, "params_total": 1000, "params_encoder": 600, "val_accuracy": 0.8,
           "val_macro_f1": 0.79, "val_loss": 0.5, "safetensors_bytes": 4000, "latency_ms": 2.5,
           "latency_batch_size": 32, "latency_seq_length": 32}
TEACHER = {**METRICS, "num_layers": 12, "kept_layers": list(range(12)), "test_accuracy": 0.9, "params_total": 1200}


def _rows() -> list[StepRow]:
    return [StepRow(12, None, (), TEACHER, teacher=TeacherOrigin(False, "abc123", "9b27361", "bf16", weak=True)),
            StepRow(11, 5, (5,), METRICS, oracle=OracleMark(7, 0.82, 0.8, 1.0),
                    ranker=RankerMark(0.6, True)),
            StepRow(10, 7, (5, 7), {**METRICS, "num_layers": 10, "kept_layers": [0, 1, 2, 3, 4, 6, 8, 9, 10, 11]},
                    oracle=OracleMark(2, 0.8, 0.78, 1.1))]


# ------------------------------------------------------------------------------------------ step rows
def test_a_step_row_is_written_key_for_key_as_the_walk_wrote_it():
    teacher, ranked, plain = (r.to_dict() for r in _rows())
    assert list(teacher) == ["n_layers", "removed", "removed_order", *TEACHER, "teacher_cached", "teacher_key",
                             "code_version", "precision", "weak_teacher"]
    assert list(ranked) == ["n_layers", "removed", "removed_order", *METRICS, "oracle_best", "oracle_best_accuracy",
                            "chosen_oracle_accuracy", "ratio", "ranker_spearman", "ranker_top1"]
    assert "ranker_spearman" not in plain and plain["removed_order"] == [5, 7] and plain["ratio"] == 1.1
    unflagged = StepRow(12, None, (), TEACHER, teacher=TeacherOrigin(True, None, "v", "fp32"))
    assert "weak_teacher" not in unflagged.to_dict()


def test_a_step_row_round_trips_through_the_stores_step_table(tmp_path):
    store = RunStore(tmp_path / "store")
    cfg = PruneConfig(model="tiny-bert", dataset="keywords")
    run_id = store.create_run(kind="prune", model=cfg.model, dataset=cfg.dataset, strategy=cfg.strategy,
                              config=cfg.to_dict())
    rows = _rows()
    for step, row in enumerate(rows):
        store.add_step(run_id, step, row.to_dict())
    frame = store.steps(run_id)  # one DataFrame: a key one row lacks reads back as NaN in that row
    assert frame["step"].tolist() == [0, 1, 2] and frame["removed"].isna().tolist() == [True, False, False]
    back = [StepRow.from_dict(r) for r in frame.to_dict(orient="records")]
    assert back == rows
    assert [b.to_dict() for b in back] == [r.to_dict() for r in rows]


def test_every_step_row_of_the_shipped_pack_reads_back_to_what_is_stored():
    steps = pd.read_parquet(PACK_TABLES / "steps.parquet")
    assert len(steps) > 0
    for data in steps["data"]:
        stored = json.loads(data)
        assert StepRow.from_dict(stored).to_dict() == stored


# ------------------------------------------------------------------------------------------ summaries
def test_every_summary_of_the_shipped_pack_reads_back_to_what_is_stored():
    runs = pd.read_parquet(PACK_TABLES / "runs.parquet")
    for kind, text, run_id in zip(runs["kind"], runs["summary"], runs["id"]):
        stored = json.loads(text)
        summary = summary_of(kind, stored)
        assert summary.to_dict() == stored and summary.raw == stored
        assert summary.precision in RESOLVED and summary.precision == stored["precision"]
        on_disk = json.loads((ROOT / "data" / "pack" / "runs" / run_id / "summary.json").read_text())
        assert PruneSummary.of(on_disk).to_dict() == on_disk


def test_old_and_odd_summaries_still_read_and_keep_what_they_do_not_know():
    old = {"teacher": {"test_accuracy": 0.9, "params_total": 100}, "removed_order": [11, 10], "final_layers": 10,
           "before_kd": {"test_accuracy": 0.8}, "timings_s": {"total": 120.0}, "something_later": {"x": 1}}
    summary = PruneSummary.of(old)
    assert summary.precision is None and summary.final_accuracy == 0.8 and summary.removed_order == [11, 10]
    assert summary.to_dict() == old and summary.extra == {"something_later": {"x": 1}}
    odd = PruneSummary.of({"final_layers": "many", "precision": "auto", "ratio": "n/a"})
    assert odd.final_layers is None and odd.precision is None and odd.ratio is None
    merge = {"teacher": {"test_accuracy": 0.9, "params_total": 100, "unique_ffns": 12}, "window": [4, 5],
             "window_label": "L4-L5", "selection": "accuracy", "reference": "first", "params": {"removed": 10},
             "merged": {"finetuned": {"test_accuracy": 0.8}}, "final": {"test_accuracy": 0.8},
             "ffn_still_shared": True, "before_kd": {"test_accuracy": 0.8}, "budget": {"depth": 1},
             "pruning": {"strategy": "oracle", "depth": 1, "removed_layers": [3], "kept_layers": [0, 1, 2],
                         "no_tuning": {"test_accuracy": 0.5}, "finetuned": {"test_accuracy": 0.7}},
             "ratio": 0.98, "timings_s": {"total": 3.0}, "precision": "fp32"}
    typed = MergeSummary.of(merge)
    assert typed.to_dict() == merge and typed.pruning is not None and typed.pruning.final_accuracy == 0.7
    assert typed.pruning.distilled is None and typed.final_accuracy == 0.8 and typed.window == [4, 5]


# ------------------------------------------------------------------------------------------ precision
def test_a_walk_below_its_entry_refuses_an_unresolved_precision():
    prune = PruneConfig(model="tiny-bert", dataset="keywords")
    with pytest.raises(ValueError, match="resolved .* got 'auto'"):
        WalkSetup(prune, CPU, "auto")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="resolved .* got 'auto'"):
        MergeSetup(MergeConfig(model="tiny-bert", dataset="keywords"), CPU, "auto")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one of fp32, bf16, fp16"):
        as_resolved("fp64")
    setup = WalkSetup.open(prune, CPU)  # the entry resolves the user's "auto" once
    assert prune.precision == "auto" and setup.precision == "fp32"  # the tiny model is fp32 everywhere
    assert TreeWalk([prune], ["r"], device=CPU).precision == "fp32"


def test_measuring_with_an_unresolved_precision_is_refused(tiny_model, keyword_batches):
    with pytest.raises(ValueError, match="got 'auto'"):
        predict_logits(tiny_model, keyword_batches["val"], precision="auto")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="got 'auto'"):
        measure_with_outcomes(tiny_model, keyword_batches["test"], precision="auto")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ learning rate
def test_the_tiny_models_recovery_learning_rate_is_one_value_for_both_walks():
    tiny = dict(model="tiny-bert", dataset="keywords")
    prune = WalkSetup.open(PruneConfig(**tiny, step_lr=5e-5, kd=DistillConfig(lr=2e-4)), CPU)
    merge = MergeSetup.open(MergeConfig(**tiny), CPU)
    assert prune.step_lr == prune.kd_lr == merge.lr == merge.kd_lr == TINY_RECOVERY_LR == recovery_lr("tiny-bert", 1.0)
    assert MergeSetup.open(MergeConfig(**tiny, lr=3e-4), CPU).lr == 3e-4  # a merge's own lr wins, as before
    e5 = WalkSetup(PruneConfig(step_lr=5e-5, kd=DistillConfig(lr=2e-4)), CPU, "fp32")
    assert (e5.step_lr, e5.kd_lr) == (5e-5, 2e-4) and recovery_lr("e5-small", 7e-5) == 7e-5
    for path in ("core/pruning/tree.py", "core/pruning/context.py", "core/merging/loop.py"):
        source = (ROOT / path).read_text()
        assert "1e-3" not in source and '"tiny-bert"' not in source, f"{path} spells the tiny model's rate itself"


# ------------------------------------------------------------------------------------------ shape
def _functions(path: str) -> list[ast.FunctionDef]:
    tree = ast.parse((ROOT / path).read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]


@pytest.mark.parametrize("path", ["core/pruning/tree.py", "core/pruning/context.py", "core/merging/loop.py"])
def test_the_walks_are_small_functions(path):
    for fn in _functions(path):
        every = (*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs)
        args = [a.arg for a in every if a.arg not in ("self", "cls")]
        length = (fn.end_lineno or fn.lineno) - fn.lineno + 1
        assert len(args) <= 6, f"{path}: {fn.name} takes {len(args)} parameters"
        assert length <= 45, f"{path}: {fn.name} is {length} lines"


def test_no_function_of_core_defaults_a_precision_string():
    found = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        for fn in _functions(str(path.relative_to(ROOT))):
            params = [*fn.args.posonlyargs, *fn.args.args]
            defaults = dict(zip([a.arg for a in params[len(params) - len(fn.args.defaults):]], fn.args.defaults))
            defaults.update({a.arg: d for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults) if d is not None})
            value = defaults.get("precision")
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                found.append(f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}")
    assert not found, f"a precision default below the entry points: {found}"
