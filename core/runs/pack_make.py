"""Making the recorded pack (:mod:`core.runs.pack`) from a run store: ``scripts/make_pack.py`` is its command line.

The store is only read: its SQLite file is opened read-only (``mode=ro``, so a study writing to it meanwhile is
never disturbed) and its run folders are copied file by file. A pack holds the finished runs a
:class:`PackSelection` picks, every artifact of each except model weights, and their rows of the four tables.

Making a pack again is cheap and safe (resumable, idempotent): every file is written atomically and only when its
bytes changed, files of runs no longer selected are removed, and the manifest is written last; when nothing
changed the manifest (and its date) stay as they were. Before anything is written the whole pack is sized, checked
against :data:`core.runs.pack.LIMIT_BYTES`, and each run's summary checked against its own step tables and outcome
files (:func:`core.runs.pack_check.check_run`): a pack too large or inconsistent is refused and nothing changes.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core.config import ConfigError
from core.paths import atomic_file, atomic_write_text
from core.runs import artifacts
from core.runs.pack import (
    LIMIT_BYTES,
    MANIFEST_FILE,
    RUNS_DIR,
    FileEntry,
    PackedRun,
    PackManifest,
    budget_text,
    sha256_file,
    table_file,
)
from core.runs.pack_check import check_store_run, read_only
from core.version import code_version

#: the pack issue 30 asks for: three embedded datasets x four strategies, seed 0
DEFAULT_DATASETS = ("trec", "sms-spam", "rotten-tomatoes")
DEFAULT_STRATEGIES = ("rf_fusion", "oracle", "weight_entropy", "top_down")
DEFAULT_SEEDS = (0,)
#: never shipped: model weights in any format (a run's ``model/`` folder is skipped whole)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".pkl", ".pickle", ".h5", ".msgpack")

_SCHEMAS = {
    "runs": pa.schema([("id", pa.string()), ("kind", pa.string()), ("name", pa.string()), ("model", pa.string()),
                       ("dataset", pa.string()), ("strategy", pa.string()), ("group_id", pa.string()),
                       ("cell_id", pa.string()), ("status", pa.string()), ("config", pa.string()),
                       ("created_at", pa.float64()), ("started_at", pa.float64()), ("finished_at", pa.float64()),
                       ("error", pa.string()), ("summary", pa.string())]),
    "steps": pa.schema([("run_id", pa.string()), ("step", pa.int64()), ("data", pa.string())]),
    "events": pa.schema([("run_id", pa.string()), ("seq", pa.int64()), ("ts", pa.float64()), ("stage", pa.string()),
                         ("step", pa.int64()), ("progress", pa.float64()), ("message", pa.string()),
                         ("payload", pa.string())]),
    "profiles": pa.schema([("run_id", pa.string()), ("step", pa.int64()), ("model", pa.string()),
                           ("dataset", pa.string()), ("rows", pa.string())]),
}
_ORDER = {"runs": "id", "steps": "run_id, step", "events": "run_id, seq", "profiles": "run_id, step"}


@dataclass(frozen=True)
class PackSelection:
    """Which finished runs go into a pack: pruning runs of these datasets, strategies and seeds (``None``: any),
    or exactly ``run_ids`` when given."""

    datasets: tuple[str, ...] | None = DEFAULT_DATASETS
    strategies: tuple[str, ...] | None = DEFAULT_STRATEGIES
    seeds: tuple[int, ...] | None = DEFAULT_SEEDS
    run_ids: tuple[str, ...] | None = None
    kind: str = "prune"

    def __post_init__(self) -> None:
        for name in ("datasets", "strategies", "seeds", "run_ids"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, tuple) or not value):
                raise ConfigError(f"PackSelection.{name} must be None or a non-empty tuple, got {value!r}")
        if self.seeds is not None and not all(isinstance(s, int) and not isinstance(s, bool) for s in self.seeds):
            raise ConfigError(f"PackSelection.seeds must be integers, got {self.seeds!r}")
        if self.kind not in ("prune", "merge"):
            raise ConfigError(f"PackSelection.kind must be 'prune' or 'merge', got {self.kind!r}")

    def picks(self, row: sqlite3.Row) -> bool:
        if self.run_ids is not None:
            return row["id"] in self.run_ids
        seed = json.loads(row["config"] or "{}").get("seed")
        return (row["kind"] == self.kind and (self.datasets is None or row["dataset"] in self.datasets)
                and (self.strategies is None or row["strategy"] in self.strategies)
                and (self.seeds is None or seed in self.seeds))


class PackRefused(Exception):
    """The pack was not written (too large, inconsistent, or nothing to put in it); nothing was changed."""


@dataclass
class PackReport:
    """What :func:`make_pack` did."""

    runs: list[str]
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    total_bytes: int = 0

    def text(self) -> str:
        return (f"{len(self.runs)} run(s), {self.total_bytes / 1e6:.2f} MB: {len(self.written)} file(s) written, "
                f"{len(self.unchanged)} unchanged, {len(self.removed)} removed")


def pick_runs(store_dir: Path, selection: PackSelection) -> list[sqlite3.Row]:
    """The finished (``done``) runs of the store that ``selection`` picks, as rows of the ``runs`` table."""
    with read_only(store_dir) as con:
        rows = list(con.execute("SELECT * FROM runs WHERE status='done' ORDER BY id"))
    return [r for r in rows if selection.picks(r)]


def _parquet(name: str, rows: list[sqlite3.Row]) -> bytes:
    schema = _SCHEMAS[name]
    table = pa.Table.from_pylist([{k: r[k] if k in r.keys() else None for k in schema.names} for r in rows],
                                 schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def _table_rows(store_dir: Path, name: str, ids: list[str]) -> list[sqlite3.Row]:
    marks = ",".join("?" * len(ids))
    column = "id" if name == "runs" else "run_id"
    with read_only(store_dir) as con:
        return list(con.execute(f"SELECT * FROM {name} WHERE {column} IN ({marks}) ORDER BY {_ORDER[name]}", ids))


def _artifacts(run_folder: Path) -> list[Path]:
    """A run's files to ship: everything but its model folder, weights and temporary files."""
    out = []
    for path in sorted(run_folder.rglob("*")):
        rel = path.relative_to(run_folder)
        if (not path.is_file() or rel.parts[0] == artifacts.MODEL_DIR or path.suffix in WEIGHT_SUFFIXES
                or ".tmp-" in path.name):
            continue
        out.append(path)
    return out


