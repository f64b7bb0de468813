"""The profile bank: layer profiles shipped with the app, so fusion has learned before a user's first run.

One row per (model, dataset, seed, step, remaining layer): the twelve raw signals and the ShortGPT baseline,
the oracle (validation accuracy and loss with that layer removed), the layer's original index, the layers
removed so far, and provenance (data config, teacher fingerprint, code version, the run it came from). The rows
live in ``data/bank/profiles.parquet`` with ``data/bank/manifest.json`` (format, version, row count, columns,
SHA-256); :func:`load_bank` checks all of it and raises :class:`BankError` with what to do, never a crash or a
pickle. :func:`build_bank` makes the files from a run store (``python -m core study bank``).

:func:`training_profiles` is what fusion trains on: the bank (``source = "bank v<N>"``) plus the user's own
stored profiles (``source = "store"``). Leave-one-dataset-out is applied later, per step
(:func:`core.fusion.choose_training_rows`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.paths import PROJECT_ROOT, atomic_file, atomic_write_text
from core.signals import DEFAULT_COLUMNS, get_info

if TYPE_CHECKING:  # the run record, for annotations only
    from core.runs.record import Run

FORMAT = "layer-prune-explorer/profile-bank"
VERSION = 1
BANK_DIR = PROJECT_ROOT / "data" / "bank"
PROFILES_FILE = "profiles.parquet"
MANIFEST_FILE = "manifest.json"

SIGNAL_COLUMNS: tuple[str, ...] = tuple(DEFAULT_COLUMNS)
ORACLE_COLUMNS = ("oracle_accuracy", "oracle_loss")
KEY_COLUMNS = ("model", "dataset", "seed", "run_id", "step", "original_layer")
INT_COLUMNS = ("seed", "step", "layer", "original_layer", "n_layers", "n_original")
TEXT_COLUMNS = ("model", "dataset", "run_id", "removed_so_far", "data_config", "teacher_fingerprint", "code_version")
COLUMNS: tuple[str, ...] = (*KEY_COLUMNS[:4], "step", "layer", "original_layer", "n_layers", "n_original",
                            "removed_so_far", *SIGNAL_COLUMNS, *ORACLE_COLUMNS, "data_config", "teacher_fingerprint",
                            "code_version")
_REBUILD = ("Restore the shipped files with `git checkout data/bank`, or rebuild them from a run store with "
            "`python -m core study bank --store DIR`.")


class BankError(ValueError):
    """The bank's files are missing, damaged or edited by hand."""


@dataclass(frozen=True)
class Bank:
    rows: pd.DataFrame
    manifest: dict[str, Any]

    @property
    def version(self) -> int:
        return int(self.manifest["version"])

    @property
    def source(self) -> str:
        return f"bank v{self.version}"

    def coverage(self) -> pd.DataFrame:
        """Per model and dataset: seeds, steps, rows."""
        g = self.rows.groupby(["model", "dataset"])
        return pd.DataFrame({"seeds": g["seed"].nunique(), "steps": g.apply(lambda f: f[["seed", "step"]]
                                                                             .drop_duplicates().shape[0]),
                             "rows": g.size()}).reset_index()


def bank_dir() -> Path:
    """The bank folder: ``PRUNE_BANK_DIR`` when set, else the shipped ``data/bank``."""
    return Path(os.environ.get("PRUNE_BANK_DIR") or BANK_DIR)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fail(what: str) -> BankError:
    return BankError(f"The profile bank is unusable: {what}. {_REBUILD}")


