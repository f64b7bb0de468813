"""Command line: ``python -m core <command>``. Every command has ``--json`` for machine-readable output."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.cli.args import add_budget_args, length_settings, precision_line
from core.cli.deploy import export_onnx_to, print_parity
from core.cli.merge import main as merge_main
from core.cli.playground import add_parsers as add_playground_parsers
from core.cli.reliability import main as reliability_main
from core.config import ConfigError, DataConfig
from core.data.ref import load_dataset_ref, resolve_dataset_ref
from core.data.registry import DEFAULT_DATASET, describe_datasets
from core.data.task import prepare_task
from core.jobs.execute import execute_with_bar
from core.models.registry import MODELS, offline_mode
from core.pruning.config import PruneConfig
from core.runs.export import export_model
from core.runs.progress import StageProgress
from core.runs.report import compare_table, rankings, run_intervals, with_intervals
from core.runs.store import RunStore
from core.teacher import check_task_teacher, default_train_config, ensure_teacher, teacher_lines
from core.train import DistillConfig

if TYPE_CHECKING:
    from core.train import TrainProgress


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    print(json.dumps(payload, indent=2, default=str) if getattr(args, "json", False) else text)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="e5-small", help="registry key or hub id (default: e5-small)")
    p.add_argument("--dataset", default=None, help="registry key, upload:<id>, or your own CSV/TSV/Parquet file "
                   "(default: the registry's default)")
    _add_column_args(p)
    add_budget_args(p)


def _add_column_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text-column", default=None, help="with a file as --dataset: the text column (default: guessed "
                   "as the upload page guesses it)")
    p.add_argument("--label-column", default=None, help="with a file as --dataset: the label column (default: "
                   "guessed)")


def _data_cfg(args: argparse.Namespace, dataset: str | None = None) -> DataConfig:
    """The data config of the command line; ``--max-length`` unset: auto for a file, an upload or a hub dataset,
    the embedded datasets' default otherwise (:func:`core.data.truncation.default_max_length`)."""
    return DataConfig(train_cap=args.train_cap, val_cap=args.val_cap, test_cap=args.test_cap, seed=args.seed,
                      **length_settings(args, dataset or args.dataset))


def _teacher_lines(store: RunStore, run_id: str) -> str:
    """The run's length line and its teacher beside the baselines (with the accuracy interval), from its events."""
    return "\n".join(teacher_lines(store.events(run_id)))


def _dataset(args: argparse.Namespace, value: str | None = None) -> str:
    """The dataset key of ``--dataset`` (or ``value``): a file is checked and stored like an upload
    (``upload:<id>``)."""
    return str(resolve_dataset_ref(value or args.dataset or DEFAULT_DATASET, RunStore(),
                                   getattr(args, "text_column", None), getattr(args, "label_column", None)))


def _weak_teacher_hint(store: RunStore, run_id: str) -> str:
    """The guard's message and the flag that overrides it, when ``run_id`` stopped on a weak teacher."""
    last = store.last_event(run_id)
    if last and last.stage == "weak_teacher":
        return f"\nerror: {last.message}\nTo go on anyway (the run is flagged weak_teacher), add --prune-anyway."
    return ""


def cmd_models(args: argparse.Namespace) -> int:
    rows = [{"key": s.key, "name": s.display_name, "source": s.source, "layers": s.num_layers,
             "hidden": s.hidden_size, "params_M": s.params_millions,
             "available": "yes" if s.offline else ("no (offline)" if offline_mode() else "needs network"),
             "license": s.license} for s in MODELS.values()]
    text = "\n".join(f"{r['key']:<18} {r['layers'] or '?':>3} layers  {r['params_M'] or 0:>6.1f}M  "
                     f"{r['source']:<7} {r['available']:<13} {r['name']}" for r in rows)
    _emit(args, rows, "key                layers  params  source  available     name\n" + text)
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    table = describe_datasets()
    _emit(args, table.to_dict(orient="records"), table.to_string(index=False))
    return 0


