"""The architecture contract, checked with every test run: the import contracts of ``.importlinter`` (core is
UI-free and acyclic, library code never imports the CLI, merging never imports pruning), no import cycle
between any two modules of core, core importable without streamlit, no module of core over ``MAX_LINES``
lines, and the habits of ``pyproject.toml``: ruff (lint and import order) over the repository and mypy over
core are clean. Each failure names the offending imports, cycle, files or lines."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 450


def module_cycles(graph: grimp.ImportGraph, package: str) -> list[list[str]]:
    """Import cycles among the modules of ``package`` in ``graph``, one shortest cycle per set of modules,
    each written ``[a, b, ..., a]`` (a imports b, ..., the last imports a)."""
    inside = sorted(m for m in graph.modules if m == package or m.startswith(package + "."))
    cycles: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    for importer in inside:
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if imported == importer or not (imported == package or imported.startswith(package + ".")):
                continue
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is None:
                continue
            cycle = [importer, *back]
            if frozenset(cycle) not in seen:
                seen.add(frozenset(cycle))
                cycles.append(cycle)
    return cycles


def test_layout_exists():
    for name in ("app.py", "pages", "core", "ui", "tests", "data", "requirements.txt", "README.md", ".ci/run",
                 ".importlinter"):
        assert (ROOT / name).exists(), name


def test_import_contracts_hold():
    """``lint-imports`` with the repository's ``.importlinter`` (run as a subprocess, as CI would)."""
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    report = out.stdout[out.stdout.find("Contracts"):] if "Contracts" in out.stdout else out.stdout
    kept = out.returncode == 0
    assert kept, f"import contracts broken:\n{report}\n{out.stderr[-2000:]}"


def test_no_import_cycle_between_modules_of_core():
    cycles = module_cycles(grimp.build_graph("core", cache_dir=None), "core")
    assert not cycles, "import cycles in core:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_cycle_finder_reports_each_cycle_once():
    graph = grimp.ImportGraph()
    for importer, imported in (("pkg.a", "pkg.b"), ("pkg.b", "pkg.c"), ("pkg.c", "pkg.a"), ("pkg.d", "pkg.a"),
                               ("pkg.d", "other.x"), ("other.x", "pkg.d")):
        graph.add_import(importer=importer, imported=imported)
    # pkg.d <-> other.x is a cycle of another package's module, not one among pkg's modules
    assert module_cycles(graph, "pkg") == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    graph.remove_import(importer="pkg.c", imported="pkg.a")
    assert module_cycles(graph, "pkg") == []


def test_core_modules_are_small():
    sizes = {path.relative_to(ROOT).as_posix(): len(path.read_text().splitlines())
             for path in sorted((ROOT / "core").rglob("*.py"))}
    over = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not over, f"modules of core over {MAX_LINES} lines (split them by what they do): " + ", ".join(
        f"{name} ({n})" for name, n in sorted(over.items(), key=lambda kv: -kv[1]))


def test_importing_all_of_core_loads_no_streamlit():
    """The static contract above sees imports; this one runs them: every module of core imported at runtime
    (lazy imports inside functions aside) does not pull streamlit in."""
    code = ("import importlib, pkgutil, sys, core\n"
            "for m in pkgutil.walk_packages(core.__path__, 'core.'):\n"
            "    if m.name != 'core.__main__': importlib.import_module(m.name)\n"
            "print('streamlit' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


def _run_tool(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` from the repository root (its settings are ``pyproject.toml``'s); skips when
    the tool is not installed here (``requirements-dev.txt`` pins it, so CI has it)."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed: pip install -r requirements-dev.txt")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_ruff_finds_nothing():
    """Lint and import order (``[tool.ruff]``) over core, ui, pages, tests, scripts and app.py."""
    out = _run_tool("ruff", "check", "--output-format", "concise", ".")
    assert out.returncode == 0, f"ruff check . found problems:\n{out.stdout[-4000:]}{out.stderr[-2000:]}"


def test_mypy_finds_nothing_in_core():
    """Types of core (``[tool.mypy]``; its cache is .mypy_cache, so a second run takes seconds)."""
    out = _run_tool("mypy")
    assert out.returncode == 0, f"mypy core found problems:\n{out.stdout[-4000:]}{out.stderr[-2000:]}"
