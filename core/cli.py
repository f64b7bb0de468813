"""Command line: ``python -m core <command>``. Every command has ``--json`` for machine-readable output."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from .config import ConfigError, DataConfig, TrainConfig


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    print(json.dumps(payload, indent=2, default=str) if getattr(args, "json", False) else text)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    d = DataConfig()
    p.add_argument("--model", default="e5-small", help="registry key or hub id (default: e5-small)")
    p.add_argument("--dataset", default=None, help="registry key (default: the registry's default)")
    p.add_argument("--train-cap", type=int, default=d.train_cap)
    p.add_argument("--val-cap", type=int, default=d.val_cap)
    p.add_argument("--test-cap", type=int, default=d.test_cap)
    p.add_argument("--max-length", type=int, default=d.max_length)
    p.add_argument("--seed", type=int, default=d.seed)


def _data_cfg(args: argparse.Namespace) -> DataConfig:
    return DataConfig(train_cap=args.train_cap, val_cap=args.val_cap, test_cap=args.test_cap,
                      max_length=args.max_length, seed=args.seed)


def _dataset(args: argparse.Namespace) -> str:
    from .datasets import DEFAULT_DATASET

    return args.dataset or DEFAULT_DATASET


def cmd_models(args: argparse.Namespace) -> int:
    from .models import MODELS, offline_mode

    rows = [{"key": s.key, "name": s.display_name, "source": s.source, "layers": s.num_layers,
             "hidden": s.hidden_size, "params_M": s.params_millions,
             "available": "yes" if s.offline else ("no (offline)" if offline_mode() else "needs network"),
             "license": s.license} for s in MODELS.values()]
    text = "\n".join(f"{r['key']:<18} {r['layers'] or '?':>3} layers  {r['params_M'] or 0:>6.1f}M  "
                     f"{r['source']:<7} {r['available']:<13} {r['name']}" for r in rows)
    _emit(args, rows, "key                layers  params  source  available     name\n" + text)
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from .datasets import describe_datasets

    table = describe_datasets()
    _emit(args, table.to_dict(orient="records"), table.to_string(index=False))
    return 0


def cmd_teach(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .task import prepare_task
    from .teacher import default_train_config, ensure_teacher

    task = prepare_task(args.model, _dataset(args), _data_cfg(args))
    base = default_train_config(task.model.key)
    cfg = TrainConfig(**{**base.__dict__, **{k: v for k, v in (("epochs", args.epochs), ("lr", args.lr))
                                              if v is not None}})
    bar = tqdm(desc=f"teacher {task.model.key} on {task.dataset_key}", unit="step", disable=args.json)

    def progress(p):
        bar.total = p.total_steps
        bar.n = p.step
        bar.set_postfix(loss=f"{p.loss:.3f}", epoch=f"{p.epoch:.2f}")
        bar.refresh()

    result = ensure_teacher(task, cfg, on_progress=progress)
    bar.close()
    payload = {"path": str(result.path), "cached": result.cached, "seconds": round(result.seconds, 1),
               "metrics": result.metrics, "task": task.describe(), "train": cfg.__dict__}
    t = result.metrics["test"]
    _emit(args, payload, f"teacher {'(cached) ' if result.cached else ''}{result.path}\n"
                         f"test accuracy {t['accuracy']:.4f}  macro-F1 {t['macro_f1']:.4f}  "
                         f"trained in {result.seconds:.1f} s")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    benches: dict[str, Callable[[list[str]], int | None]] = {}
    if args.what == "signals":
        from .signals.bench import main as fn
    elif args.what == "oracle":
        from .oracle import bench_main as fn
    else:
        from .metrics import bench_latency_main as fn
    benches[args.what] = fn
    return int(benches[args.what](args.rest) or 0)


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
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_teach)

    p = sub.add_parser("bench", help="benchmarks: signals | oracle | latency")
    p.add_argument("what", choices=["signals", "oracle", "latency"])
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except (ConfigError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