def cmd_teach(args: argparse.Namespace) -> int:
    dataset = _dataset(args)
    task = prepare_task(args.model, load_dataset_ref(dataset, RunStore()), _data_cfg(args, dataset))
    if task.length is not None and not args.json:
        print(task.length.line(), flush=True)
    base = default_train_config(task.model.key, task.num_labels)
    cfg = replace(base, **{k: v for k, v in (("epochs", args.epochs), ("lr", args.lr), ("min_steps", args.min_steps),
                                             ("class_weights", args.class_weights)) if v is not None},
                  precision=args.precision)
    if not args.json:
        print(precision_line(args.precision, task.model.key), flush=True)
    bar = StageProgress(f"teacher {task.model.key} on {task.dataset_key}", quiet=args.json)

    def progress(p: TrainProgress) -> None:
        bar.update(p.fraction, f"step {p.step}/{p.total_steps}, epoch {p.epoch:.2f}, loss {p.loss:.3f}", "teacher")

    result = ensure_teacher(task, cfg, on_progress=progress)
    bar.close()
    payload = {"path": str(result.path), "cached": result.cached, "seconds": round(result.seconds, 1),
               "metrics": result.metrics, "task": task.describe(), "train": cfg.__dict__}
    t = result.metrics["test"]
    check = check_task_teacher(task, t, result.seconds)
    payload["check"] = check.to_dict()
    _emit(args, payload, f"teacher {'(cached) ' if result.cached else ''}{result.path}\n"
                         f"test accuracy {check.accuracy_text()} (95 % Wilson) vs majority class "
                         f"{check.baseline_accuracy:.4f}  macro-F1 {t['macro_f1']:.4f}  "
                         f"trained in {result.seconds:.1f} s\n" + ("warning: " if check.weak else "")
                         + check.message(stopped=False))
    return 0


def _prune_cfg(args: argparse.Namespace, strategy: str, dataset: str) -> PruneConfig:
    return PruneConfig(model=args.model, dataset=dataset, strategy=strategy, layers_to_remove=args.layers,
                       step_epochs=args.epochs, distill=args.distill, data=_data_cfg(args, dataset),
                       kd=DistillConfig(epochs=args.kd_epochs), accuracy_floor=args.floor, seed=args.seed,
                       allow_weak_teacher=args.prune_anyway, precision=args.precision)


def _print_steps(store: RunStore, run_id: str) -> str:
    """The steps table, the test accuracy with its 95 % interval (``core.runs.noise``) and its difference to the
    teacher on the same test rows."""
    steps = store.steps(run_id)
    if steps.empty:
        return "(no steps)"
    found = run_intervals(store, run_id)
    steps = found.with_bounds(steps)
    steps["test_accuracy [95 %]"] = steps["test_ci"]
    steps["vs teacher [95 %]"] = [found.vs_teacher[k].signed() if k in found.vs_teacher else ""
                                  for k in steps["step"]]
    cols = [c for c in ("step", "n_layers", "removed", "val_accuracy", "test_accuracy [95 %]", "vs teacher [95 %]",
                        "test_macro_f1", "params_total", "latency_ms", "oracle_best", "ratio") if c in steps.columns]
    return steps[cols].to_string(index=False) + "\n" + _interval_note(found.paired)


def _interval_note(paired: bool) -> str:
    return ("95 % intervals: Wilson over the test rows; differences paired on the same rows (bootstrap), within "
            "noise when they contain 0" if paired else
            "95 % intervals: Wilson from the accuracy and the test size (this run kept no per-example outcomes: "
            "differences unpaired)")


