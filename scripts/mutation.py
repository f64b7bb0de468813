"""Mutation testing of the science modules with mutmut: how many small planted bugs do the tests catch?

Run on demand, never in CI (it is slow on 2 cores). For each chosen module the script makes a throwaway
copy of the tree (``core/``, ``tests/``, ``pytest.ini``) in a temporary folder, writes a ``setup.cfg``
telling mutmut to mutate that one file and to run only the few test files mapped to it, and runs
``python -m mutmut run`` there under ``nice`` with one thread per process (``OMP_NUM_THREADS=1``). The working
tree is never modified. mutmut forks each mutant from a warmed-up pytest process and runs only the tests
that reached the mutated function, so a module costs (mutants x the covering tests' time).

It prints, per module, the count of each mutmut status, the kill rate ``(killed + timeout) / (mutants
checked)`` (survivors and mutants no test reaches count against it), the surviving mutants' names and, with
``--diff``, each survivor's diff. A last table sums up all modules.

Usage (from the repository root; install the dev requirements first: ``pip install -r requirements-dev.txt``)::

    .venv/bin/python scripts/mutation.py --list                 # the modules and their test files
    .venv/bin/python scripts/mutation.py surgery                # one module (a few minutes)
    .venv/bin/python scripts/mutation.py signals.stats --diff   # one module, with the survivors' diffs
    .venv/bin/python scripts/mutation.py all                    # every module: hours on 2 cores
    options: --nice 19 (default 19), --children 1 (parallel mutants, default 1), --work DIR (keep the
             copies there; default a temporary folder, deleted), --timeout-multiplier 15 (mutmut's)

Mutmut mutates functions and methods (not module-level constants). A surviving mutant is either a missing
test or an equivalent mutant (one that cannot change behaviour): read its diff before writing a test.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: module key -> (the file(s) to mutate: a path or a glob pattern, the test files that cover it)
MODULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "signals.stats": ("core/signals/stats.py", ("tests/test_signals_batching.py", "tests/test_signals.py")),
    "signals.functions": ("core/signals/functions.py", ("tests/test_signals.py", "tests/test_signals_batching.py")),
    "signals.compute": ("core/signals/compute.py", ("tests/test_signals.py", "tests/test_signals_batching.py",
                                                    "tests/test_contrast.py")),
    "fusion": ("core/fusion/*.py", ("tests/test_fusion.py", "tests/test_contrast.py")),
    "oracle": ("core/oracle.py", ("tests/test_oracle.py", "tests/test_oracle_split.py", "tests/test_contrast.py")),
    "forward": ("core/models/forward.py", ("tests/test_oracle.py",)),
    "surgery": ("core/models/surgery.py", ("tests/test_surgery.py",)),
    "pruning.tree": ("core/pruning/tree.py", ("tests/test_oracle_split.py", "tests/test_runs.py",
                                              "tests/test_contrast.py")),
    "pruning.loop": ("core/pruning/loop.py", ("tests/test_oracle_split.py", "tests/test_runs.py")),
    "pruning.strategies": ("core/pruning/strategies.py", ("tests/test_runs.py", "tests/test_fusion.py",
                                                          "tests/test_contrast.py")),
    "merging.ffn": ("core/merging/ffn.py", ("tests/test_merge_reference.py", "tests/test_merge.py")),
    "merging.windows": ("core/merging/windows.py", ("tests/test_merge.py",)),
    "store": ("core/runs/store.py", ("tests/test_store.py", "tests/test_store_atomic.py")),
}

#: mutmut's result statuses that count as caught, and those left out of the kill rate
KILLED = ("killed", "timeout")
NOT_CHECKED = ("skipped", "not checked", "caught by type check")
RESULT_LINE = re.compile(r"^\s*(?P<name>[\w.]+__mutmut_\d+):\s*(?P<status>.+?)\s*$")


@dataclass
class ModuleResult:
    key: str
    statuses: Counter
    survivors: list[tuple[str, str]]  # (mutant name, status)
    seconds: float
    error: str = ""

    @property
    def checked(self) -> int:
        return sum(n for s, n in self.statuses.items() if s not in NOT_CHECKED)

    @property
    def killed(self) -> int:
        return sum(self.statuses[s] for s in KILLED)

    @property
    def kill_rate(self) -> float | None:
        return self.killed / self.checked if self.checked else None


def setup_cfg(source: str, tests: tuple[str, ...], timeout_multiplier: float) -> str:
    lines = ["[mutmut]", "source_paths = core", f"only_mutate = {source}", "also_copy =", "    pytest.ini",
             "pytest_add_cli_args_test_selection ="] + [f"    {t}" for t in tests]
    lines += ["pytest_add_cli_args =", "    -m", "    not integration and not browser",
              "    -p", "    no:cacheprovider",
              f"timeout_multiplier = {timeout_multiplier}", "use_git_change_detection = false", ""]
    return "\n".join(lines)


def make_copy(work: Path, source: str, tests: tuple[str, ...], timeout_multiplier: float) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "mutants")
    shutil.copytree(ROOT / "core", work / "core", ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    shutil.copy2(ROOT / "pytest.ini", work / "pytest.ini")
    (work / "setup.cfg").write_text(setup_cfg(source, tests, timeout_multiplier))


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               PYTHONDONTWRITEBYTECODE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("PYTHONPATH", None)
    return env


def mutmut(work: Path, args: list[str], nice: int, log: Path | None = None) -> subprocess.CompletedProcess:
    cmd = ["nice", "-n", str(nice), sys.executable, "-m", "mutmut", *args]
    if log is None:
        return subprocess.run(cmd, cwd=work, env=child_env(), capture_output=True, text=True)
    with open(log, "w") as fh:
        return subprocess.run(cmd, cwd=work, env=child_env(), stdout=fh, stderr=subprocess.STDOUT, text=True)


def parse_results(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        m = RESULT_LINE.match(line)
        if m:
            out[m["name"]] = m["status"]
    return out


def run_module(key: str, work_root: Path, nice: int, children: int, timeout_multiplier: float,
               diff: bool) -> ModuleResult:
    source, tests = MODULES[key]
    tests = tuple(t for t in tests if (ROOT / t).exists())
    if not list(ROOT.glob(source)) or not tests:
        return ModuleResult(key, Counter(), [], 0.0, error=f"missing {source} or its tests {MODULES[key][1]}")
    work = work_root / key
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    make_copy(work, source, tests, timeout_multiplier)
    print(f"== {key}: mutating {source}; tests {', '.join(tests)} (log {work / 'mutmut.log'})", flush=True)
    start = time.perf_counter()
    run = mutmut(work, ["run", "--max-children", str(children)], nice, log=work / "mutmut.log")
    seconds = time.perf_counter() - start
    results = parse_results(mutmut(work, ["results", "--all", "true"], nice).stdout)
    error = "" if results else f"mutmut run exited {run.returncode} with no results: see {work / 'mutmut.log'}"
    statuses = Counter(results.values())
    survivors = sorted((n, s) for n, s in results.items() if s not in KILLED and s not in NOT_CHECKED)
    result = ModuleResult(key, statuses, survivors, seconds, error)
    print_module(result)
    if diff:
        for name, _ in survivors:
            print(mutmut(work, ["show", name], nice).stdout.rstrip(), flush=True)
    return result


def print_module(r: ModuleResult) -> None:
    if r.error:
        print(f"   {r.key}: {r.error}", flush=True)
        return
    rate = "n/a" if r.kill_rate is None else f"{100 * r.kill_rate:.1f}%"
    counts = ", ".join(f"{s} {n}" for s, n in sorted(r.statuses.items()))
    print(f"   {r.key}: kill rate {rate} ({r.killed}/{r.checked}); {counts}; {r.seconds / 60:.1f} min", flush=True)
    for name, status in r.survivors:
        print(f"     {status}: {name}", flush=True)


def print_summary(results: list[ModuleResult]) -> None:
    print("\nmodule                 mutants  killed  kill rate")
    for r in results:
        rate = "error" if r.error else ("n/a" if r.kill_rate is None else f"{100 * r.kill_rate:8.1f}%")
        print(f"{r.key:22} {r.checked:7d} {r.killed:7d}  {rate}")
    total, killed = sum(r.checked for r in results), sum(r.killed for r in results)
    if total:
        print(f"{'all':22} {total:7d} {killed:7d}  {100 * killed / total:8.1f}%")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"module keys, or 'all': {', '.join(MODULES)}")
    parser.add_argument("--list", action="store_true", help="list the modules and their test files")
    parser.add_argument("--nice", type=int, default=19, help="niceness of the mutation run (default 19)")
    parser.add_argument("--children", type=int, default=1, help="mutants run in parallel (default 1)")
    parser.add_argument("--timeout-multiplier", type=float, default=15.0, help="mutmut's timeout multiplier")
    parser.add_argument("--work", type=Path, help="keep the per-module copies in this folder")
    parser.add_argument("--diff", action="store_true", help="print each surviving mutant's diff")
    args = parser.parse_args(argv)
    if args.list or not args.modules:
        for key, (source, tests) in MODULES.items():
            print(f"{key:20} {source:30} {' '.join(tests)}")
        return 0
    keys = list(MODULES) if args.modules == ["all"] else args.modules
    unknown = [k for k in keys if k not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; choose from {', '.join(MODULES)} or 'all'")
    if not 0 <= args.nice <= 19:
        parser.error(f"--nice must be 0..19, got {args.nice}")
    if args.children < 1:
        parser.error(f"--children must be at least 1, got {args.children}")
    work_root = args.work or Path(tempfile.mkdtemp(prefix="mutation-"))
    try:
        results = [run_module(k, work_root, args.nice, args.children, args.timeout_multiplier, args.diff)
                   for k in keys]
    finally:
        if args.work is None:
            shutil.rmtree(work_root, ignore_errors=True)
    print_summary(results)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