def validate_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Check the bank's columns, kinds and ranges; returns the rows with their oriented signal scores added."""
    missing = [c for c in COLUMNS if c not in rows.columns]
    if missing:
        raise _fail(f"columns {missing} are missing")
    for c in INT_COLUMNS:
        if not pd.api.types.is_integer_dtype(rows[c]):
            raise _fail(f"column {c!r} must hold integers, it holds {rows[c].dtype}")
    for c in (*SIGNAL_COLUMNS, *ORACLE_COLUMNS):
        if not pd.api.types.is_float_dtype(rows[c]):
            raise _fail(f"column {c!r} must hold numbers, it holds {rows[c].dtype}")
    for c in TEXT_COLUMNS:
        if not all(isinstance(v, str) for v in rows[c]):
            raise _fail(f"column {c!r} must hold text")
    values = rows[list(SIGNAL_COLUMNS) + list(ORACLE_COLUMNS)].to_numpy(dtype=float)
    if not np.isfinite(values).all():
        raise _fail("some signal or oracle values are missing or infinite")
    if not rows["oracle_accuracy"].between(0.0, 1.0).all():
        raise _fail("an oracle accuracy lies outside [0, 1]")
    if rows.duplicated(list(KEY_COLUMNS)).any():
        raise _fail("a (model, dataset, seed, run, step, layer) row appears twice")
    bad_depth = rows["n_layers"] != rows["n_original"] - rows["step"] + 1
    if bad_depth.any():
        raise _fail("n_layers does not equal n_original - step + 1 on some rows")
    out = rows.copy()
    for key in SIGNAL_COLUMNS:
        info = get_info(key)
        out[info.score_column] = (1.0 if info.direction == "lowest" else -1.0) * out[key]
    return out


def load_bank(folder: str | Path | None = None) -> Bank:
    """The shipped bank, checked against its manifest. Raises :class:`BankError` (never anything else)."""
    folder = Path(folder) if folder is not None else bank_dir()
    mpath, ppath = folder / MANIFEST_FILE, folder / PROFILES_FILE
    if not mpath.exists() or not ppath.exists():
        raise _fail(f"{mpath if not mpath.exists() else ppath} does not exist")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(f"{mpath.name} is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _fail(f"{mpath.name} is not a profile-bank manifest (format {manifest.get('format') if isinstance(manifest, dict) else None!r})")
    if manifest.get("version") != VERSION:
        raise _fail(f"its version is {manifest.get('version')!r}, this code reads version {VERSION}")
    if manifest.get("sha256") != _sha256(ppath):
        raise _fail(f"{ppath.name} does not match the checksum in {mpath.name} (damaged or edited by hand)")
    try:
        rows = pd.read_parquet(ppath)
    except Exception as exc:  # pyarrow raises several kinds for a broken file
        raise _fail(f"{ppath.name} cannot be read as Parquet ({type(exc).__name__})") from exc
    if len(rows) != manifest.get("rows"):
        raise _fail(f"{ppath.name} has {len(rows)} rows, the manifest says {manifest.get('rows')}")
    return Bank(validate_rows(rows), manifest)


def bank_or_none(folder: str | Path | None = None) -> tuple[Bank | None, str | None]:
    """The bank, or ``None`` and the reason (the app keeps working without it: fusion falls back)."""
    try:
        return load_bank(folder), None
    except BankError as exc:
        return None, str(exc)


# ------------------------------------------------------------------------------------------- training rows
def training_profiles(store: Any = None, *, bank_folder: str | Path | None = None) -> pd.DataFrame:
    """Fusion's training rows: the shipped bank plus the store's own profiles, each labelled in ``source``.
    Store rows that came from the same runs as bank rows (a bank built from this store) are not counted twice."""
    parts = []
    bank, _ = bank_or_none(bank_folder)
    if bank is not None:
        parts.append(bank.rows.assign(source=bank.source))
    if store is not None:
        own = store.profiles()
        if not own.empty:
            if bank is not None:
                own = own[~own["run_id"].isin(set(bank.rows["run_id"]))]
            parts.append(own.assign(source="store"))
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True, sort=False)


