"""``python -m benchmarks teacher``: does the teacher recipe give small, skewed datasets enough optimisation?

Each dataset is subsampled (seeded) to ``--rows`` rows in which its largest class makes ``--majority`` of them
(the other classes share the rest as evenly as they can); the subsample becomes a task the way an upload does
and is split afresh (~70 % training rows). Two teachers are trained on it: the old recipe (fixed epochs, plain
cross-entropy) and the default one (at least ``TEACHER_MIN_STEPS`` optimiser steps, balanced class weights).
Each is printed beside the majority-class baseline and the guard's verdict (:func:`core.teacher.check_teacher`);
``--full`` adds the default teacher on the full-size dataset. Teachers are cached like any other.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import DataConfig, TrainConfig
from core.data.datasets import load_dataset
from core.data.registry import LoadedDataset, upload_spec
from core.data.task import Task, prepare_task
from core.runs.progress import StageProgress
from core.teacher import check_teacher, default_train_config, ensure_teacher
from core.train import TrainProgress

DATASETS = ("trec", "bbc-news", "rotten-tomatoes", "20newsgroups")


def _class_counts(frame: pd.DataFrame) -> pd.Series:
    """Rows per label, largest first (ties: the smaller label code first, so the majority class is stable)."""
    counts = frame["label"].value_counts()
    return counts.iloc[np.lexsort((counts.index.to_numpy(), -counts.to_numpy()))]


def feasible_rows(frame: pd.DataFrame, rows: int, majority: float) -> int:
    """The largest row count up to ``rows`` that :func:`skewed_subsample` can draw from ``frame`` (a small
    dataset's largest class may hold fewer than ``majority * rows`` rows: e.g. BBC News' 511 allow 786)."""
    counts = _class_counts(frame)
    n = min(rows, len(frame))
    while n > 0 and (round(majority * n) > counts.iloc[0] or n - round(majority * n) > counts.iloc[1:].sum()):
        n -= 1
    return n


def skewed_subsample(frame: pd.DataFrame, rows: int, majority: float, seed: int) -> pd.DataFrame:
    """A seeded sample of ``rows`` rows of ``frame`` (columns ``text``, ``label``) in which its largest class
    makes ``round(majority * rows)`` rows and the other classes share the rest as evenly as their sizes allow.
    An official ``split`` column is dropped (the sample is split afresh); rows come back shuffled."""
    counts = _class_counts(frame)
    k = len(counts)
    if k < 2:
        raise ValueError(f"skewed_subsample needs at least 2 classes, the frame has {k}")
    if not 1.0 / k < majority < 1.0:
        raise ValueError(f"majority must lie strictly between 1/{k} = {1.0 / k:.3f} (balanced) and 1, "
                         f"got {majority}")
    if not 0 < rows <= len(frame):
        raise ValueError(f"rows must be between 1 and the {len(frame)} rows available, got {rows}")
    n_major = round(majority * rows)
    if n_major > counts.iloc[0]:
        raise ValueError(f"rows {rows} is too many at majority {majority}: the largest class has only "
                         f"{counts.iloc[0]} rows, enough for at most {feasible_rows(frame, rows, majority)} rows")
    quotas = {counts.index[0]: n_major}
    left = rows - n_major
    others = counts.iloc[1:].sort_values(kind="stable")  # smallest first: what they cannot take goes on
    for i, (label, available) in enumerate(others.items()):
        quotas[label] = min(int(available), -(-left // (len(others) - i)))
        left -= quotas[label]
    if left > 0:
        raise ValueError(f"rows {rows} is too many at majority {majority}: the other classes have only "
                         f"{int(others.sum())} rows for the {rows - n_major} needed")
    parts = [frame[frame["label"] == label].sample(n=n, random_state=seed) for label, n in quotas.items() if n]
    out = pd.concat(parts).drop(columns=["split"], errors="ignore")
    return out.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _teacher_row(task: Task, recipe: str, cfg: TrainConfig) -> dict[str, Any]:
    """Train (or reuse) one teacher and score it against the majority-class baseline."""
    bar = StageProgress(f"{recipe} teacher on {task.dataset_key}", stream=sys.stderr)
    last: list[TrainProgress] = []

    def progress(p: TrainProgress) -> None:
        last[:] = [p]
        bar.update(p.fraction, f"step {p.step}/{p.total_steps}, loss {p.loss:.3f}", "teacher")

    result = ensure_teacher(task, cfg, on_progress=progress)
    bar.close()
    n_train = len(task.encoded["train"]["labels"])
    # a cached teacher reports no steps: fine_tune's count (epochs of batches, at least min_steps)
    steps = last[-1].step if last else max(math.ceil(cfg.epochs * math.ceil(n_train / cfg.batch_size)),
                                           cfg.min_steps)
    test = result.metrics["test"]
    check = check_teacher(test, task.encoded["train"]["labels"], task.encoded["test"]["labels"], task.label_names,
                          task.max_length)
    sizes = task.splits.sizes()
    return {"dataset": task.dataset_key, "recipe": recipe, "model": task.model.key, "train_rows": sizes["train"],
            "val_rows": sizes["val"], "test_rows": sizes["test"], "epochs": cfg.epochs, "min_steps": cfg.min_steps,
            "class_weights": cfg.class_weights, "steps": int(steps), "accuracy": float(test["accuracy"]),
            "macro_f1": float(test["macro_f1"]), "baseline_accuracy": check.baseline_accuracy,
            "baseline_macro_f1": check.baseline_macro_f1, "majority_class": check.majority_class,
            "guard": "weak" if check.weak else "passes", "seconds": round(result.seconds, 1),
            "cached": result.cached}


def _line(r: dict[str, Any]) -> str:
    return (f"{r['dataset']:<24} {r['recipe']:<14} {r['train_rows']:>6} {r['steps']:>6} {r['accuracy']:>7.3f} "
            f"{r['macro_f1']:>7.3f} {r['baseline_accuracy']:>7.3f} {r['baseline_macro_f1']:>7.3f} "
            f"{r['guard']:<7} {r['seconds']:>8.1f}{' (cached)' if r['cached'] else ''}")


def main(argv: list[str] | None = None) -> int:
    d = DataConfig()
    p = argparse.ArgumentParser(prog="python -m benchmarks teacher")
    p.add_argument("--model", default="e5-small")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS))
    p.add_argument("--rows", type=int, default=1000, help="rows of the skewed subsample before the train/val/test "
                   "split (default 1000: ~700 training rows); fewer where the largest class is too small")
    p.add_argument("--majority", type=float, default=0.65, help="share of the largest class (default 0.65)")
    p.add_argument("--max-length", type=int, default=d.max_length)
    p.add_argument("--seed", type=int, default=0, help="subsample and split seed (default 0)")
    p.add_argument("--full", action="store_true", help="also the default teacher on the full-size dataset")
    p.add_argument("--json", default=None, metavar="PATH", help="write the rows as JSON")
    args = p.parse_args(argv or [])
    data_cfg = DataConfig(max_length=args.max_length, seed=args.seed)
    print(f"{args.model}: {args.rows} rows per dataset, majority class {args.majority:.0%}, max length "
          f"{args.max_length}, seed {args.seed}; 1 seed")
    rows: list[dict[str, Any]] = []
    for name in args.datasets:
        loaded = load_dataset(name)
        n = feasible_rows(loaded.frame, args.rows, args.majority)
        frame = skewed_subsample(loaded.frame, n, args.majority, args.seed)
        spec = upload_spec(f"{name}:skewed", f"{name} ({n} rows, {args.majority:.0%} one class)",
                           loaded.num_classes, n, f"Seeded skewed subsample of {loaded.spec.display_name}.")
        task = prepare_task(args.model, LoadedDataset(frame, loaded.label_names, spec), data_cfg)
        s = task.splits.sizes()
        print(f"{name}: {n} rows{' (largest class too small for ' + str(args.rows) + ')' if n < args.rows else ''}"
              f" -> train {s['train']} / val {s['val']} / test {s['test']}", file=sys.stderr)
        new = default_train_config(task.model.key, task.num_labels)
        rows.append(_teacher_row(task, "old", replace(new, min_steps=0, class_weights="none")))
        rows.append(_teacher_row(task, "default", new))
        if args.full:
            full = prepare_task(args.model, name, data_cfg)
            rows.append(_teacher_row(full, "default (full)", default_train_config(full.model.key, full.num_labels)))
    print(f"{'dataset':<24} {'recipe':<14} {'train':>6} {'steps':>6} {'acc':>7} {'F1':>7} {'base acc':>7} "
          f"{'base F1':>7} {'guard':<7} {'seconds':>8}")
    print("\n".join(_line(r) for r in rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
        print(f"written {args.json}")
    return 0
