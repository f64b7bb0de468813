"""Deployment commands: ``python -m core export RUN_ID DIR --onnx`` (the ONNX part) and
``python -m core bench deploy RUN_ID [--repeats N] [--int8]``."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from core.deploy.bench import DeployBenchConfig, bench_text, run_bench
from core.deploy.onnx_export import export_run, offered_onnx, parity_text
from core.deploy.records import ParityRecord
from core.runs.store import RunStore


def export_onnx_to(store: RunStore, run_id: str, dest: str | Path,
                   quiet: bool = False) -> tuple[ParityRecord, Path | None]:
    """Export (or reuse) the run's checked ONNX file and copy it to ``dest/model.onnx`` with its parity record
    (``dest/onnx_parity.json``). A failing export copies nothing; returns the record and the copied path."""
    record = export_run(store, run_id, on_progress=None if quiet else _print_progress)
    src = offered_onnx(store, run_id)
    if src is None:
        return record, None
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "model.onnx"
    shutil.copyfile(src, target)
    (dest / "onnx_parity.json").write_text(json.dumps(record.to_dict(), indent=1, default=str))
    return record, target


def _print_progress(fraction: float, message: str) -> None:
    print(f"[{100 * fraction:3.0f} %] {message}", file=sys.stderr, flush=True)


def build_bench_parser(prog: str = "python -m core bench deploy") -> argparse.ArgumentParser:
    d = DeployBenchConfig()
    p = argparse.ArgumentParser(prog=prog, description="Teacher vs compressed model, PyTorch vs ONNX Runtime, at "
                                "batch 1/8/32 x 32/128 tokens, beside the ideal encoder-only speedup. The result "
                                "is kept with the run (deploy/bench.json).")
    p.add_argument("run_id")
    p.add_argument("--repeats", type=int, default=d.repeats, help=f"timed interleaved rounds per shape ({d.repeats})")
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--threads", type=int, default=0, help="threads for both runtimes (0: torch's default)")
    p.add_argument("--int8", action="store_true", help="add ONNX Runtime dynamic int8 quantization (and its accuracy)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=list(d.batch_sizes))
    p.add_argument("--seq-lengths", type=int, nargs="+", default=list(d.seq_lengths))
    p.add_argument("--json", action="store_true")
    return p


def bench_main(argv: list[str] | None = None) -> int:
    """``python -m core bench deploy RUN_ID``: prints the table (or the JSON result with ``--json``)."""
    args = build_bench_parser().parse_args(argv or [])
    cfg = DeployBenchConfig(batch_sizes=tuple(args.batch_sizes), seq_lengths=tuple(args.seq_lengths),
                            repeats=args.repeats, warmup=args.warmup, threads=args.threads, int8=args.int8)
    result = run_bench(RunStore(), args.run_id, cfg, on_progress=None if args.json else _print_progress)
    print(json.dumps(result.to_dict(), indent=1, default=str) if args.json else bench_text(result))
    return 0


def print_parity(record: ParityRecord, path: Path | None, as_json: bool) -> int:
    """Print an ONNX export's outcome; returns the exit status (1 when parity failed)."""
    if as_json:
        print(json.dumps({**record.to_dict(), "path": str(path) if path else None}, indent=1, default=str))
    else:
        print(parity_text(record) + (f"\nwrote {path}" if path else ""))
    return 0 if path is not None else 1
