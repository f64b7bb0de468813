"""The run store's tables and how an older store is brought up to them (:class:`core.runs.store.RunStore` applies
both whenever it opens a store).

``runs``      one row per run: kind (prune | merge), model, dataset, strategy, status, config, times, pid, heartbeat,
              error, summary, cancel flag; ``cell_id`` (its study cell) and ``job_id`` (the job that runs it) came
              later and are added to an older store by :func:`migrate`.
``events``    the run's event log (stage, step, progress, message, payload) in order: what the live page polls.
``steps``     one row per finished pruning/merging step: what was removed and the measured metrics.
``profiles``  per (run, step, layer): the twelve signals and the oracle; the fusion rankers' training data.
``studies``   one row per study (:mod:`core.studies.records`).
``jobs``      one row per job of any kind (prune, merge, study, deploy check): its status (queued, running, then how
              it ended), its worker's pid and heartbeat, what it works on (``targets``: run or study ids, JSON) and
              the worker's arguments (``args``, JSON), the model and the number of units (runs, cells) its duration
              is estimated from. The job layer (:mod:`core.jobs.queue`) reads and writes it; this package only
              creates it, so a store written by any version opens with every table.
"""

from __future__ import annotations

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    model TEXT NOT NULL,
    dataset TEXT NOT NULL,
    strategy TEXT NOT NULL,
    group_id TEXT,
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    heartbeat_at REAL,
    pid INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    stage TEXT NOT NULL,
    step INTEGER,
    progress REAL,
    message TEXT,
    payload TEXT,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS profiles (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    model TEXT NOT NULL,
    dataset TEXT NOT NULL,
    rows TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
CREATE TABLE IF NOT EXISTS studies (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    status TEXT NOT NULL,
    executor TEXT,
    pid INTEGER,
    created_at REAL NOT NULL,
    finished_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    targets TEXT NOT NULL,
    args TEXT NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    units INTEGER NOT NULL DEFAULT 1,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    heartbeat_at REAL,
    pid INTEGER,
    error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, created_at);
"""


#: columns added to a table after its first version: (table, column, SQL type)
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (("runs", "cell_id", "TEXT"), ("runs", "job_id", "TEXT"))


def migrate(con: sqlite3.Connection) -> None:
    """Create the tables a store lacks and add the columns an older store's tables lack (existing rows read the
    new columns as NULL); idempotent."""
    con.executescript(SCHEMA)
    for table, column, kind in ADDED_COLUMNS:
        if column not in {r[1] for r in con.execute(f"PRAGMA table_info({table})")}:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    con.execute("CREATE INDEX IF NOT EXISTS runs_cell ON runs(cell_id)")
    con.execute("CREATE INDEX IF NOT EXISTS runs_job ON runs(job_id)")
