"""``python -m benchmarks deploy RUN_ID [--repeats N] [--int8]``: a finished run's teacher against its compressed
model, PyTorch against ONNX Runtime, at batch 1/8/32 x 32/128 tokens, beside the ideal encoder-only speedup.

The measurement is the library's (:func:`core.deploy.bench.run_bench`, what **Measure deploy speed** on Runs &
export runs as a job); the result is kept with the run (``deploy/bench.json``) and printed as a table (or as JSON
with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys

from core.deploy.bench import DeployBenchConfig, bench_text, run_bench
from core.runs.store import RunStore


def build_parser(prog: str = "python -m benchmarks deploy") -> argparse.ArgumentParser:
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


def _print_progress(fraction: float, message: str) -> None:
    print(f"[{100 * fraction:3.0f} %] {message}", file=sys.stderr, flush=True)


def bench_config(args: argparse.Namespace) -> DeployBenchConfig:
    """The measurement's settings from :func:`build_parser`'s flags (checked by :class:`DeployBenchConfig`)."""
    return DeployBenchConfig(batch_sizes=tuple(args.batch_sizes), seq_lengths=tuple(args.seq_lengths),
                             repeats=args.repeats, warmup=args.warmup, threads=args.threads, int8=args.int8)


def main(argv: list[str] | None = None) -> int:
    """Prints the table (or the JSON result with ``--json``) of the run in the store (``PRUNE_STORE_DIR``)."""
    args = build_parser().parse_args(argv or [])
    cfg = bench_config(args)
    result = run_bench(RunStore(), args.run_id, cfg, on_progress=None if args.json else _print_progress)
    print(json.dumps(result.to_dict(), indent=1, default=str) if args.json else bench_text(result))
    return 0
