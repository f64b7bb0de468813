"""``python -m core study run | status | bank | paper``: grids of pruning runs from the command line.

``study run`` takes a TOML/JSON file (``--config``) or flags, starts a study (or resumes one with ``--resume ID``;
a new study whose cells are already finished in the store skips them anyway) and runs the missing cells locally
or on Ray (``--ray``; ``--address`` or ``RAY_ADDRESS`` attaches to a cluster). ``study status`` lists studies or
one study's cells. ``study bank`` rebuilds the shipped profile bank from a run store. ``study paper`` remakes the
paper check (:mod:`core.cli.paper`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from core.cli import paper as paper_cmd
from core.config import ConfigError, DataConfig
from core.data.ref import resolve_dataset_ref
from core.fusion.bank import MANIFEST_FILE, bank_dir, bank_or_none, load_bank, load_outcomes, training_profiles
from core.fusion.bank_build import bank_rows_from_store, merge_outcomes, merge_rows, outcomes_from_store, write_bank
from core.jobs.studies import refresh_study as refresh
from core.paths import PROJECT_ROOT
from core.pruning.config import strategy_keys
from core.runs.report import run_intervals
from core.runs.store import RunStore
from core.studies import execute, records
from core.studies.config import StudyConfig
from core.studies.records import cell_table, get_study, list_studies


def _subset(cfg: Any, only: list[str] | None, seeds: list[int] | None, strategies: list[str] | None = None) -> Any:
    """A study file narrowed to some of its datasets, seeds and strategies (``--only``, ``--seeds``,
    ``--strategies``): a grid measured a piece at a time across sessions, each piece's cells the same cells as the
    whole grid's (a cell's id does not hold the study's name), so the whole grid later skips them. A dataset, seed
    or strategy the file does not hold is refused."""
    for flag, kind, asked, held in (("--only", "datasets", only, cfg.datasets), ("--seeds", "seeds", seeds, cfg.seeds),
                                    ("--strategies", "strategies", strategies, cfg.strategies)):
        unknown = [str(a) for a in asked or () if a not in held]
        if unknown:
            raise ValueError(f"{flag}: {', '.join(unknown)} not among the study file's {kind} "
                             f"({', '.join(map(str, held))})")
    if not only and not seeds and not strategies:
        return cfg
    parts = [*(only or ()), *(f"seed {s}" for s in seeds or ()), *(strategies or ())]
    return replace(cfg, datasets=tuple(d for d in cfg.datasets if not only or d in only),
                   seeds=tuple(s for s in cfg.seeds if not seeds or s in seeds),
                   strategies=tuple(s for s in cfg.strategies if not strategies or s in strategies),
                   name=f"{cfg.name} [{', '.join(parts)}]")


def _study_from_args(args: argparse.Namespace) -> Any:
    if args.config:
        return _subset(StudyConfig.load(args.config), args.only, args.seeds,
                       args.strategies if args.strategies else None)

    store = RunStore()
    datasets = tuple(str(resolve_dataset_ref(d, store, args.text_column, args.label_column)) for d in args.datasets)
    d = DataConfig()
    return StudyConfig(name=args.name, models=tuple(args.models), datasets=datasets,
                       strategies=tuple(args.strategies or strategy_keys()), seeds=tuple(args.seeds or [0]),
                       layers_to_remove=args.layers, step_epochs=args.epochs, distill=not args.no_distill,
                       kd_epochs=args.kd_epochs, calibration_size=args.calibration,
                       data=DataConfig(train_cap=args.train_cap or d.train_cap, val_cap=args.val_cap or d.val_cap,
                                       test_cap=args.test_cap or d.test_cap,
                                       max_length=args.max_length or d.max_length))


class _Bars:
    """A bar over cells and one over the current group's steps (tqdm; plain lines when not a terminal)."""

    def __init__(self, total_cells: int, done_cells: int, quiet: bool) -> None:
        tty = sys.stderr.isatty()
        self.quiet = quiet
        self.cells = tqdm(total=total_cells, initial=done_cells, desc="cells", unit="cell", disable=quiet,
                          position=0, mininterval=0.5 if tty else 30.0, miniters=1)
        self.step = tqdm(total=1000, desc="group", disable=quiet or not tty, position=1, leave=False,
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
        self.tty = tty
        self._last_line = ""

    def group(self, i: int, n: int, cells: list[Any]) -> None:
        c = cells[0].cfg
        text = f"group {i + 1}/{n}: {c.model} · {c.dataset} · seed {c.seed} · {len(cells)} strategies"
        if self.tty:
            self.step.set_description_str(text)
        elif not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def event(self, run_id: str, ev: Any) -> None:
        if ev.stage == "done":
            self.cells.update(1)
        if ev.progress is not None and self.tty:
            self.step.n = int(1000 * min(max(ev.progress, 0.0), 1.0))
            self.step.set_postfix_str(ev.message[:60])
        elif not self.tty and not self.quiet and ev.stage in ("signals", "distill") and ev.message != self._last_line:
            self._last_line = ev.message
            print(f"  {ev.message}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.step.close()
        self.cells.close()


def cmd_run(args: argparse.Namespace) -> int:
    store = RunStore()
    if args.resume:
        study = records.get_study(store, args.resume)
    else:
        profiles = None
        if args.bank_only or args.bank_folder:  # one snapshot in every session and piece of a grid
            profiles = training_profiles(None, bank_folder=args.bank_folder)
            if profiles.empty:
                _, why = bank_or_none(args.bank_folder)
                print(f"error: no usable profile bank in {args.bank_folder or 'data/bank'} ({why}): fusion cells "
                      "would have nothing to train on; pass a folder holding manifest.json and profiles.parquet",
                      file=sys.stderr)
                return 2
        study = execute.start_study(store, _study_from_args(args), profiles)
    cells = study.cells()
    done = len(records.done_cells(store, [c.cell_id for c in cells]))
    if not args.json:
        print(f"study {study.id} ({study.name}): {len(cells)} cells, {done} already finished; profile snapshot "
              f"{study.snapshot}", file=sys.stderr)
    if args.ray:
        def on_group(k: int, n: int, status: dict[str, str]) -> None:
            if not args.json:
                print(f"group {k}/{n} recorded: " + ", ".join(f"{v}" for v in status.values()), file=sys.stderr)

        init = {"include_dashboard": False} if not (args.address or os.environ.get("RAY_ADDRESS")) else {}
        options = execute.RayOptions(address=args.address, cpus_per_task=args.cpus_per_task,
                                     keep_models=args.keep_models, init_kwargs=init)
        study = execute.run_ray(store, study.id, options, on_group_done=on_group, resume=bool(args.resume))
    else:
        bars = _Bars(len(cells), done, args.json)
        try:
            study = execute.run_local(store, study.id, keep_models=args.keep_models, on_event=bars.event,
                                      on_group=bars.group, resume=bool(args.resume))
        finally:
            bars.close()
    return _print_status(store, study, args.json)


def _print_status(store: Any, study: Any, as_json: bool) -> int:
    table = cell_table(store, study)
    if as_json:
        print(json.dumps({"study": study.id, "name": study.name, "status": study.status, "error": study.error,
                          "cells": table.to_dict(orient="records")}, indent=1, default=str))
    else:
        counts = table["status"].value_counts().to_dict()
        print(f"study {study.id} ({study.name}): {study.status}; " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        if study.error:
            print(f"  {study.error}")
        print(_with_results(store, table).drop(columns=["cell_id", "message"]).to_string(index=False))
        if (table["status"] == "done").any():
            print("final: after distillation when it ran; 95 % intervals (Wilson over the test rows; the difference to "
                  "the teacher paired on the same rows, 'within noise' when it contains 0; 'unpaired' for runs "
                  "without per-example outcomes)")
    return 0 if study.status in ("done", "running", "queued") else 1


def _with_results(store: Any, table: Any) -> Any:
    """The cell table with each finished cell's final test accuracy and its difference to the teacher, with
    their 95 % intervals (``core.runs.report.run_intervals``)."""
    acc, vs = [], []
    for status, run_id in zip(table["status"], table["run_id"]):
        found = run_intervals(store, run_id) if status == "done" and run_id else None
        final = found.final if found is not None else None
        acc.append(final.text() if final is not None else "")
        c = found.final_vs_teacher if found is not None else None
        vs.append(c.signed() if c is not None else "")
    return table.assign(**{"final acc [95 %]": acc, "final - teacher [95 %]": vs})


def cmd_status(args: argparse.Namespace) -> int:
    store = RunStore()
    if args.study:
        return _print_status(store, refresh(store, get_study(store, args.study)), args.json)
    studies = [refresh(store, s) for s in list_studies(store)]
    rows = [{"id": s.id, "name": s.name, "status": s.status, "cells": s.config.n_cells, "executor": s.executor}
            for s in studies]
    if args.json:
        print(json.dumps(rows, indent=1))
    elif not rows:
        print("no studies in this store")
    else:
        for r in rows:
            print(f"{r['id']}  {r['status']:<11} {r['cells']:>5} cells  {r['executor'] or '':<10} {r['name']}")
    return 0


def cmd_bank(args: argparse.Namespace) -> int:
    version = args.code_version
    if version is None:
        try:
            version = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                                     text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            version = "unknown"
    store = RunStore(args.store) if args.store else RunStore()
    rows = bank_rows_from_store(store, model=args.model, code_version=version)
    if rows.empty:
        print(f"error: no finished oracle-path prune runs with profiles in {store.root}", file=sys.stderr)
        return 2
    outcomes = outcomes_from_store(store, rows)  # the oracle's per-example outcomes, where the runs stored them
    if args.add and not (Path(args.out) if args.out else bank_dir()).joinpath(MANIFEST_FILE).exists():
        print(f"no bank in {args.out or 'data/bank'} yet: --add starts one")  # the first path of a regrow
    elif args.add:
        old = load_bank(args.out)  # refuses a damaged bank rather than growing it
        rows = merge_rows(old.rows, rows)
        outcomes = merge_outcomes(load_outcomes(args.out, old), outcomes, rows)
    precisions = sorted({str((store.read_json(rid, "summary.json") or {}).get("precision", "fp32"))
                         for rid in rows["run_id"].unique() if store.get_run(str(rid)) is not None})
    manifest = write_bank(rows, args.out, study_file=args.study_file, note=args.note, outcomes=outcomes,
                          precision="/".join(precisions) or None)
    if args.json:
        print(json.dumps(manifest, indent=1))
    else:
        print(f"wrote {manifest['rows']} rows ({len(manifest['coverage'])} model-dataset pairs) to "
              f"{args.out or 'data/bank'}")
        for c in manifest["coverage"]:
            print(f"  {c['model']:<10} {c['dataset']:<16} seeds {c['seeds']}  steps {c['steps']:>3}  "
                  f"rows {c['rows']:>4}")
        o = manifest.get("outcomes")
        print(f"per-example oracle outcomes: {o['layer_steps']} of {manifest['rows']} layer-steps, {o['rows']:,} rows, "
              f"{o['bytes'] / 1e6:.2f} MB ({o['bytes_per_layer_step'] / 1e3:.1f} kB per layer-step)" if o else
              "per-example oracle outcomes: none (the runs predate them); the paper check scores on the same rows")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core study", description="Grids of pruning runs (studies).")
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run", help="start (or resume) a study and run its missing cells")
    r.add_argument("--config", help="a TOML or JSON study file (see data/studies/*.toml)")
    r.add_argument("--resume", metavar="STUDY_ID", help="continue an existing study")
    r.add_argument("--only", nargs="+", metavar="DATASET", default=None,
                   help="with --config: run only these of its datasets (the others measured in another store)")
    r.add_argument("--name", default="study")
    r.add_argument("--models", nargs="+", default=["e5-small"])
    r.add_argument("--datasets", nargs="+", default=["trec"], help="registry keys, hub:NAME, upload:ID or files")
    r.add_argument("--text-column", default=None)
    r.add_argument("--label-column", default=None)
    r.add_argument("--strategies", nargs="+", default=None,
                   help="default: all 18 (with --config: narrows the study file's strategies)")
    r.add_argument("--seeds", nargs="+", type=int, default=None,
                   help="default 0; with --config: run only these of its seeds")
    r.add_argument("--layers", type=int, default=6)
    r.add_argument("--epochs", type=float, default=1.0)
    r.add_argument("--no-distill", action="store_true")
    r.add_argument("--kd-epochs", type=float, default=2.0)
    r.add_argument("--calibration", type=int, default=256)
    r.add_argument("--train-cap", type=int, default=None)
    r.add_argument("--val-cap", type=int, default=None)
    r.add_argument("--test-cap", type=int, default=None)
    r.add_argument("--max-length", type=int, default=None)
    r.add_argument("--bank-only", action="store_true",
                   help="fusion cells train on the shipped profile bank only (default: the bank plus this store's "
                   "profiles); a grid measured in pieces then keeps one snapshot, so its fusion cells are not redone")
    r.add_argument("--bank-folder", default=None,
                   help="fusion cells train on this bank folder only (implies --bank-only): a study that must keep "
                   "its snapshot while data/bank grows pins a frozen copy (data/studies/full-path-bank)")
    r.add_argument("--keep-models", action="store_true", help="save every cell's pruned model (large)")
    r.add_argument("--ray", action="store_true", help="run each group as a Ray task")
    r.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    r.add_argument("--cpus-per-task", type=int, default=None)
    r.add_argument("--json", action="store_true")
    r.set_defaults(fn=cmd_run)
    s = sub.add_parser("status", help="list studies, or one study's cells")
    s.add_argument("study", nargs="?")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_status)
    b = sub.add_parser("bank", help="rebuild the profile bank (data/bank) from a run store's oracle-path runs")
    b.add_argument("--store", default=None, help="run store folder (default: PRUNE_STORE_DIR or data/runs)")
    b.add_argument("--out", default=None, help="bank folder (default: data/bank)")
    b.add_argument("--model", default=None)
    b.add_argument("--study-file", default=None, help="the study file that produced the runs (recorded)")
    b.add_argument("--code-version", default=None)
    b.add_argument("--note", default="")
    b.add_argument("--add", action="store_true", help="grow the existing bank: keep its paths that this store has "
                   "not re-run (a bank built over several sessions or machines)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(fn=cmd_bank)
    q = sub.add_parser("paper", help="recompute the paper check (data/reference) from the bank and study runs")
    q.add_argument("--bank", default=None, help="bank folder (default: data/bank)")
    q.add_argument("--store", default=None, help="a run store whose study runs fill the full-path table")
    q.add_argument("--out", default=None, help="output folder (default: data/reference)")
    q.add_argument("--fresh-full-path", action="store_true", help="full-path table from --store only (default: the "
                   "shipped table grown by the store's runs, so rows measured elsewhere are kept)")
    q.add_argument("--pack", default=None, help="recorded pack whose runs of --study-file join the full-path table "
                   "when the table lacks them (default: PRUNE_PACK_DIR or data/pack; 'off': none)")
    q.add_argument("--study-file", default=None,
                   help="the full-path study whose runs the pack may hold (default: data/studies/full-path.toml)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(fn=paper_cmd.cmd_paper)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except (ConfigError, ValueError, KeyError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
