"""``python -m benchmarks merge``: merge 2/4/6 FFNs against pruning at the matched budget on datasets; prints
accuracy and parameters of both methods and the time of each stage (no run store)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch

from core.config import DataConfig
from core.merging.config import SELECTIONS, MergeConfig
from core.merging.loop import merge_events
from core.train import DistillConfig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks merge")
    p.add_argument("--model", default="e5-small")
    p.add_argument("--datasets", nargs="+", default=["trec", "bbc-news"])
    p.add_argument("--sizes", nargs="+", type=int, default=[2, 4, 6])
    p.add_argument("--selection", choices=SELECTIONS, default="accuracy")
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--kd-epochs", type=float, default=2.0)
    p.add_argument("--train-cap", type=int, default=1000)
    p.add_argument("--val-cap", type=int, default=300)
    p.add_argument("--test-cap", type=int, default=500)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="CSV file for the result rows")
    args = p.parse_args(argv or [])
    torch.set_num_threads(args.threads)
    data = DataConfig(train_cap=args.train_cap, val_cap=args.val_cap, test_cap=args.test_cap)
    rows, timings = [], []
    for dataset in args.datasets:
        for size in args.sizes:
            cfg = MergeConfig(model=args.model, dataset=dataset, auto_k=size, selection=args.selection,
                              epochs=args.epochs, kd=DistillConfig(epochs=args.kd_epochs), data=data)
            summary = None
            for ev in merge_events(cfg, device=torch.device("cpu")):
                if ev.stage == "done":
                    summary = ev.payload
            assert summary is not None
            rows.extend(_bench_rows(dataset, size, summary))
            timings.append({"dataset": dataset, "k": size, **summary["timings_s"]})
            print(pd.DataFrame(rows).tail(2).to_string(index=False, header=len(rows) == 2), flush=True)
    table = pd.DataFrame(rows)
    print("\n" + table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\nstage timings (s)\n" + pd.DataFrame(timings).fillna(0).to_string(index=False))
    if args.out:
        table.to_csv(args.out, index=False)
    return 0


def _bench_rows(dataset: str, size: int, summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    base = summary["teacher"]
    out = []
    for method, scores, what in (("merge", summary["merged"], summary["window_label"]),
                                 ("prune", summary.get("pruning") or {}, None)):
        if not scores:
            continue
        if what is None:
            what = f"{scores['depth']} layers {scores['removed_layers']}"
        last = scores.get("distilled") or scores["finetuned"]
        out.append({"dataset": dataset, "k": size, "method": method, "what": what,
                    "params_removed": base["params_total"] - last["params_total"],
                    "removed_%": 100 * (1 - last["params_total"] / base["params_total"]),
                    "teacher_acc": base["test_accuracy"], "no_tune_acc": scores["no_tuning"]["test_accuracy"],
                    "ft_acc": scores["finetuned"]["test_accuracy"],
                    "kd_acc": scores["distilled"]["test_accuracy"] if "distilled" in scores else float("nan")})
    return out
