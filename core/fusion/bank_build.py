"""Growing the profile bank from a run store: the rows (:func:`bank_rows_from_store`) and per-example outcomes
(:func:`outcomes_from_store`) of finished runs, merged path by path with a kept bank (:func:`merge_rows`,
:func:`merge_outcomes`), and written with their manifest atomically (:func:`write_bank`).

What the files hold, and how they are checked when read, is :mod:`core.fusion.bank`; this module only writes
what that one reads (``python -m core study bank``, ``scripts/grow_bank.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.config import DataConfig, from_dict
from core.data.splits import SPLIT_VERSION
from core.data.task import prepare_task
from core.fusion.bank import (
    COLUMNS,
    FORMAT,
    INT_COLUMNS,
    KEY_COLUMNS,
    MANIFEST_FILE,
    OPTIONAL_COLUMNS,
    ORACLE_COLUMNS,
    OUTCOME_COLUMNS,
    OUTCOMES_FILE,
    PROFILES_FILE,
    SIGNAL_COLUMNS,
    VERSION,
    bank_dir,
    file_sha256,
    validate_outcomes,
    validate_rows,
)
from core.fusion.bank_manifest import BankManifest, OutcomesEntry
from core.fusion.features import rename_legacy
from core.paths import atomic_file, atomic_write_text, cache_dir
from core.runs import artifacts

if TYPE_CHECKING:  # the run record, for annotations only
    from core.runs.record import Run


# ------------------------------------------------------------------------------------------- per-example outcomes
def outcomes_from_store(store: Any, rows: pd.DataFrame) -> pd.DataFrame:
    """The companion for bank ``rows`` built from ``store``: each (run, step)'s oracle outcomes
    (``steps/<k>/outcomes/oracle_val.parquet``) in the compact form. Steps whose run stored none are left out
    (runs from before per-example outcomes); an empty frame when none did."""
    parts = []
    for (run_id, step), _ in rows.groupby(["run_id", "step"], sort=True):
        found = store.read_outcomes(str(run_id), int(step), artifacts.ORACLE_OUTCOMES)
        if found is None or found.empty or "original_layer" not in found.columns:
            continue
        parts.append(pd.DataFrame({
            "run_id": str(run_id), "step": int(step), "original_layer": found["original_layer"].to_numpy(),
            "example": found["example"].to_numpy(),
            "correct": (found["pred"].to_numpy() == found["label"].to_numpy()).astype("int8"),
            "loss": found["loss"].to_numpy(dtype="float32"),
            "kl_to_teacher": found["kl_to_teacher"].to_numpy(dtype="float32")}))
    if not parts:
        return pd.DataFrame(columns=list(OUTCOME_COLUMNS))
    return validate_outcomes(pd.concat(parts, ignore_index=True))


def merge_outcomes(kept: pd.DataFrame | None, new: pd.DataFrame | None, rows: pd.DataFrame) -> pd.DataFrame:
    """The companion of a grown bank whose profiles are ``rows`` (:func:`merge_rows`): ``new`` outcomes, plus the
    ``kept`` ones of runs the new store did not bring, each only where its run is still in ``rows``."""
    live = set(rows["run_id"])
    parts = []
    fresh = set(new["run_id"]) if new is not None and len(new) else set()
    if kept is not None and len(kept):
        parts.append(kept[kept["run_id"].isin(live - fresh)])
    if new is not None and len(new):
        parts.append(new[new["run_id"].isin(live)])
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=list(OUTCOME_COLUMNS))
    return validate_outcomes(pd.concat(parts, ignore_index=True))


# ------------------------------------------------------------------------------------------- profile rows
def _teacher_key(run: Run, task: Any) -> str:
    """The cached teacher a finished run pruned: recorded in its step 0 (runs since studies exist), else the
    teacher in the cache trained on exactly this data (task fingerprint) that existed when the run finished
    (the newest such); ``"unknown"`` when none is left in the cache."""
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
    # a run whose teacher failed the guard (pruned anyway) measured nothing worth learning from: never banked
    runs = [r for r in store.list_runs(kind="prune", status="done", model=model)
            if (strategies is None or r.strategy in strategies) and not r.weak_teacher]
    profiles = store.profiles(model=model)
    profiles = rename_legacy(profiles)  # runs recorded before a rename carry the old column names
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
    out = _newest_per_path(out, {r.id: r.finished_at or 0.0 for r in runs})
    if not out:
        return pd.DataFrame(columns=list(COLUMNS))
    frame = pd.concat(out, ignore_index=True)
    frame = frame[list(COLUMNS) + [c for c in OPTIONAL_COLUMNS if c in frame.columns]].copy()
    for c in INT_COLUMNS:
        frame[c] = frame[c].astype("int64")
    for c in (*SIGNAL_COLUMNS, *ORACLE_COLUMNS):
        frame[c] = frame[c].astype("float64")
    return frame.sort_values(list(KEY_COLUMNS)).reset_index(drop=True)


def _newest_per_path(frames: list[pd.DataFrame], finished: dict[str, float]) -> list[pd.DataFrame]:
    """One run per (model, dataset, data config, seed): the newest finished. A store that holds a path twice (an
    older run kept beside a re-run, e.g. from before a change that made older cells stale) must not bank both."""
    newest: dict[tuple, pd.DataFrame] = {}
    for frame in sorted(frames, key=lambda f: finished.get(str(f["run_id"].iloc[0]), 0.0)):
        first = frame.iloc[0]
        newest[(first["model"], first["dataset"], first["data_config"], int(first["seed"]))] = frame
    return list(newest.values())


def merge_rows(kept: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """A bank grown by ``new`` rows: every (model, dataset, data config, seed) path in ``new`` replaces the same path
    in ``kept``; other paths of ``kept`` stay. Lets a bank be built over several machines or sessions, each
    adding the runs its own store finished."""
    key = ["model", "dataset", "data_config", "seed"]
    kept, new = rename_legacy(kept), rename_legacy(new)
    if kept.empty:
        return new.copy()
    fresh = set(map(tuple, new[key].drop_duplicates().itertuples(index=False)))
    stay = kept[[tuple(k) not in fresh for k in kept[key].itertuples(index=False)]]
    out = pd.concat([stay, new], ignore_index=True)
    out = out[list(COLUMNS) + [c for c in OPTIONAL_COLUMNS if c in out.columns]]
    return out.sort_values(list(KEY_COLUMNS)).reset_index(drop=True)


def write_bank(rows: pd.DataFrame, folder: str | Path | None = None, *, study_file: str | None = None,
               note: str = "", outcomes: pd.DataFrame | None = None, precision: str | None = None
               ) -> BankManifest:
    """Validate ``rows`` (and ``outcomes``, the per-example companion, when given) and write the bank (Parquet +
    manifest) atomically; returns the manifest. Without outcomes, a companion left from an earlier bank is
    removed: the manifest and the files always describe the same bank."""
    rows = rename_legacy(rows)
    validate_rows(rows)
    folder = Path(folder) if folder is not None else bank_dir()
    folder.mkdir(parents=True, exist_ok=True)
    opath = folder / OUTCOMES_FILE
    entry: OutcomesEntry | None = None
    if outcomes is not None and len(outcomes):
        outcomes = validate_outcomes(outcomes, rows)
        with atomic_file(opath) as tmp:
            # sorted by key, dictionary-encoded keys cost about a byte per row; the float columns are split by byte
            # (Parquet's BYTE_STREAM_SPLIT) so zstd finds the exponents' redundancy: ~40 % smaller than the default
            outcomes.to_parquet(tmp, index=False, compression="zstd", compression_level=19,
                                use_dictionary=["run_id", "step", "original_layer", "example", "correct"],
                                use_byte_stream_split=["loss", "kl_to_teacher"])
        steps = outcomes[["run_id", "step", "original_layer"]].drop_duplicates()
        entry = {"file": OUTCOMES_FILE, "rows": int(len(outcomes)), "sha256": file_sha256(opath),
                 "columns": list(OUTCOME_COLUMNS), "layer_steps": int(len(steps)),
                 "steps": int(steps[["run_id", "step"]].drop_duplicates().shape[0]),
                 "bytes": int(opath.stat().st_size),
                 "bytes_per_layer_step": round(opath.stat().st_size / max(len(steps), 1), 1)}
    elif opath.exists():
        opath.unlink()
    ppath = folder / PROFILES_FILE
    with atomic_file(ppath) as tmp:
        rows.to_parquet(tmp, index=False, compression="zstd")
    g = rows.groupby(["model", "dataset"])
    manifest: BankManifest = {
        "format": FORMAT, "version": VERSION, "file": PROFILES_FILE, "rows": int(len(rows)),
        "sha256": file_sha256(ppath), "columns": [str(c) for c in rows.columns],
        "coverage": [{"model": str(m), "dataset": str(d), "seeds": sorted(int(s) for s in f["seed"].unique()),
                      "steps": int(f[["seed", "step"]].drop_duplicates().shape[0]), "rows": int(len(f))}
                     for (m, d), f in g],
        "study": study_file, "note": note,
        # provenance of the measurements: what the runs computed in, and which split rules drew their data
        "precision": precision or "fp32", "split_version": SPLIT_VERSION,
    }
    if entry is not None:
        manifest["outcomes"] = entry
    atomic_write_text(folder / MANIFEST_FILE, json.dumps(manifest, indent=1))
    return manifest