def plan(store_dir: Path, runs: Sequence[sqlite3.Row]) -> dict[str, bytes | Path]:
    """Every file of the pack but the manifest: relative path -> its bytes (tables) or the file to copy."""
    ids = [r["id"] for r in runs]
    files: dict[str, bytes | Path] = {table_file(name): _parquet(name, _table_rows(store_dir, name, ids))
                                      for name in _SCHEMAS}
    for run_id in ids:
        folder = Path(store_dir) / RUNS_DIR / run_id
        for path in _artifacts(folder):
            files[f"{RUNS_DIR}/{run_id}/{path.relative_to(folder).as_posix()}"] = path
    return files


def _size(content: bytes | Path) -> int:
    return len(content) if isinstance(content, bytes) else content.stat().st_size


def _entry(content: bytes | Path) -> FileEntry:
    digest = hashlib.sha256(content).hexdigest() if isinstance(content, bytes) else sha256_file(content)
    return FileEntry(_size(content), digest)


def _run_entry(row: sqlite3.Row) -> PackedRun:
    config, summary = json.loads(row["config"] or "{}"), json.loads(row["summary"] or "{}")
    seed, precision = config.get("seed"), summary.get("precision")
    return PackedRun(id=row["id"], model=row["model"], dataset=row["dataset"], strategy=row["strategy"],
                     seed=None if seed is None else int(seed),
                     recorded=time.strftime("%Y-%m-%d", time.gmtime(row["finished_at"] or 0)),
                     precision=None if precision is None else str(precision), budget=budget_text(config))


def manifest_for(runs: Sequence[sqlite3.Row], entries: dict[str, FileEntry], code_versions: list[str],
                 made: str) -> PackManifest:
    listed = tuple(_run_entry(r) for r in runs)
    return PackManifest(made=made, made_by=code_version(), code_versions=tuple(code_versions),
                        precision=tuple(sorted({str(r.precision) for r in listed})),
                        budget=tuple(sorted({r.budget for r in listed})), runs=listed, files=dict(entries))


