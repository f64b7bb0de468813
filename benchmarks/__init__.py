"""The project's benchmarks, outside the library: ``python -m benchmarks NAME [options]`` (``--help`` lists them).

Each benchmark is a module of this package with ``main(argv) -> int`` (its own argparse parser, ``python -m
benchmarks NAME --help``). They measure the library (:mod:`core`) and the app; the library never imports them
(``.importlinter``). Importing this package loads no benchmark: :data:`BENCHMARKS` names each one's module.
``tests/test_benchmarks.py`` runs every one of them small (the tiny model, the smallest sizes).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import NamedTuple


class Benchmark(NamedTuple):
    module: str  # the module of this package whose ``main(argv)`` runs it
    what: str  # one line: what it measures


#: name -> benchmark, in the order ``--help`` lists them
BENCHMARKS: dict[str, Benchmark] = {
    "signals": Benchmark("signals", "the twelve signals in one instrumented pass against a plain forward + backward "
                         "and against one pass per signal (time ratios)"),
    "oracle": Benchmark("oracle", "the prefix-cached oracle against the naive one (every pruned model built): time "
                        "ratio and largest score difference"),
    "latency": Benchmark("latency", "CPU latency with 0..K layers removed against the ideal encoder-only speedup"),
    "train": Benchmark("train", "one fine-tuning epoch with random against length-grouped batches: padded tokens "
                       "and time"),
    "precision": Benchmark("precision", "fp32 against bf16 mixed precision: training step, forward, oracle, "
                           "fine-tuning (--crossover: by model width)"),
    "parity": Benchmark("parity", "whether bf16 changes what is measured: teacher accuracy, oracle and signal "
                        "orders against fp32"),
    "teacher": Benchmark("teacher", "the old and the default teacher recipe on small skewed subsamples against the "
                         "majority-class baseline"),
    "long-text": Benchmark("long_text", "teacher test accuracy at length 32, auto and auto head+tail, with paired "
                           "differences and teacher times"),
    "merge": Benchmark("merge", "merging 2/4/6 feed-forward sublayers against pruning at the matched budget: "
                       "accuracy, parameters, stage times"),
    "study": Benchmark("study", "a strategy grid walked as one shared tree against each strategy alone (--ray: Ray "
                       "against the local executor)"),
    "outcomes": Benchmark("outcomes", "what keeping per-example outcomes adds to a pruning step: seconds and bytes"),
    "deploy": Benchmark("deploy", "a run's teacher and compressed model, PyTorch and ONNX Runtime, by batch and "
                        "length, beside the ideal speedup"),
    "playground": Benchmark("playground", "how fast the playground answers for a run (load, predict, a layer off, "
                            "error analysis) against its targets"),
    "first-open": Benchmark("first_open", "a newcomer's first open (fresh server and store, the pack, headless "
                            "Chromium): seconds to the first heatmap and SHAP waterfall"),
    "e5convert": Benchmark("e5convert", "a fresh conversion of the embedded e5-small against the cached check that "
                           "skips it"),
}


def entry(name: str) -> Callable[[list[str] | None], int]:
    """The ``main`` of benchmark ``name`` (its module imported now)."""
    fn: Callable[[list[str] | None], int] = importlib.import_module(f"benchmarks.{BENCHMARKS[name].module}").main
    return fn


def usage() -> str:
    width = max(map(len, BENCHMARKS))
    return "\n".join([
        "usage: python -m benchmarks NAME [options]      (python -m benchmarks NAME --help: its options)",
        "",
        "The project's benchmarks; each prints what it measured. NAME is one of:",
        "",
        *(f"  {name:<{width}}  {b.what}" for name, b in BENCHMARKS.items()),
    ])


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks NAME [options]``: runs benchmark NAME with the rest of the line; ``--help`` (or
    nothing) lists the benchmarks."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in BENCHMARKS:
        return int(entry(argv[0])(argv[1:]) or 0)
    if argv[:1] in (["-h"], ["--help"]):
        print(usage())
        return 0
    print(usage() + "\n", file=sys.stderr)
    print(f"error: no benchmark named {argv[0]!r}" if argv else "error: name a benchmark", file=sys.stderr)
    return 2