def cmd_run(args: argparse.Namespace) -> int:
    store = RunStore()
    cfg = _prune_cfg(args, args.strategy, _dataset(args))
    if not args.json:
        print(precision_line(cfg.precision, cfg.model), flush=True)
    run_id = store.create_run(kind="prune", model=cfg.model, dataset=cfg.dataset, strategy=cfg.strategy,
                              config=cfg.to_dict())
    status = execute_with_bar(store, run_id, args.json)
    run = store.get_run(run_id)
    summary = store.read_json(run_id, "summary.json") or {}
    assert run is not None  # execute_with_bar ran it
    payload = {"run_id": run_id, "status": status, "error": run.error, "summary": summary,
               "steps": store.steps(run_id).to_dict(orient="records")}
    hint = _weak_teacher_hint(store, run_id)
    text = f"run {run_id}: {status}" + (" (stopped before pruning: weak teacher)" if hint else
                                        f" ({run.error})" if run.error else "") + "\n" + \
        "".join(line + "\n" for line in [_teacher_lines(store, run_id)] if line) + _print_steps(store, run_id)
    if summary.get("weak_teacher") or run.weak_teacher:
        text += "\nflagged weak_teacher: the teacher did not beat the majority-class baseline (--prune-anyway)"
    if summary.get("after_kd"):
        found = run_intervals(store, run_id)
        last = found.steps.get(found.final_step) if found.final_step is not None else None
        kd = found.after_kd
        after = kd.text() if kd else format(summary["after_kd"]["test_accuracy"], ".4f")
        before = last.text() if last else format(summary["before_kd"]["test_accuracy"], ".4f")
        text += (f"\nafter KD: test accuracy {after} (before {before})"
                 + "".join(f"\n  {c.sentence()}" for c in (found.kd_vs_before, found.kd_vs_teacher) if c))
    if summary.get("timings_s"):
        text += "\ntimings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in summary["timings_s"].items())
    _emit(args, payload, text)
    if hint and not args.json:
        print(hint.strip(), file=sys.stderr)
    return 0 if status == "done" else 1


