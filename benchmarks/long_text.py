"""``python -m benchmarks long-text``: the long-text table of issue 23.

The teacher's test accuracy, with its 95 % Wilson interval, at length 32 (head), at the length chosen from the data
(auto, head) and auto with head+tail truncation, with the time each teacher took to fine-tune and evaluate; plus
paired differences (bootstrap over the same test rows) of auto vs 32 and head+tail vs head.

    .venv/bin/python -m benchmarks long-text                 # e5-small on 20 Newsgroups and Amazon food
    .venv/bin/python -m benchmarks long-text --model tiny-bert --datasets keywords --train-cap 160 \\
        --test-cap 48 --val-cap 48                             # a smoke run in seconds

Every teacher is the cached default recipe (``core.teacher.default_train_config``) on the default data budget,
seed 0, so a second run of the same setting costs nothing (its time is then the stored fine-tuning time). The
rows are printed as a Markdown table and written as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import dataclasses

import numpy as np

from core.config import DataConfig  # noqa: E402
from core.data.task import prepare_task
from core.stats import paired_accuracy_difference, verdict
from core.teacher import check_task_teacher, default_train_config, ensure_teacher
from core.train import predict_logits

#: long-text datasets that ship offline (core.data.registry): Usenet posts (median 161 words, 95th percentile of
#: e5-small tokens well over 512) and Amazon fine-food reviews (median 51 words; sentiment often at the end)
DEFAULT_DATASETS = ("20newsgroups", "amazon-food")


def settings(max_auto_length: int) -> list[tuple[str, dict]]:
    return [("32, head", {"max_length": 32}),
            ("auto, head", {"max_length": "auto", "max_auto_length": max_auto_length}),
            ("auto, head+tail", {"max_length": "auto", "max_auto_length": max_auto_length,
                                 "truncation": "head+tail"})]


def measure(model: str, dataset: str, base: DataConfig, label: str, fields: dict) -> dict:
    """One teacher: prepare the task, fine-tune (or load) it, score it on the test split with its interval."""
    start = time.perf_counter()
    task = prepare_task(model, dataset, dataclasses.replace(base, **fields))
    result = ensure_teacher(task, default_train_config(task.model.key, task.num_labels))
    check = check_task_teacher(task, result.metrics["test"], result.seconds)
    logits = predict_logits(result.load(), task.encoded["test"], precision="fp32")
    correct = (logits.argmax(dim=1) == task.encoded["test"]["labels"]).numpy()
    length = task.length
    assert length is not None  # prepare_task always chooses one
    return {"dataset": dataset, "setting": label, "length": length.length, "needed": length.needed,
            "truncated": length.truncated, "truncation": task.data_cfg.truncation,
            "accuracy": check.accuracy, "low": check.accuracy_low, "high": check.accuracy_high,
            "macro_f1": check.macro_f1, "baseline": check.baseline_accuracy, "weak": check.weak,
            "test_rows": check.test_rows, "teacher_seconds": result.seconds, "cached": result.cached,
            "wall_seconds": time.perf_counter() - start, "teacher_key": result.key,
            "_correct": dict(zip(task.splits.test["text"].tolist(), np.asarray(correct, dtype=bool).tolist()))}


def paired(a: dict, b: dict) -> str:
    """A minus B on the same test texts: the paired bootstrap interval (core.stats) and McNemar's counts."""
    texts = [t for t in a["_correct"] if t in b["_correct"]]
    diff = paired_accuracy_difference(np.array([a["_correct"][t] for t in texts]),
                                      np.array([b["_correct"][t] for t in texts]))
    return (f"{a['dataset']}: {a['setting']} minus {b['setting']}: "
            f"{verdict(diff.interval, a['setting'], b['setting'])} (McNemar: {diff.a_only} vs {diff.b_only} "
            f"discordant rows, p = {diff.mcnemar_p:.3g})")


def table(rows: list[dict]) -> str:
    lines = ["| dataset | setting | length (p95 needed) | texts cut | test accuracy [95 % Wilson] | macro-F1 | "
             "majority | guard | teacher time |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['setting']} | {r['length']} ({r['needed']}) | {r['truncated']:.0%} | "
                     f"{r['accuracy']:.3f} [{r['low']:.3f}, {r['high']:.3f}] | {r['macro_f1']:.3f} | "
                     f"{r['baseline']:.3f} | {'weak' if r['weak'] else 'passes'} | {r['teacher_seconds']:.0f} s"
                     f"{' (cached)' if r['cached'] else ''} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    d = DataConfig()
    p = argparse.ArgumentParser(prog="python -m benchmarks long-text", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="e5-small")
    p.add_argument("--datasets", nargs="+", default=list(DEFAULT_DATASETS))
    p.add_argument("--max-auto-length", type=int, default=d.max_auto_length,
                   help=f"the cost budget of auto (default {d.max_auto_length})")
    p.add_argument("--train-cap", type=int, default=d.train_cap)
    p.add_argument("--val-cap", type=int, default=d.val_cap)
    p.add_argument("--test-cap", type=int, default=d.test_cap)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="data/long_text_table.json", help="JSON of the rows (default: %(default)s)")
    args = p.parse_args(argv)
    base = DataConfig(train_cap=args.train_cap, val_cap=args.val_cap, test_cap=args.test_cap, seed=args.seed)
    rows, notes = [], []
    for dataset in args.datasets:
        done = []
        for label, fields in settings(args.max_auto_length):
            row = measure(args.model, dataset, base, label, fields)
            print(f"{dataset} · {label}: length {row['length']}, accuracy {row['accuracy']:.3f} "
                  f"[{row['low']:.3f}, {row['high']:.3f}], {row['teacher_seconds']:.0f} s", file=sys.stderr, flush=True)
            done.append(row)
        notes += [paired(done[1], done[0]), paired(done[2], done[1])]
        rows += done
    print(f"model {args.model}, seed {args.seed}, train/val/test caps {args.train_cap}/{args.val_cap}/"
          f"{args.test_cap}, auto = 95th percentile of the training texts' token counts, at most "
          f"{args.max_auto_length}\n")
    print(table(rows))
    print("\nPaired differences on the same test texts (bootstrap, 95 %):")
    for line in notes:
        print(f"- {line}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": args.model, "seed": args.seed, "caps": [args.train_cap, args.val_cap,
                                                                                args.test_cap],
                               "max_auto_length": args.max_auto_length, "paired": notes,
                               "rows": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]},
                              indent=1))
    print(f"\nwritten {out}")
    return 0

