"""Studies in the run store: the ``studies`` table, each study's fixed profile snapshot, and its cells' status.

A study's runs are ordinary runs (``kind = prune``) with ``group_id`` = the study id and ``cell_id`` = the cell's
hash, so every page shows them like any other run. A cell is *done* when some run in the store with its
``cell_id`` finished (``status = done``), in this study or any other: identical cells are never redone.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from core.paths import atomic_file
from core.runs.record import FINAL
from core.runs.store import RunStore, dumps
from core.studies.config import Cell, StudyConfig

SNAPSHOT_FILE = "profiles.parquet"


def snapshot_digest(profiles: pd.DataFrame) -> str:
    """A content hash of a profile snapshot (row order and column order do not matter)."""
    if profiles.empty:
        return "empty"
    frame = profiles.reindex(sorted(profiles.columns), axis=1)
    keys = [c for c in ("source", "model", "dataset", "run_id", "step", "original_layer") if c in frame.columns]
    frame = frame.sort_values(keys).reset_index(drop=True)
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Study:
    id: str
    name: str
    config: StudyConfig
    snapshot: str
    status: str
    executor: str | None
    pid: int | None
    created_at: float
    finished_at: float | None
    cancel_requested: bool
    error: str | None

    def cells(self) -> list[Cell]:
        return self.config.cells(self.snapshot)


def study_dir(store: RunStore, study_id: str) -> Path:
    return store.root / "studies" / study_id


def create_study(store: RunStore, cfg: StudyConfig, profiles: pd.DataFrame) -> Study:
    """Record a new study and fix its profile snapshot (``profiles``: the rows fusion cells will train on)."""
    study_id = time.strftime("%Y%m%d-%H%M%S") + "-s" + uuid.uuid4().hex[:5]
    digest = snapshot_digest(profiles)
    folder = study_dir(store, study_id)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_file(folder / SNAPSHOT_FILE) as tmp:
        profiles.to_parquet(tmp, index=False)
    with store.transaction() as con:
        con.execute("INSERT INTO studies (id, name, config, snapshot, status, created_at) VALUES (?,?,?,?,?,?)",
                    (study_id, cfg.name, dumps(cfg.to_dict()), digest, "queued", time.time()))
    return get_study(store, study_id)


def load_snapshot(store: RunStore, study: Study) -> pd.DataFrame:
    path = study_dir(store, study.id) / SNAPSHOT_FILE
    if not path.exists():
        raise FileNotFoundError(f"study {study.id}: its profile snapshot {path} is missing")
    frame = pd.read_parquet(path)
    if snapshot_digest(frame) != study.snapshot:
        raise ValueError(f"study {study.id}: the profile snapshot {path} does not match its recorded digest "
                         f"{study.snapshot}; it was changed after the study started")
    return frame


def _study(row: Any) -> Study:
    d = dict(row)
    return Study(id=d["id"], name=d["name"], config=StudyConfig.from_dict(json.loads(d["config"])),
                 snapshot=d["snapshot"], status=d["status"], executor=d["executor"], pid=d["pid"],
                 created_at=d["created_at"], finished_at=d["finished_at"],
                 cancel_requested=bool(d["cancel_requested"]), error=d["error"])


def get_study(store: RunStore, study_id: str) -> Study:
    with store.connection() as con:
        row = con.execute("SELECT * FROM studies WHERE id=?", (study_id,)).fetchone()
    if row is None:
        raise KeyError(f"no study {study_id!r} in {store.root}")
    return _study(row)


def list_studies(store: RunStore) -> list[Study]:
    with store.connection() as con:
        rows = con.execute("SELECT * FROM studies ORDER BY created_at DESC").fetchall()
    return [_study(r) for r in rows]


def set_status(store: RunStore, study_id: str, status: str, *, executor: str | None = None, error: str | None = None,
               pid: int | None = None) -> None:
    final = status in FINAL
    with store.transaction() as con:
        con.execute("UPDATE studies SET status=?, executor=COALESCE(?, executor), error=?, pid=COALESCE(?, pid), "
                    "finished_at=? WHERE id=?",
                    (status, executor, error, pid, time.time() if final else None, study_id))


def claim(store: RunStore, study_id: str, pid: int) -> None:
    """Record that the worker ``pid`` was started for the study: it is queued again (a resumed study included)
    until that worker marks it running. Nothing changes if the worker has already written its pid."""
    with store.transaction() as con:
        con.execute("UPDATE studies SET status='queued', pid=?, error=NULL, finished_at=NULL WHERE id=? AND "
                    "COALESCE(pid, -1) != ?", (pid, study_id, pid))


def request_cancel(store: RunStore, study_id: str) -> None:
    """Ask a running study to stop; its running cells are cancelled within one training batch."""
    with store.transaction() as con:
        con.execute("UPDATE studies SET cancel_requested=1 WHERE id=?", (study_id,))
        con.execute("UPDATE studies SET status='cancelled', finished_at=? WHERE id=? AND status='queued'",
                    (time.time(), study_id))


def clear_cancel(store: RunStore, study_id: str) -> None:
    with store.transaction() as con:
        con.execute("UPDATE studies SET cancel_requested=0 WHERE id=?", (study_id,))


def cancel_requested(store: RunStore, study_id: str) -> bool:
    with store.connection() as con:
        row = con.execute("SELECT cancel_requested FROM studies WHERE id=?", (study_id,)).fetchone()
    return bool(row and row[0])


def done_cells(store: RunStore, cell_ids: list[str]) -> dict[str, str]:
    """cell id -> id of a finished run of that cell (the newest), for the cells that have one."""
    if not cell_ids:
        return {}
    out: dict[str, str] = {}
    with store.connection() as con:
        for i in range(0, len(cell_ids), 500):
            chunk = cell_ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            rows = con.execute(f"SELECT cell_id, id FROM runs WHERE status='done' AND cell_id IN ({marks}) "
                               "ORDER BY created_at", chunk).fetchall()
            out.update({r["cell_id"]: r["id"] for r in rows})
    return out


def cell_table(store: RunStore, study: Study) -> pd.DataFrame:
    """One row per cell: strategy, model, dataset, seed, status (done / running / waiting / failed ...), run id,
    the current step and message of a running cell."""
    cells = study.cells()
    ids = [c.cell_id for c in cells]
    latest: dict[str, sqlite3.Row] = {}
    with store.connection() as con:
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for r in con.execute(f"SELECT id, cell_id, status, finished_at FROM runs WHERE cell_id IN ({marks}) "
                                 "ORDER BY created_at", chunk).fetchall():
                prev = latest.get(r["cell_id"])
                if prev is None or prev["status"] != "done":
                    latest[r["cell_id"]] = r
    rows = []
    for c in cells:
        run = latest.get(c.cell_id)
        status = run["status"] if run else "waiting"
        if status == "queued":
            status = "waiting"
        row = {"cell_id": c.cell_id, "strategy": c.cfg.strategy, "model": c.cfg.model, "dataset": c.cfg.dataset,
               "seed": c.cfg.seed, "status": status, "run_id": run["id"] if run else None, "step": None, "message": ""}
        if run and status == "running":
            ev = store.last_event(run["id"])
            if ev:
                row["step"], row["message"] = ev.step, ev.message
        rows.append(row)
    return pd.DataFrame(rows)
