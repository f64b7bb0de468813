"""The recorded pack: finished runs shipped with the app (``data/pack``), read as a second, read-only run store.

A pack is a folder made by ``scripts/make_pack.py`` (:mod:`core.runs.pack_make`)::

    manifest.json               format, version, when it was made, the code version and precision of its runs, their
                                budget, and every other file's size and sha256
    tables/runs.parquet         the runs' rows of the store's ``runs`` table (pid and heartbeat left out)
    tables/steps.parquet        their ``steps``, ``events`` and ``profiles`` rows, the JSON columns as text
    tables/events.parquet
    tables/profiles.parquet
    runs/<run_id>/...           every artifact each run stored except its model weights (:mod:`core.runs.artifacts`)

:func:`load_pack` checks the manifest before anything is read: a file missing, changed (size or checksum), or
present but not listed refuses the whole pack with a :class:`PackError` saying which file; the app then runs
without it (:func:`pack_or_none`). Nothing is unpickled: the tables are Parquet, the artifacts JSON, CSV and
Parquet. :class:`Pack` answers the read half of :class:`core.runs.store.RunStore`'s interface, and
:class:`core.runs.pack_store.StoreWithPack` is the user's store with the pack's runs after the user's own, refusing
to write to them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from core.jsontypes import JSONObject
from core.paths import PROJECT_ROOT, shown_path
from core.runs.events import StoredEvent
from core.runs.record import Run

FORMAT = "layer-prune-pack"
VERSION = 1
MANIFEST_FILE = "manifest.json"
RUNS_DIR = "runs"
TABLES = ("runs", "steps", "events", "profiles")
#: the most a pack may weigh (all its files, the manifest included)
LIMIT_BYTES = 20_000_000
PACK_DIR = PROJECT_ROOT / "data" / "pack"
#: values of ``PRUNE_PACK_DIR`` that switch the pack off
OFF = ("", "0", "off", "none", "false", "no")


class PackError(Exception):
    """The pack cannot be used; the message says which file and what is wrong, and that the app runs without it."""


def table_file(name: str) -> str:
    return f"tables/{name}.parquet"


def pack_dir() -> Path | None:
    """The pack folder: ``PRUNE_PACK_DIR`` when set (``off`` or empty: no pack), else the shipped ``data/pack``."""
    value = os.environ.get("PRUNE_PACK_DIR")
    if value is None:
        return PACK_DIR
    return None if value.strip().lower() in OFF else Path(value)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def budget_text(config: Mapping[str, Any]) -> str:
    """A run's budget in one line: ``2,000 / 1,000 / 1,000 rows (train / val / test), length 32, 6 layers removed,
    1 epoch per step, KD 2 epochs``."""
    data = dict(config.get("data") or {})
    caps = [data.get(k) for k in ("train_cap", "val_cap", "test_cap")]
    parts = []
    if all(isinstance(c, int) for c in caps):
        parts.append(" / ".join(f"{c:,}" for c in caps) + " rows (train / val / test)")
    if data.get("max_length"):
        parts.append(f"length {data['max_length']}")
    if config.get("layers_to_remove") is not None:
        parts.append(f"{config['layers_to_remove']} layers removed")
    if config.get("step_epochs") is not None:
        parts.append(f"{config['step_epochs']:g} epoch(s) per step")
    kd = config.get("kd") or {}
    if config.get("distill") and kd.get("epochs") is not None:
        parts.append(f"KD {kd['epochs']:g} epoch(s)")
    return ", ".join(parts)


@dataclass(frozen=True)
class FileEntry:
    """A file of the pack as its manifest lists it: size and sha256."""

    bytes: int
    sha256: str

    def to_dict(self) -> JSONObject:
        return {"bytes": self.bytes, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FileEntry:
        return cls(int(data["bytes"]), str(data["sha256"]))


@dataclass(frozen=True)
class PackedRun:
    """A run of the pack as its manifest lists it: what it ran, the day it finished, its precision and budget."""

    id: str
    model: str
    dataset: str
    strategy: str
    seed: int | None
    recorded: str
    precision: str | None
    budget: str

    def to_dict(self) -> JSONObject:
        return {"id": self.id, "model": self.model, "dataset": self.dataset, "strategy": self.strategy,
                "seed": self.seed, "recorded": self.recorded, "precision": self.precision, "budget": self.budget}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PackedRun:
        seed, precision = data.get("seed"), data.get("precision")
        return cls(str(data["id"]), str(data["model"]), str(data["dataset"]), str(data["strategy"]),
                   None if seed is None else int(seed), str(data.get("recorded") or ""),
                   None if precision is None else str(precision), str(data.get("budget") or ""))


@dataclass(frozen=True)
class PackManifest:
    """``manifest.json``: the format and version, when and by which code version the pack was made, the code
    versions, precisions and budgets of its runs, the runs, and every other file with its size and checksum."""

    made: str
    made_by: str
    code_versions: tuple[str, ...]
    precision: tuple[str, ...]
    budget: tuple[str, ...]
    runs: tuple[PackedRun, ...]
    files: dict[str, FileEntry] = field(default_factory=dict)
    limit_bytes: int = LIMIT_BYTES
    format: str = FORMAT
    version: int = VERSION

    @property
    def total_bytes(self) -> int:
        """The listed files' bytes (the manifest itself not counted)."""
        return sum(e.bytes for e in self.files.values())

    def content(self) -> JSONObject:
        """The manifest without when and by which checkout it was written (what decides whether the pack
        changed)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("made", "made_by")}

    def to_dict(self) -> JSONObject:
        """The manifest as written (key order kept: an unchanged pack writes the same text)."""
        return {"format": self.format, "version": self.version, "made": self.made, "made_by": self.made_by,
                "code_versions": list(self.code_versions), "precision": list(self.precision),
                "budget": list(self.budget), "runs": [r.to_dict() for r in self.runs],
                "total_bytes": self.total_bytes, "limit_bytes": self.limit_bytes,
                "files": {rel: e.to_dict() for rel, e in sorted(self.files.items())}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PackManifest:
        """A manifest read back (raises ``KeyError``, ``TypeError`` or ``ValueError`` when it is malformed)."""
        return cls(made=str(data.get("made") or ""), made_by=str(data.get("made_by") or ""),
                   code_versions=tuple(str(v) for v in data.get("code_versions") or ()),
                   precision=tuple(str(v) for v in data.get("precision") or ()),
                   budget=tuple(str(v) for v in data.get("budget") or ()),
                   runs=tuple(PackedRun.from_dict(r) for r in data.get("runs") or ()),
                   files={str(rel): FileEntry.from_dict(e) for rel, e in dict(data["files"]).items()},
                   limit_bytes=int(data.get("limit_bytes") or LIMIT_BYTES), format=str(data["format"]),
                   version=int(data["version"]))


def _fail(folder: Path, what: str) -> PackError:
    return PackError(f"The recorded pack in {shown_path(folder)} was refused: {what}. The app runs without it; "
                     "rebuild it with scripts/make_pack.py or restore it from git.")


def _listed_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {MANIFEST_FILE}


def validate(folder: Path) -> PackManifest:
    """The pack's manifest after checking it and every file it lists (size, then sha256). Raises :class:`PackError`."""
    read = _read_manifest(folder)
    _check_files(folder, read)
    return read


