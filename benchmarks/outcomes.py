"""``python -m benchmarks outcomes``: what keeping per-example outcomes costs a pruning step: time and bytes
(issue 21).

A step evaluates its model on test and validation and measures the oracle on validation. The logits are computed
either way; keeping outcomes adds building the per-example frames (:func:`core.train.per_example`, KL to the
teacher included) and writing them as Parquet (test, val, and every oracle candidate on val). This script times
both on one model state of a real task, ``--repeats`` times, and prints the fastest and the bytes written::

    nice -n 10 .venv/bin/python -m benchmarks outcomes                                   # tiny model, keywords
    nice -n 10 .venv/bin/python -m benchmarks outcomes --model e5-small --dataset trec   # the default budget

The untrained classifier stands in for a step's model (cost does not depend on the weights); its own logits
plus noise stand in for the teacher's.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(name, "1")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from core.config import DataConfig  # noqa: E402
from core.data.task import prepare_task  # noqa: E402
from core.metrics import measure_model  # noqa: E402
from core.models.registry import load_classifier  # noqa: E402
from core.oracle import oracle_with_logits  # noqa: E402
from core.pruning.tree import oracle_outcomes  # noqa: E402
from core.runs import artifacts  # noqa: E402
from core.runs.store import RunStore  # noqa: E402
from core.train import per_example, predict_logits  # noqa: E402

T = TypeVar("T")


def fastest(fn: Callable[[], T], repeats: int) -> tuple[float, T]:
    """The shortest of ``repeats`` (at least one) timed calls (the least disturbed by other work on a shared
    machine) and the last result."""
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks outcomes", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny-bert")
    p.add_argument("--dataset", default="keywords")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    args = p.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    task = prepare_task(args.model, args.dataset, DataConfig())
    model = load_classifier(task.model, task.num_labels, seed=0).eval()
    val, test = task.encoded["val"], task.encoded["test"]
    gen = torch.Generator().manual_seed(0)
    prec: Literal["fp32", "bf16"] = "bf16" if args.precision == "bf16" else "fp32"
    # what a step computes anyway: the scores of test and val (latency left out) and the oracle on val
    t_eval, _ = fastest(lambda: measure_model(model, test, val=val, latency=None, precision=prec), args.repeats)
    t_oracle, (table, _, removed) = fastest(lambda: oracle_with_logits(model, val, precision=prec), args.repeats)
    logits = {"val": predict_logits(model, val, precision=prec), "test": predict_logits(model, test, precision=prec)}
    teacher = {k: v + 0.5 * torch.randn(v.shape, generator=gen) for k, v in logits.items()}

    # what keeping outcomes adds: the per-example frames (KL included) and their Parquet files
    def frames() -> dict[str, pd.DataFrame]:
        return {artifacts.TEST_OUTCOMES: per_example(logits["test"], test["labels"], teacher["test"]),
                artifacts.VAL_OUTCOMES: per_example(logits["val"], val["labels"], teacher["val"]),
                artifacts.ORACLE_OUTCOMES: oracle_outcomes(table, removed, val, teacher["val"])}

    t_frames, tables = fastest(frames, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "store")
        t_write, sizes = fastest(lambda: {name: store.write_outcomes("bench", 1, name, f).stat().st_size
                                          for name, f in tables.items()}, args.repeats)
    extra = t_frames + t_write
    print(f"{args.model} on {args.dataset}: val {len(task.splits.val)} rows, test {len(task.splits.test)} rows, "
          f"{len(removed)} oracle candidates, precision {prec}, fastest of {args.repeats}")
    print(f"  a step computes anyway: scores of test+val {t_eval:.3f} s, oracle on val {t_oracle:.3f} s")
    print(f"  outcomes add:           frames {t_frames:.4f} s, Parquet writes {t_write:.4f} s: {extra:.4f} s "
          f"({extra / (t_eval + t_oracle):.1%} of evaluation + oracle; a step also fine-tunes)")
    print("  bytes per step:         " + ", ".join(f"{k} {v:,}" for k, v in sizes.items())
          + f"; total {sum(sizes.values()):,}")
    return 0

