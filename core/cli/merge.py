"""``python -m core merge``: one feed-forward merging run (:mod:`core.merging.loop`) recorded in the run store,
with a progress bar, and its printed report."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

import pandas as pd

from core.cli.args import add_budget_args, length_settings
from core.config import ConfigError, DataConfig
from core.data.registry import DEFAULT_DATASET
from core.jobs.execute import execute_with_bar
from core.merging.config import DEFAULT_WINDOW_SIZE, REFERENCES, SELECTIONS, MergeConfig
from core.runs.store import RunStore
from core.train import DistillConfig


def build_parser(prog: str = "python -m core merge") -> argparse.ArgumentParser:
    m = MergeConfig()
    p = argparse.ArgumentParser(prog=prog, description="Merge the FFN sublayers of a window of consecutive "
                                "layers (arXiv 2501.06126), fine-tune/distil, and compare with layer pruning "
                                "at the same parameter budget.")
    p.add_argument("--model", default=m.model, help=f"registry key or hub id (default: {m.model})")
    p.add_argument("--dataset", default=None, help="dataset key, upload:<id> or a CSV/TSV/Parquet file with "
                   "--text-column/--label-column (default: the registry's default)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--layers", default=None, help="window of layer positions, e.g. 4-9 (inclusive)")
    where.add_argument("--auto", type=int, default=None, metavar="K",
                       help=f"choose a window of K consecutive layers (default: K={DEFAULT_WINDOW_SIZE})")
    p.add_argument("--selection", choices=SELECTIONS, default=m.selection,
                   help="how --auto scores windows (default: accuracy after merging, no tuning)")
    p.add_argument("--reference", choices=REFERENCES, default=m.reference)
    p.add_argument("--epochs", type=float, default=m.epochs, help="fine-tuning epochs after merging")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--distill", action=argparse.BooleanOptionalAction, default=m.distill)
    p.add_argument("--kd-epochs", type=float, default=m.kd.epochs)
    p.add_argument("--compare-pruning", action=argparse.BooleanOptionalAction, default=m.compare_pruning)
    p.add_argument("--calibration", type=int, default=m.calibration_size, help="calibration rows")
    add_budget_args(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--prune-anyway", action="store_true", help="go on when the teacher does not beat the "
                   "majority-class baseline (the run is flagged weak_teacher)")
    return p


def config_from_args(args: argparse.Namespace) -> MergeConfig:
    if args.dataset is None:
        args.dataset = DEFAULT_DATASET
    data = DataConfig(train_cap=args.train_cap, val_cap=args.val_cap, test_cap=args.test_cap, seed=args.seed,
                      **length_settings(args, args.dataset))
    return MergeConfig(model=args.model, dataset=args.dataset, window=args.layers, auto_k=args.auto,
                       selection=args.selection, reference=args.reference, epochs=args.epochs, lr=args.lr,
                       distill=args.distill, kd=DistillConfig(epochs=args.kd_epochs), data=data,
                       calibration_size=args.calibration, compare_pruning=args.compare_pruning, seed=args.seed,
                       allow_weak_teacher=getattr(args, "prune_anyway", False),
                       precision=getattr(args, "precision", "auto"))


def summary_text(summary: Mapping[str, Any], comparison: pd.DataFrame | None) -> str:
    """The printed report of a finished run: window, parameters, the prune-vs-merge table, timings."""
    p = summary["params"]
    lines = [f"window {summary['window_label']} ({summary['selection']}); parameters {p['before']:,} -> "
             f"{p['after']:,} ({p['removed']:,} removed, {100 * p['removed_fraction']:.1f} %); unique FFNs "
             f"{p['unique_ffns_before']} -> {p['unique_ffns_after']}"]
    if summary.get("pruning"):
        pr = summary["pruning"]
        lines.append(f"matched pruning: {pr['depth']} layer(s) {pr['removed_layers']} by {pr['strategy']}")
    if comparison is not None and not comparison.empty:
        lines.append(comparison.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    lines.append("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in summary["timings_s"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m core merge``: one merging run recorded in the run store, with a progress bar."""
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store = RunStore()
    run_id = store.create_run(kind="merge", model=cfg.model, dataset=cfg.dataset,
                              strategy=cfg.strategy,
                              config=cfg.to_dict())
    status = execute_with_bar(store, run_id, quiet=args.json)
    run = store.get_run(run_id)
    error = run.error if run is not None else None
    summary = store.read_json(run_id, "summary.json") or {}
    comparison = store.read_table(run_id, "steps/1/comparison.csv")
    if args.json:
        print(json.dumps({"run_id": run_id, "status": status, "error": error, "summary": summary},
                         indent=2, default=str))
    else:
        print(f"run {run_id}: {status}" + (f" ({error})" if error else ""))
        if summary:
            print(summary_text(summary, comparison))
    if (last := store.last_event(run_id)) is not None and last.stage == "weak_teacher":
        print("To go on anyway (the run is flagged weak_teacher), add --prune-anyway.", file=sys.stderr)
    return 0 if status == "done" else 1