# ------------------------------------------------------------------------------------------- building
def _teacher_key(run: Run, task: Any) -> str:
    """The cached teacher a finished run pruned: recorded in its step 0 (runs since studies exist), else the
    teacher in the cache trained on exactly this data (task fingerprint) that existed when the run finished
    (the newest such); ``"unknown"`` when none is left in the cache."""
    from core.paths import cache_dir

    candidates = []
    for meta in (cache_dir() / "teachers").glob("*/teacher.json"):
        try:
            info = json.loads(meta.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if info.get("task", {}).get("fingerprint") == task.fingerprint and \
                meta.stat().st_mtime <= (run.finished_at or float("inf")):
            candidates.append((meta.stat().st_mtime, meta.parent.name))
    return max(candidates)[1] if candidates else "unknown"


def bank_rows_from_store(store: Any, *, model: str | None = None, code_version: str = "unknown",
                         strategies: tuple[str, ...] | None = ("oracle",)) -> pd.DataFrame:
    """Bank rows from every finished prune run in ``store`` (by default the oracle-path runs only: the bank
    profiles the oracle's own path), with provenance recomputed from each run's stored config."""
    from core.config import DataConfig, from_dict
    from core.data.task import prepare_task

    runs = [r for r in store.list_runs(kind="prune", status="done", model=model)
            if strategies is None or r.strategy in strategies]
    profiles = store.profiles(model=model)
    out = []
    fingerprints: dict[str, str] = {}
    for run in runs:
        rows = profiles[profiles["run_id"] == run.id] if not profiles.empty else profiles
        if rows.empty:
            continue
        config = run.config
        data = from_dict(DataConfig, config.get("data", {}))
        steps = store.steps(run.id)
        recorded = steps["teacher_key"].iloc[0] if "teacher_key" in steps and len(steps) else None
        if isinstance(recorded, str) and recorded:
            fingerprints[run.id] = recorded
        else:
            fingerprints[run.id] = _teacher_key(run, prepare_task(run.model, run.dataset, data))
        key = run.id
        removed_before = {int(s): list(r or []) for s, r in zip(steps["step"], steps["removed_order"])}
        frame = rows.copy()
        frame["seed"] = int(config.get("seed", 0))
        frame["removed_so_far"] = [json.dumps(removed_before.get(int(s) - 1, [])) for s in frame["step"]]
        frame["data_config"] = json.dumps(data.__dict__, sort_keys=True)
        frame["teacher_fingerprint"] = fingerprints[key]
        frame["code_version"] = str(config.get("code_version", code_version))
        out.append(frame)
    if not out:
        return pd.DataFrame(columns=list(COLUMNS))
    frame = pd.concat(out, ignore_index=True)
    frame = frame[list(COLUMNS)].copy()
    for c in INT_COLUMNS:
        frame[c] = frame[c].astype("int64")
    for c in (*SIGNAL_COLUMNS, *ORACLE_COLUMNS):
        frame[c] = frame[c].astype("float64")
    return frame.sort_values(list(KEY_COLUMNS)).reset_index(drop=True)


def merge_rows(kept: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """A bank grown by ``new`` rows: every (model, dataset, data config, seed) path in ``new`` replaces the same path
    in ``kept``; other paths of ``kept`` stay. Lets a bank be built over several machines or sessions, each
    adding the runs its own store finished."""
    key = ["model", "dataset", "data_config", "seed"]
    if kept.empty:
        return new.copy()
    fresh = set(map(tuple, new[key].drop_duplicates().itertuples(index=False)))
    stay = kept[[tuple(k) not in fresh for k in kept[key].itertuples(index=False)]]
    out = pd.concat([stay, new], ignore_index=True)[list(COLUMNS)]
    return out.sort_values(list(KEY_COLUMNS)).reset_index(drop=True)


def write_bank(rows: pd.DataFrame, folder: str | Path | None = None, *, study_file: str | None = None,
               note: str = "") -> dict[str, Any]:
    """Validate ``rows`` and write the bank (Parquet + manifest) atomically; returns the manifest."""
    validate_rows(rows)
    folder = Path(folder) if folder is not None else bank_dir()
    folder.mkdir(parents=True, exist_ok=True)
    ppath = folder / PROFILES_FILE
    with atomic_file(ppath) as tmp:
        rows.to_parquet(tmp, index=False, compression="zstd")
    g = rows.groupby(["model", "dataset"])
    manifest = {
        "format": FORMAT, "version": VERSION, "file": PROFILES_FILE, "rows": int(len(rows)),
        "sha256": _sha256(ppath), "columns": list(rows.columns),
        "coverage": [{"model": m, "dataset": d, "seeds": sorted(int(s) for s in f["seed"].unique()),
                      "steps": int(f[["seed", "step"]].drop_duplicates().shape[0]), "rows": int(len(f))}
                     for (m, d), f in g],
        "study": study_file, "note": note,
    }
    atomic_write_text(folder / MANIFEST_FILE, json.dumps(manifest, indent=1))
    return manifest
