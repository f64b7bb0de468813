"""``python -m core reliability``: the oracle reliability study (:mod:`core.studies.reliability`).

For each dataset and seed: the teacher (cached), then the step-1 oracle's per-example outcomes on up to
``--val-rows`` validation rows (one bf16/fp32 pass as ``--precision`` says), cached under ``--store`` (outside the
repository) so a killed study resumes where it stopped. Then the split-half and cross-seed tables at each
``--sizes`` value, printed and written to ``--out`` (CSV). The validation fraction is raised per dataset so that
``--val-rows`` rows exist (our choice for this study; the training split keeps its 2,000-row cap).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from core.config import DataConfig
from core.data.datasets import load_dataset
from core.data.task import prepare_task
from core.oracle import oracle_with_logits
from core.paths import cache_dir
from core.precision import resolve
from core.studies.reliability import Outcomes, across_seeds, outcomes_from_logits, split_half, summarise
from core.teacher import default_train_config, ensure_teacher


def _val_fraction(total_rows: int, want: int, test_fraction: float) -> float:
    """Enough validation rows for ``want`` (with 5 % to spare for de-duplicated texts), between 0.15 and 0.45."""
    return float(min(0.45, max(0.15, 1.05 * want / max(total_rows, 1))))


def measure(dataset: str, seed: int, args: argparse.Namespace, store: Path) -> tuple[pd.DataFrame, dict]:
    """The step-1 outcomes of ``dataset`` at ``seed`` (from the store when already measured)."""
    path = store / f"{args.model}_{dataset}_seed{seed}_{args.val_rows}.parquet"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        return pd.read_parquet(path), json.loads(meta_path.read_text())
    loaded = load_dataset(dataset)
    d = DataConfig()
    data = replace(d, seed=seed, val_cap=args.val_rows,
                   val_fraction=_val_fraction(len(loaded.frame), args.val_rows, d.test_fraction))
    start = time.perf_counter()
    task = prepare_task(args.model, loaded, data)
    train_cfg = replace(default_train_config(task.model.key, task.num_labels), precision=args.precision)
    print(f"[{dataset} seed {seed}] {task.splits.sizes()} rows; teacher ...", flush=True)
    teacher = ensure_teacher(task, train_cfg)
    model = teacher.load().eval()
    teacher_s = time.perf_counter() - start
    val = task.encoded["val"]
    precision = resolve(args.precision, None, task.model.hidden_size)
    start = time.perf_counter()
    table, full, removed = oracle_with_logits(model, val, precision=precision)
    oracle_s = time.perf_counter() - start
    outcomes = outcomes_from_logits(full, removed, val["labels"], table["original_layer"])
    frame = outcomes.to_frame()
    meta = {"dataset": dataset, "seed": seed, "model": args.model, "val_rows": outcomes.n,
            "val_fraction": data.val_fraction, "teacher_val_accuracy": teacher.metrics["val"]["accuracy"],
            "teacher_cached": teacher.cached, "teacher_seconds": round(teacher_s, 1),
            "oracle_seconds": round(oracle_s, 1), "precision": precision, "fingerprint": task.fingerprint}
    store.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path.with_suffix(".tmp"), index=False)
    path.with_suffix(".tmp").replace(path)
    meta_path.write_text(json.dumps(meta, indent=2))
    print(f"[{dataset} seed {seed}] teacher val accuracy {meta['teacher_val_accuracy']:.3f} "
          f"({teacher_s:.0f} s); oracle on {outcomes.n} rows in {oracle_s:.0f} s ({precision})", flush=True)
    return frame, meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core reliability", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="e5-small")
    p.add_argument("--datasets", nargs="+", default=["trec", "rotten-tomatoes", "tweets"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--sizes", nargs="+", type=int, default=[250, 500, 1000, 2000])
    p.add_argument("--val-rows", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=200, help="random draws per size (default 200)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    p.add_argument("--store", default=str(cache_dir() / "reliability"), help="where outcomes are cached")
    p.add_argument("--out", default="data/reference/oracle_reliability.csv")
    args = p.parse_args(argv)
    store = Path(args.store)
    rows = []
    metas = []
    for dataset in args.datasets:
        outcomes = {}
        for seed in args.seeds:
            frame, meta = measure(dataset, seed, args, store)
            outcomes[seed] = Outcomes.from_frame(frame)
            metas.append(meta)
        for n in args.sizes:
            avail = min(o.n for o in outcomes.values())
            if n > avail:
                print(f"[{dataset}] {n} rows asked for, {avail} measured: size skipped")
                continue
            split = pd.concat([split_half(o, n, args.repeats, seed=s) for s, o in outcomes.items()])
            seeds = across_seeds(outcomes[args.seeds[0]], outcomes[args.seeds[1]], n, args.repeats) \
                if len(args.seeds) > 1 else None
            summary = summarise(split, seeds)
            per_row_s = sum(m["oracle_seconds"] / m["val_rows"] for m in metas if m["dataset"] == dataset) / \
                len(args.seeds)
            summary.insert(0, "val_rows", n)
            summary.insert(0, "dataset", dataset)
            summary["oracle_seconds"] = round(per_row_s * n, 1)
            rows.append(summary)
    table = pd.concat(rows, ignore_index=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False, float_format="%.4f")
    Path(out.with_suffix(".json")).write_text(json.dumps({"runs": metas, "repeats": args.repeats,
                                                          "seeds": args.seeds}, indent=2))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(3).to_string(index=False))
        mean = table.groupby(["val_rows", "score"], sort=False).mean(numeric_only=True).round(3)
        print("\nmean over datasets\n" + mean.to_string())
    return 0
