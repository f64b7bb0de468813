"""The names of the files a run leaves in its folder of the run store, written once.

A run's folder (``RunStore.run_dir``) holds::

    config.json                 the run's validated configuration
    summary.json                what the run found (written by the ``done`` event)
    model/                      the final model (``save_pretrained``), when the run exports one
    steps/<k>/choice.json       step k's decision (pruning: the layer and the ranker's explanation;
                                merging: the window)
    steps/<k>/<table>.csv       the tables an event carries (``Event.tables``): see the ``*_TABLE`` names
    steps/<k>/outcomes/<e>.parquet  per-example outcomes of evaluation ``e`` at step k (one row per example,
                                keyed by ``example``: :func:`core.train.per_example`); see the ``*_OUTCOMES`` names

Paths are relative to the run's folder, with ``/`` separators, as ``RunStore.read_json`` / ``read_table``
take them. These are the names every run stored so far uses: renaming one means reading the old name too.
"""

from __future__ import annotations

import operator
from pathlib import Path

CONFIG = "config.json"
SUMMARY = "summary.json"
CHOICE = "choice.json"
MODEL_DIR = "model"
#: the file that marks a saved model folder (``save_pretrained`` writes it)
MODEL_CONFIG = f"{MODEL_DIR}/config.json"
STEPS_DIR = "steps"

# the tables the runs record per step (the keys of ``Event.tables``), each stored as ``<name>.csv``
SIGNALS_TABLE = "signals"
ORACLE_TABLE = "oracle"
PROFILE_TABLE = "profile"
FFN_SIMILARITY_TABLE = "ffn_similarity"
WINDOWS_TABLE = "windows"
ALIGNMENT_TABLE = "alignment"
COMPARISON_TABLE = "comparison"

# per-example outcomes (issue 21): an event carries them as tables named ``outcomes(<evaluation>)``, stored as
# ``steps/<k>/outcomes/<evaluation>.parquet``. Columns: example, label, pred, loss, kl_to_teacher (NaN without a
# teacher), plus ``original_layer`` (the removed layer) in the oracle's file.
OUTCOMES_DIR = "outcomes"
TEST_OUTCOMES = "test"  # the step's model on the test split (step 0: the teacher)
VAL_OUTCOMES = "val"  # the step's model on the validation split
ORACLE_OUTCOMES = "oracle_val"  # every oracle candidate (one layer removed, no tuning) on the validation split
KD_TEST_OUTCOMES = "kd_test"  # after distillation, in the final step's folder
KD_VAL_OUTCOMES = "kd_val"
# merging runs: step 0 holds the teacher's ``test``/``val``; step 1 one file per row of the comparison table and
# split: ``comparison_outcomes("merge", "finetuned", "test")`` -> ``merge_finetuned_test``
COMPARISON_METHODS = ("merge", "prune")
COMPARISON_STAGES = ("no_tuning", "finetuned", "distilled")
# the deploy check (``core.deploy.bench``), in the run's last step folder: the run's final model on the test split,
# evaluated on the CPU in PyTorch float32, in ONNX Runtime float32 and (when measured) in ONNX Runtime dynamic int8.
# ``kl_to_teacher`` is KL(teacher || model), the teacher's logits from the same check (PyTorch float32 on the CPU);
# the two ONNX Runtime files add ``kl_to_torch``: KL(model in PyTorch float32 || this engine), what the export or
# the quantization changed. The teacher's side is step 0's ``test`` file; ``deploy_teacher`` is written only for a
# run whose step 0 kept no outcomes of the same test rows (computed by the check from the same logits).
DEPLOY_TORCH_OUTCOMES = "deploy_torch"
DEPLOY_ORT_OUTCOMES = "deploy_ort"
DEPLOY_INT8_OUTCOMES = "deploy_int8"
DEPLOY_TEACHER_OUTCOMES = "deploy_teacher"
#: a run's deploy check (ONNX export or deploy benchmark): its state (task, status, progress, message, error), in the
#: run's folder; written by the check's worker (core.deploy.worker) and by the job layer (core.jobs)
DEPLOY_JOB = "deploy/job.json"


def comparison_outcomes(method: str, stage: str, split: str) -> str:
    """The evaluation name of a merging run's model ``method`` (merge | prune) at ``stage`` on ``split``."""
    if method not in COMPARISON_METHODS or stage not in COMPARISON_STAGES or split not in ("test", "val"):
        raise ValueError(f"no comparison outcomes for {method!r}, {stage!r}, {split!r}")
    return f"{method}_{stage}_{split}"


def outcomes(evaluation: str) -> str:
    """The ``Event.tables`` key of per-example outcomes: ``outcomes("test")`` -> ``outcomes/test``."""
    if not evaluation or "/" in evaluation or evaluation.startswith("."):
        raise ValueError(f"an evaluation name is one plain word like 'test', got {evaluation!r}")
    return f"{OUTCOMES_DIR}/{evaluation}"


def is_outcomes(table: str) -> bool:
    return table.startswith(f"{OUTCOMES_DIR}/")


def table_name(table: str) -> str:
    """The file name of a per-step table: ``signals`` -> ``signals.csv``; per-example outcomes are Parquet:
    ``outcomes/test`` -> ``outcomes/test.parquet``."""
    return f"{table}.parquet" if is_outcomes(table) else f"{table}.csv"


def step_outcomes(step: int, evaluation: str) -> str:
    """The path of step ``step``'s per-example outcomes: ``step_outcomes(3, "test")`` ->
    ``steps/3/outcomes/test.parquet``."""
    return step_table(step, outcomes(evaluation))


def step_file(step: int, name: str) -> str:
    """The path of ``name`` (a file name such as :data:`CHOICE` or ``signals.csv``) for step ``step``."""
    try:
        k = operator.index(step)  # an int, numpy's included
    except TypeError:
        k = -1
    if isinstance(step, bool) or k < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    return f"{STEPS_DIR}/{k}/{name}"


def step_table(step: int, table: str) -> str:
    """The path of a per-step table: ``step_table(3, SIGNALS_TABLE)`` -> ``steps/3/signals.csv``."""
    return step_file(step, table_name(table))


def step_choice(step: int) -> str:
    """The path of step ``step``'s decision: ``steps/<k>/choice.json``."""
    return step_file(step, CHOICE)


def steps_with(run_dir: Path, name: str) -> list[int]:
    """The steps of the run stored in ``run_dir`` that have ``steps/<k>/<name>``, ascending."""
    folder = run_dir / STEPS_DIR
    if not folder.is_dir():
        return []
    return sorted(int(p.parent.name) for p in folder.glob(f"*/{name}") if p.parent.name.isdigit())