def cmd_compare(args: argparse.Namespace) -> int:
    store = RunStore()
    ids = []
    for dataset in [_dataset(args, d) for d in args.datasets]:
        for strategy in args.strategies:
            cfg = _prune_cfg(args, strategy, dataset)
            rid = store.create_run(kind="prune", model=cfg.model, dataset=dataset, strategy=strategy,
                                   config=cfg.to_dict(), group_id="compare")
            execute_with_bar(store, rid, args.json)
            hint = _weak_teacher_hint(store, rid)
            if hint:
                print(hint.strip(), file=sys.stderr)
                return 1
            ids.append(rid)
    table = compare_table(store, ids)
    if not table.empty:  # runs pruned with --prune-anyway
        table["weak_teacher"] = [bool((run := store.get_run(r)) and run.weak_teacher) for r in table["run_id"]]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "compare.csv", index=False)
    table.to_json(out / "compare.json", orient="records", indent=1)

    shown = with_intervals(store, table)
    ranks = rankings(store, ids)
    _emit(args, table.to_dict(orient="records"),
          shown.drop(columns=["run_id"]).to_string(index=False, float_format=lambda v: f"{v:.4f}")
          + "".join(f"\n{r.dataset}: {r.sentence().replace('**', '')}" for r in ranks)
          + "\n" + _interval_note(True) + f"\nwritten {out / 'compare.csv'} and {out / 'compare.json'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    store = RunStore()
    path = export_model(store, args.run_id, args.dir)
    if getattr(args, "onnx", False):  # the ONNX file (parity-checked) goes into the same folder
        if not args.json:
            print(f"wrote {path}")
        record, onnx_path = export_onnx_to(store, args.run_id, path, quiet=args.json)
        return print_parity(record, onnx_path, args.json)
    _emit(args, {"path": str(path)}, f"wrote {path}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``bench`` is gone: the benchmarks are the package ``benchmarks`` beside the library (which never imports
    them), ``python -m benchmarks NAME``."""
    name = args.rest[0] if args.rest and not args.rest[0].startswith("-") else "NAME"
    print(f"error: benchmarks moved: run `python -m benchmarks {name}` (`python -m benchmarks --help` lists them)",
          file=sys.stderr)
    return 2


def cmd_merge(args: argparse.Namespace) -> int:
    return merge_main(_resolve_rest_dataset(args.rest))


def cmd_study(args: argparse.Namespace) -> int:
    from core.cli.study import main as study_main  # noqa: PLC0415 deferred: cost (shap, matplotlib: the study grid)

    return study_main(args.rest)


def _resolve_rest_dataset(rest: list[str]) -> list[str]:
    """A command line handed on as is (``merge ...``) with ``--dataset FILE [--text-column C] [--label-column C]``
    replaced by ``--dataset upload:<id>`` (the file checked and stored like an upload)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--dataset", default=None)
    _add_column_args(p)
    known, others = p.parse_known_args(rest)
    if known.dataset is None:
        if known.text_column or known.label_column:
            raise ValueError("--text-column/--label-column need --dataset FILE")
        return others
    return [*others, "--dataset", _dataset(known)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Layer pruning of BERT, headless.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list models available offline/online")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_models)

    p = sub.add_parser("datasets", help="list datasets available offline/online")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_datasets)

    p = sub.add_parser("teach", help="fine-tune (or reuse) the teacher for a model and dataset")
    _add_data_args(p)
    p.add_argument("--epochs", type=float, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--min-steps", type=int, default=None, help="at least this many optimiser steps (default: the "
                   "recipe's)")
    p.add_argument("--class-weights", choices=("none", "balanced", "sqrt"), default=None,
                   help="class-weighted loss for skewed labels (default: the recipe's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_teach)

    def add_run_args(p: argparse.ArgumentParser) -> None:
        _add_data_args(p)
        p.add_argument("--layers", type=int, default=6, help="layers to remove (default 6)")
        p.add_argument("--epochs", type=float, default=1.0, help="fine-tuning epochs after each removal")
        p.add_argument("--distill", action="store_true", help="distil the pruned model from the teacher")
        p.add_argument("--kd-epochs", type=float, default=2.0)
        p.add_argument("--floor", type=float, default=0.0, help="stop when validation accuracy falls below")
        p.add_argument("--prune-anyway", action="store_true", help="go on when the teacher does not beat the "
                       "majority-class baseline (the run is flagged weak_teacher)")
        p.add_argument("--json", action="store_true")

    p = sub.add_parser("run", help="prune one model on one dataset with one strategy")
    add_run_args(p)
    p.add_argument("--strategy", default="rf_fusion")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("compare", help="run datasets x strategies and print the paper-style table")
    add_run_args(p)
    p.add_argument("--datasets", nargs="+", required=True)
    p.add_argument("--strategies", nargs="+", required=True)
    p.add_argument("--out", default="data/compare", help="folder for compare.csv / compare.json")
    p.set_defaults(fn=cmd_compare)

    p = sub.add_parser("export", help="write a run's pruned model as a plain Hugging Face folder")
    p.add_argument("run_id")
    p.add_argument("dir")
    p.add_argument("--onnx", action="store_true",
                   help="also write model.onnx, checked against PyTorch on the run's test texts (not written if "
                        "parity fails)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_export)

    add_playground_parsers(sub)  # predict RUN_ID "text" [--layers-off 3,7], errors RUN_ID

    p = sub.add_parser("merge", help="merge feed-forward sublayers of a layer window (see `merge --help`)",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_merge)

    p = sub.add_parser("study", help="grids of pruning runs: study run | status | bank (see `study --help`)",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_study)

    p = sub.add_parser("reliability", help="the oracle reliability study: split-half and cross-seed agreement of "
                       "the step-1 oracle at several validation sizes (see `reliability --help`)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_reliability)

    p = sub.add_parser("bench", help="moved: the benchmarks are `python -m benchmarks NAME`", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_bench)
    return parser


def cmd_reliability(args: argparse.Namespace) -> int:
    return reliability_main(args.rest)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # `merge ...`, `study ...` and `reliability ...` hand the rest of the line to their own parsers as is (argparse's
    # REMAINDER would stop at the first option, e.g. `merge --model M`); `bench ...` only says where it went
    if argv[:1] == ["merge"]:
        args = argparse.Namespace(fn=cmd_merge, rest=argv[1:])
    elif argv[:1] == ["study"]:
        args = argparse.Namespace(fn=cmd_study, rest=argv[1:])
    elif argv[:1] == ["reliability"]:
        args = argparse.Namespace(fn=cmd_reliability, rest=argv[1:])
    elif argv[:1] == ["bench"]:
        args = argparse.Namespace(fn=cmd_bench, rest=argv[1:])
    else:
        args = parser.parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except (ConfigError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