def _read_manifest(folder: Path) -> PackManifest:
    """The pack's manifest, checked: readable JSON, this format and version, the four tables listed."""
    mpath = folder / MANIFEST_FILE
    try:
        manifest = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise _fail(folder, f"{MANIFEST_FILE} is missing") from None
    except (OSError, ValueError) as exc:
        raise _fail(folder, f"{MANIFEST_FILE} is not readable JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise _fail(folder, f"{MANIFEST_FILE} is not a pack manifest (format {found!r}, expected {FORMAT!r})")
    if manifest.get("version") != VERSION:
        raise _fail(folder, f"its version is {manifest.get('version')!r}, this code reads version {VERSION}")
    files = manifest.get("files")
    if not isinstance(files, dict) or any(table_file(t) not in files for t in TABLES):
        raise _fail(folder, f"{MANIFEST_FILE} does not list the four tables {[table_file(t) for t in TABLES]}")
    try:
        read = PackManifest.from_dict(manifest)
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(folder, f"{MANIFEST_FILE} is malformed ({type(exc).__name__}: {exc})") from None
    return read


def _check_files(folder: Path, read: PackManifest) -> None:
    """Each listed file is there with its size and sha256, no other file is, the whole is under the limit."""
    for rel, entry in sorted(read.files.items()):
        path = folder / rel
        if not path.is_file():
            raise _fail(folder, f"the file {rel} is missing")
        if path.stat().st_size != entry.bytes:
            raise _fail(folder, f"the file {rel} has {path.stat().st_size:,} bytes, the manifest says "
                                f"{entry.bytes!r} (changed after the pack was made)")
        if sha256_file(path) != entry.sha256:
            raise _fail(folder, f"the file {rel} does not match its checksum (changed after the pack was made)")
    extra = sorted(_listed_files(folder) - set(read.files))
    if extra:
        raise _fail(folder, f"{len(extra)} file(s) are not in the manifest, e.g. {extra[0]}")
    total = read.total_bytes + (folder / MANIFEST_FILE).stat().st_size
    if total > LIMIT_BYTES:
        raise _fail(folder, f"it holds {total:,} bytes, more than the limit of {LIMIT_BYTES:,}")


def _rows(folder: Path, name: str) -> list[dict[str, Any]]:
    return pq.read_table(folder / table_file(name)).to_pylist()


class Pack:
    """A validated pack (use :func:`load_pack`): the read half of :class:`~core.runs.store.RunStore`'s interface,
    from memory (the tables) and the pack's folder (the artifacts). Every run it holds is ``recorded``."""

    def __init__(self, folder: Path, manifest: PackManifest) -> None:
        self.root = folder
        self.manifest = manifest
        self._runs = [Run.from_dict({**row, "recorded": True}) for row in _rows(folder, "runs")]
        self._by_id = {r.id: r for r in self._runs}
        self._steps: dict[str, list[dict[str, Any]]] = {}
        for row in _rows(folder, "steps"):
            self._steps.setdefault(row["run_id"], []).append({"step": row["step"], **json.loads(row["data"])})
        self._events: dict[str, list[StoredEvent]] = {}
        for row in _rows(folder, "events"):
            event = StoredEvent.from_row(row)
            self._events.setdefault(event.run_id, []).append(event)
        self._profiles = _rows(folder, "profiles")
        for steps in self._steps.values():
            steps.sort(key=lambda r: int(r["step"]))
        for events in self._events.values():
            events.sort(key=lambda e: e.seq)

    @property
    def ids(self) -> set[str]:
        return set(self._by_id)

    @property
    def made(self) -> str:
        return self.manifest.made

    def list_runs(self, *, kind: str | None = None, status: str | None = None, model: str | None = None,
                  dataset: str | None = None) -> list[Run]:
        want = {"kind": kind, "status": status, "model": model, "dataset": dataset}
        return [r for r in self._runs if all(v is None or str(getattr(r, k)) == v for k, v in want.items())]

    def get_run(self, run_id: str, check: bool = True) -> Run | None:
        return self._by_id.get(run_id)

    def steps(self, run_id: str) -> pd.DataFrame:
        return pd.DataFrame([dict(r) for r in self._steps.get(run_id, [])])

    def all_steps(self, run_ids: list[str] | None = None) -> pd.DataFrame:
        keep = self._by_id if run_ids is None else [i for i in run_ids if i in self._by_id]
        return pd.DataFrame([{"run_id": i, **r} for i in sorted(keep) for r in self._steps.get(i, [])])

    def profiles(self, model: str | None = None) -> pd.DataFrame:
        records = []
        for row in self._profiles:
            if model is None or row["model"] == model:
                records += [{**rec, "run_id": row["run_id"], "step": row["step"], "model": row["model"],
                             "dataset": row["dataset"]} for rec in json.loads(row["rows"])]
        return pd.DataFrame(records)

    def events(self, run_id: str, after: int = -1) -> list[StoredEvent]:
        return [e for e in self._events.get(run_id, []) if e.seq > after]

    def last_event(self, run_id: str) -> StoredEvent | None:
        found = self._events.get(run_id)
        return found[-1] if found else None

    def run_dir(self, run_id: str) -> Path:
        return self.root / RUNS_DIR / run_id

    def recorded_on(self, run: Run) -> str:
        """The date the run finished (``2026-12-07``)."""
        return pd.Timestamp(run.finished_at or run.created_at, unit="s").strftime("%Y-%m-%d")


def load_pack(folder: str | Path | None = None) -> Pack | None:
    """The pack in ``folder`` (default :func:`pack_dir`), validated; None when there is none (no folder, an empty
    one, or the pack switched off). Raises :class:`PackError` (never anything else) when it is there but unusable."""
    path = Path(folder) if folder is not None else pack_dir()
    if path is None or not path.is_dir() or not any(path.iterdir()):
        return None
    manifest = validate(path)
    try:
        return Pack(path, manifest)
    except Exception as exc:  # a table that passed its checksum but does not read: a pack of another layout
        raise _fail(path, f"its tables do not read ({type(exc).__name__}: {exc})") from None


def pack_or_none(folder: str | Path | None = None) -> tuple[Pack | None, str | None]:
    """``(pack, None)``, ``(None, None)`` without a pack, or ``(None, why it was refused)``."""
    try:
        return load_pack(folder), None
    except PackError as exc:
        return None, str(exc)


def pack_stamp(folder: Path | None) -> str:
    """What changes when the pack is rebuilt or touched: the manifest's size and modification time (cache keys)."""
    if folder is None:
        return "off"
    try:
        stat = (folder / MANIFEST_FILE).stat()
    except OSError:
        return "none"
    return f"{stat.st_size}:{stat.st_mtime_ns}"
