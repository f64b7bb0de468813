"""The run store: an embedded SQLite database (WAL mode) plus one artifact folder per run.

Tables (:mod:`core.runs.schema`, which also brings an older store up to date)
------
``runs``      one row per run: kind (prune | merge), model, dataset, strategy, status, config, times, pid,
              heartbeat, error, summary, cancel flag, study cell, job.
``events``    the run's event log (stage, step, progress, message, payload) in order: what the live page polls.
``steps``     one row per finished pruning/merging step: what was removed and the measured metrics.
``profiles``  per (run, step, layer): the twelve signals and the oracle; the fusion rankers' training data.
``studies``, ``jobs``  kept by :mod:`core.studies.records` and the job layer (:mod:`core.jobs.queue`).

Artifacts live in ``<store>/runs/<run_id>/`` and are written atomically (temporary file, then
``os.replace``). A run is ``done`` only after all its artifacts are written, so nothing half written is
ever read as complete. A run whose worker died is marked ``interrupted`` as soon as the store is read for it
(:meth:`RunStore.get_run`, :meth:`RunStore.list_runs` and :meth:`RunStore.refresh_liveness` check the
worker's pid, zombies included), and by :meth:`RunStore.recover`, which the runner calls on start. Every
connection is short-lived, so several processes (the UI and its workers) share the database safely.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from core.jsontypes import JSONValue
from core.paths import atomic_file, atomic_write_text, store_dir
from core.runs import artifacts
from core.runs.events import Stage, StoredEvent
from core.runs.liveness import pid_alive
from core.runs.record import ACTIVE, FINAL, Run, RunStatus
from core.runs.schema import migrate

#: ACTIVE in SQL: ``status IN (...)``
_ACTIVE_SQL = "(" + ", ".join(f"'{s}'" for s in ACTIVE) + ")"
HEARTBEAT_TIMEOUT_S = 120.0



def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf become None, numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(_clean(obj), allow_nan=False)


class RunStore:
    """Access to the store at ``root`` (default: :func:`core.paths.store_dir`)."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root else store_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "runs.sqlite"
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            migrate(con)  # a store of any earlier version opens with today's tables and columns

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("PRAGMA busy_timeout=30000")
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def transaction(self) -> Any:
        """A write transaction (``BEGIN IMMEDIATE``) on a short-lived connection, for tables kept by other
        modules (the studies of :mod:`core.studies.records`)."""
        return self._tx()

    def connection(self) -> Any:
        """A short-lived read connection (rows as :class:`sqlite3.Row`)."""
        return self._connect()

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    # ------------------------------------------------------------------ runs
    def create_run(self, *, kind: str, model: str, dataset: str, strategy: str, config: Mapping[str, JSONValue],
                   name: str | None = None, group_id: str | None = None, cell_id: str | None = None) -> str:
        """A new queued run; ``group_id`` is the study (or comparison) it belongs to, ``cell_id`` its study cell."""
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        name = name or f"{strategy} · {model} · {dataset}"
        with self._tx() as con:
            con.execute("INSERT INTO runs (id, kind, name, model, dataset, strategy, group_id, status, config,"
                        " created_at, cell_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (run_id, kind, name, model, dataset, strategy, group_id, "queued", dumps(config),
                         time.time(), cell_id))
        self.run_dir(run_id).mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_dir(run_id) / artifacts.CONFIG, json.dumps(_clean(config), indent=2))
        return run_id

    def mark_running(self, run_id: str, pid: int | None = None) -> None:
        now = time.time()
        with self._tx() as con:
            con.execute("UPDATE runs SET status='running', started_at=?, heartbeat_at=?, pid=? WHERE id=?",
                        (now, now, pid or os.getpid(), run_id))

    def heartbeat(self, run_id: str) -> None:
        with self._tx() as con:
            con.execute("UPDATE runs SET heartbeat_at=? WHERE id=?", (time.time(), run_id))

    def finish(self, run_id: str, status: str, *, error: str | None = None,
               summary: Mapping[str, JSONValue] | None = None) -> None:
        if status not in FINAL:
            raise ValueError(f"status must be one of {FINAL}, got {status!r}")
        with self._tx() as con:
            con.execute("UPDATE runs SET status=?, finished_at=?, error=?, summary=COALESCE(?, summary) "
                        "WHERE id=?", (status, time.time(), error, dumps(summary) if summary else None, run_id))

    def request_cancel(self, run_id: str) -> None:
        """Ask the worker to stop (it checks after every event); a queued run, or one whose worker is gone,
        ends as cancelled at once."""
        with self._tx() as con:
            con.execute("UPDATE runs SET cancel_requested=1 WHERE id=?", (run_id,))
            con.execute("UPDATE runs SET status='cancelled', finished_at=? WHERE id=? AND status='queued'",
                        (time.time(), run_id))
        run = self.get_run(run_id, check=False)
        if run is not None and run.status == RunStatus.RUNNING and not pid_alive(run.pid):
            self.add_event(run_id, Stage.CANCELLED, message="Cancelled by the user (its worker had already stopped)")
            self.finish(run_id, "cancelled", error="The worker had stopped before the cancel.")

    def update_summary(self, run_id: str, fields: Mapping[str, JSONValue]) -> None:
        """Merge ``fields`` into the run's summary (e.g. a flag known before the run finishes)."""
        with self._tx() as con:
            row = con.execute("SELECT summary FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                return
            merged = {**(json.loads(row[0]) if row[0] else {}), **fields}
            con.execute("UPDATE runs SET summary=? WHERE id=?", (dumps(merged), run_id))

    def cancel_requested(self, run_id: str) -> bool:
        with self._connect() as con:
            row = con.execute("SELECT cancel_requested FROM runs WHERE id=?", (run_id,)).fetchone()
        return bool(row and row[0])

    def get_run(self, run_id: str, check: bool = True) -> Run | None:
        """The run, or None. An active run whose worker is gone is first marked interrupted (``check``)."""
        with self._connect() as con:
            row = con.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        run = Run.from_dict(row) if row else None
        if check and run is not None and self._interrupt_dead([run]):
            return self.get_run(run_id, check=False)
        return run

    def list_runs(self, *, kind: str | None = None, status: str | None = None, model: str | None = None,
                  dataset: str | None = None) -> list[Run]:
        clauses, args = [], []
        for col, val in (("kind", kind), ("status", status), ("model", model), ("dataset", dataset)):
            if val is not None:
                clauses.append(f"{col}=?")
                args.append(val)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        with self._connect() as con:
            rows = con.execute(f"SELECT * FROM runs {where} ORDER BY created_at DESC", args).fetchall()
        runs = [Run.from_dict(r) for r in rows]
        if self._interrupt_dead(runs):  # statuses changed: read again (the filter may no longer match)
            return self.list_runs(kind=kind, status=status, model=model, dataset=dataset)
        return runs

    def runs_frame(self, **filters: Any) -> pd.DataFrame:
        runs = self.list_runs(**filters)
        cols = ["id", "kind", "name", "model", "dataset", "strategy", "group_id", "status", "created_at",
                "started_at", "finished_at", "error"]
        frame = pd.DataFrame([{**{c: getattr(r, c) for c in cols}, "status": str(r.status),
                               "weak_teacher": r.weak_teacher} for r in runs], columns=[*cols, "weak_teacher"])
        return frame

    def delete_run(self, run_id: str) -> None:
        run = self.get_run(run_id)
        if run and run.active and pid_alive(run.pid):
            raise RuntimeError(f"run {run_id} is still running: cancel it first")
        with self._tx() as con:
            con.execute("DELETE FROM runs WHERE id=?", (run_id,))
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    # ------------------------------------------------------------------ liveness
    def assign_worker(self, run_ids: list[str], pid: int) -> None:
        """Record the worker process that will run these queued runs (so its death is noticed at once)."""
        with self._tx() as con:
            con.executemany("UPDATE runs SET pid=? WHERE id=? AND status='queued' AND pid IS NULL",
                            [(pid, run_id) for run_id in run_ids])

    def interrupt(self, run_id: str, reason: str) -> None:
        """End an active run as ``interrupted``: ``reason`` plus the last stage it reached (its last event)."""
        last = self.last_event(run_id)
        where = f" It had reached: {last.message or last.stage}." if last else " It had not started yet."
        with self._tx() as con:
            changed = con.execute("UPDATE runs SET status='interrupted', finished_at=?, error=? WHERE id=? AND "
                                  f"status IN {_ACTIVE_SQL}", (time.time(), reason + where, run_id)).rowcount
        if changed:
            self.add_event(run_id, Stage.INTERRUPTED, step=last.step if last else None, message=reason + where,
                           payload={"reason": reason, "last_stage": last.stage if last else None,
                                    "last_message": last.message if last else None})

    def _interrupt_dead(self, runs: list[Run]) -> list[str]:
        """Interrupt the active runs among ``runs`` whose recorded worker process is gone (a pid check and a
        zombie check: no waiting for a heartbeat). Runs not yet claimed by a worker (no pid) are left alone."""
        dead = [r.id for r in runs if r.active and r.pid and not pid_alive(r.pid)]
        for run_id in dead:
            self.interrupt(run_id, "The worker process stopped before the run finished (killed, or it crashed).")
        return dead

    def refresh_liveness(self) -> list[str]:
        """Interrupt every active run whose worker is gone; returns their ids. Cheap: call it on every poll."""
        with self._connect() as con:
            rows = con.execute(f"SELECT * FROM runs WHERE status IN {_ACTIVE_SQL}").fetchall()
        return self._interrupt_dead([Run.from_dict(r) for r in rows])

    def recover(self) -> list[str]:
        """At start-up: mark runs whose worker died as ``interrupted`` (also unclaimed queued runs older than
        :data:`HEARTBEAT_TIMEOUT_S` that no job holds, and runs silent for ten times that); returns their ids."""
        now = time.time()
        lost = self.refresh_liveness()
        with self._connect() as con:
            rows = con.execute(f"SELECT * FROM runs WHERE status IN {_ACTIVE_SQL}").fetchall()
        for run in map(Run.from_dict, rows):
            if run.job_id is not None and run.pid is None:
                continue  # waiting in the job queue: the job layer's liveness rule decides (core.jobs.schedule)
            if run.status == RunStatus.QUEUED and run.pid is None and now - run.created_at < HEARTBEAT_TIMEOUT_S:
                continue  # just created, its worker is starting
            stale = run.heartbeat_at is not None and now - run.heartbeat_at > HEARTBEAT_TIMEOUT_S * 10
            if not pid_alive(run.pid) or stale:
                self.interrupt(run.id, "The worker stopped before the run finished (process killed or app "
                                          "restarted).")
                lost.append(run.id)
        return lost

    # ------------------------------------------------------------------ events
    def add_event(self, run_id: str, stage: str, *, step: int | None = None, progress: float | None = None,
                  message: str = "", payload: Mapping[str, JSONValue] | None = None) -> int:
        now = time.time()
        with self._tx() as con:
            seq = con.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM events WHERE run_id=?",
                              (run_id,)).fetchone()[0]
            con.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?)",
                        (run_id, seq, now, stage, step, progress, message, dumps(payload) if payload else None))
            con.execute("UPDATE runs SET heartbeat_at=? WHERE id=?", (now, run_id))
        return seq

    def events(self, run_id: str, after: int = -1) -> list[StoredEvent]:
        with self._connect() as con:
            rows = con.execute("SELECT * FROM events WHERE run_id=? AND seq>? ORDER BY seq",
                               (run_id, after)).fetchall()
        return [StoredEvent.from_row(dict(r)) for r in rows]

    def last_event(self, run_id: str) -> StoredEvent | None:
        with self._connect() as con:
            row = con.execute("SELECT * FROM events WHERE run_id=? ORDER BY seq DESC LIMIT 1",
                              (run_id,)).fetchone()
        return StoredEvent.from_row(dict(row)) if row else None

    # ------------------------------------------------------------------ steps and profiles
    def add_step(self, run_id: str, step: int, data: Mapping[str, JSONValue]) -> None:
        with self._tx() as con:
            con.execute("INSERT OR REPLACE INTO steps VALUES (?,?,?)", (run_id, step, dumps(data)))

    def steps(self, run_id: str) -> pd.DataFrame:
        with self._connect() as con:
            rows = con.execute("SELECT step, data FROM steps WHERE run_id=? ORDER BY step", (run_id,)).fetchall()
        return pd.DataFrame([{"step": r["step"], **json.loads(r["data"])} for r in rows])

    def all_steps(self, run_ids: list[str] | None = None) -> pd.DataFrame:
        with self._connect() as con:
            rows = con.execute("SELECT run_id, step, data FROM steps ORDER BY run_id, step").fetchall()
        frame = pd.DataFrame([{"run_id": r["run_id"], "step": r["step"], **json.loads(r["data"])} for r in rows])
        if run_ids is not None and not frame.empty:
            frame = frame[frame["run_id"].isin(run_ids)]
        return frame

    def add_profile(self, run_id: str, step: int, model: str, dataset: str, rows: pd.DataFrame) -> None:
        records = rows.to_dict(orient="records")
        with self._tx() as con:
            con.execute("INSERT OR REPLACE INTO profiles VALUES (?,?,?,?,?)",
                        (run_id, step, model, dataset, dumps(records)))

    def profiles(self, model: str | None = None) -> pd.DataFrame:
        """All stored (run, step, layer) profile rows, optionally for one model; only from finished steps."""
        with self._connect() as con:
            if model is None:
                rows = con.execute("SELECT * FROM profiles").fetchall()
            else:
                rows = con.execute("SELECT * FROM profiles WHERE model=?", (model,)).fetchall()
        records = []
        for r in rows:
            for rec in json.loads(r["rows"]):
                records.append({**rec, "run_id": r["run_id"], "step": r["step"], "model": r["model"],
                                "dataset": r["dataset"]})
        return pd.DataFrame(records)

    # ------------------------------------------------------------------ artifacts
    def write_json(self, run_id: str, relpath: str, obj: Any) -> Path:
        path = self.run_dir(run_id) / relpath
        atomic_write_text(path, json.dumps(_clean(obj), indent=1, allow_nan=False))
        return path

    def read_json(self, run_id: str, relpath: str) -> Any | None:
        path = self.run_dir(run_id) / relpath
        if not path.exists():
            return None
        return json.loads(path.read_text())

    def write_table(self, run_id: str, relpath: str, frame: pd.DataFrame) -> Path:
        """A table artifact: CSV, or Parquet when ``relpath`` ends in ``.parquet`` (per-example outcomes)."""
        path = self.run_dir(run_id) / relpath
        with atomic_file(path) as tmp:
            if path.suffix == ".parquet":
                frame.to_parquet(tmp, index=False)
            else:
                frame.to_csv(tmp, index=False)
        return path

    def read_table(self, run_id: str, relpath: str) -> pd.DataFrame | None:
        path = self.run_dir(run_id) / relpath
        if not path.exists():
            return None
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)

    def write_outcomes(self, run_id: str, step: int, evaluation: str, frame: pd.DataFrame) -> Path:
        """Per-example outcomes of one evaluation (``artifacts.TEST_OUTCOMES``, ...) at ``step``."""
        return self.write_table(run_id, artifacts.step_outcomes(step, evaluation), frame)

    def read_outcomes(self, run_id: str, step: int, evaluation: str) -> pd.DataFrame | None:
        """Per-example outcomes written by :meth:`write_outcomes` (or recorded from an event), or None."""
        return self.read_table(run_id, artifacts.step_outcomes(step, evaluation))

    def outcome_evaluations(self, run_id: str) -> dict[int, list[str]]:
        """Which per-example outcomes a run holds: step -> evaluation names, ascending."""
        folder = self.run_dir(run_id) / artifacts.STEPS_DIR
        found: dict[int, list[str]] = {}
        for path in sorted(folder.glob(f"*/{artifacts.OUTCOMES_DIR}/*.parquet")):
            step = path.parent.parent.name
            if step.isdigit():
                found.setdefault(int(step), []).append(path.stem)
        return dict(sorted(found.items()))