def _code_versions(store_dir: Path, ids: list[str]) -> list[str]:
    """The code versions the runs were made with (each run's step 0 records it)."""
    found = set()
    for row in _table_rows(store_dir, "steps", ids):
        version = json.loads(row["data"]).get("code_version")
        if version:
            found.add(str(version))
    return sorted(found)


def make_pack(store_dir: str | Path, out: str | Path, selection: PackSelection | None = None,
              limit: int = LIMIT_BYTES, check: bool = True) -> PackReport:
    """Write (or bring up to date) the pack at ``out`` from the finished runs of ``store_dir`` that ``selection``
    picks. Raises :class:`PackRefused` (and writes nothing) when no run is picked, the pack would weigh more than
    ``limit`` bytes, or a run's summary disagrees with its own files (``check``)."""
    store_dir, out = Path(store_dir), Path(out)
    runs = _checked_runs(store_dir, selection or PackSelection(), check)
    files = plan(store_dir, runs)
    entries = {rel: _entry(content) for rel, content in files.items()}
    unchanged = [rel for rel, e in entries.items() if (out / rel).is_file() and
                 (out / rel).stat().st_size == e.bytes and sha256_file(out / rel) == e.sha256]
    ids = [r["id"] for r in runs]
    old = _old_manifest(out)
    manifest = manifest_for(runs, entries, _code_versions(store_dir, ids), old.made if old else "")
    same = old is not None and old.content() == manifest.content()  # the same files of the same runs: keep its date
    if old is not None and same:
        manifest = replace(manifest, made_by=old.made_by or manifest.made_by)
    else:
        manifest = replace(manifest, made=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    text = json.dumps(manifest.to_dict(), indent=1) + "\n"
    total = manifest.total_bytes + len(text.encode())
    if total > limit:
        big = sorted(entries.items(), key=lambda kv: -kv[1].bytes)[:3]
        raise PackRefused(f"the pack would hold {total:,} bytes, more than the limit of {limit:,} (largest files: "
                          + ", ".join(f"{rel} {e.bytes:,}" for rel, e in big) + "): pick fewer runs")
    report = PackReport(ids, total_bytes=total, unchanged=sorted(unchanged))
    _write_files(out, files, report)
    if not same or (out / MANIFEST_FILE).read_text() != text:
        atomic_write_text(out / MANIFEST_FILE, text)
        report.written.append(MANIFEST_FILE)
    return report


def _checked_runs(store_dir: Path, selection: PackSelection, check: bool) -> list[sqlite3.Row]:
    """The runs of the store that ``selection`` picks; :class:`PackRefused` when there is no store or no such run,
    or (``check``) when a run's summary disagrees with its own files."""
    if not (store_dir / "runs.sqlite").is_file():
        raise PackRefused(f"no run store at {store_dir} (no runs.sqlite)")
    runs = pick_runs(store_dir, selection)
    if not runs:
        raise PackRefused(f"no finished run in {store_dir} matches the selection {selection}")
    if check:
        problems = [p for r in runs for p in check_store_run(store_dir, r["id"])]
        if problems:
            raise PackRefused("runs whose summary disagrees with their own files:\n  " + "\n  ".join(problems))
    return runs


def _write_files(out: Path, files: dict[str, bytes | Path], report: PackReport) -> None:
    """Write each of ``files`` not in ``report.unchanged``, then remove the files (and the emptied folders) of
    ``out`` that ``files`` does not hold (the manifest aside); ``report`` says which."""
    for rel, content in files.items():
        if rel in report.unchanged:
            continue
        with atomic_file(out / rel) as tmp:
            tmp.write_bytes(content if isinstance(content, bytes) else content.read_bytes())
        report.written.append(rel)
    for path in sorted(out.rglob("*")) if out.is_dir() else []:
        rel = path.relative_to(out).as_posix()
        if path.is_file() and rel != MANIFEST_FILE and rel not in files:
            path.unlink()
            report.removed.append(rel)
    for folder in sorted((p for p in out.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(folder.iterdir()):
            folder.rmdir()


def _old_manifest(out: Path) -> PackManifest | None:
    """The manifest of the pack already at ``out``; None when there is none or it does not read."""
    try:
        found = json.loads((out / MANIFEST_FILE).read_text())
        return PackManifest.from_dict(found) if isinstance(found, dict) else None
    except (OSError, KeyError, TypeError, ValueError):
        return None
