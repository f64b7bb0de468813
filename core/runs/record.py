"""The typed records the run store hands out: a :class:`Run` (one row of the ``runs`` table) with its
:class:`RunStatus`; what a run produces (its step rows and its summary, :class:`StepRow`, :class:`PruneSummary`,
:class:`MergeSummary`) is :mod:`core.runs.results`, re-exported here.

Stored runs of every earlier version still open: :meth:`Run.from_dict` ignores keys it does not know, fills the
ones an older store lacks (``cell_id`` came with studies) and reads old status words through
:data:`STATUS_ALIASES`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from core.runs.results import (
    MergeSummary,
    OracleMark,
    PruneSummary,
    PruningSide,
    RankerMark,
    RunSummary,
    StepRow,
    TeacherOrigin,
    summary_of,
)

__all__ = ["ACTIVE", "FINAL", "STATUS_ALIASES", "MergeSummary", "OracleMark", "PruneSummary", "PruningSide",
           "RankerMark", "Run", "RunStatus", "RunSummary", "StepRow", "TeacherOrigin", "parse_status", "summary_of"]


class RunStatus(StrEnum):
    """Where a run (or any job: :mod:`core.jobs.record`) stands. A member equals its string, so rows read back
    from SQLite compare as before (``RunStatus.DONE == "done"``)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # a run stopped by the weak-teacher guard ends failed, with a ``weak_teacher`` event
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def active(self) -> bool:
        return self in ACTIVE


#: still to finish: a worker owns it (or will)
ACTIVE: tuple[RunStatus, ...] = (RunStatus.QUEUED, RunStatus.RUNNING)
#: how a run can end
FINAL: tuple[RunStatus, ...] = (RunStatus.DONE, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED)

#: status words written by earlier versions (the deploy job's file said ``starting`` and reported ``died``)
STATUS_ALIASES: dict[str, RunStatus] = {"starting": RunStatus.QUEUED, "died": RunStatus.INTERRUPTED}


def parse_status(value: Any) -> RunStatus:
    """A stored status word as a :class:`RunStatus`; an old word through :data:`STATUS_ALIASES`."""
    text = str(value)
    if text in STATUS_ALIASES:
        return STATUS_ALIASES[text]
    try:
        return RunStatus(text)
    except ValueError:
        raise ValueError(f"status must be one of {[s.value for s in RunStatus]}, got {value!r}") from None


def _json(value: Any) -> dict[str, Any]:
    """A JSON column (text, an already decoded dict, or NULL) as a dict."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        value = json.loads(value)
    return dict(value) if isinstance(value, Mapping) else {}


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class Run:
    """One run in the store. ``config`` is the run's validated configuration and ``summary`` what its ``done``
    event reported (empty until then), both as stored (JSON objects)."""

    id: str
    kind: str
    name: str
    model: str
    dataset: str
    strategy: str
    status: RunStatus
    created_at: float
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    group_id: str | None = None
    cell_id: str | None = None
    #: the job (a row of the store's jobs table) that runs it; None for runs recorded before the job queue
    job_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    heartbeat_at: float | None = None
    pid: int | None = None
    cancel_requested: bool = False
    error: str | None = None
    #: shipped with the app in the recorded pack (:mod:`core.runs.pack`): read-only, never the user's own
    recorded: bool = False

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> Run:
        """A run from a row of the ``runs`` table (``sqlite3.Row`` or dict) or a dict of an earlier version:
        JSON columns may be text or decoded, unknown keys are ignored, keys an older store lacks take their
        defaults."""
        d = dict(row)
        missing = [k for k in ("id", "kind", "model", "dataset", "status") if d.get(k) is None]
        if missing:
            raise ValueError(f"Run.from_dict: a stored run needs {missing} (got keys {sorted(d)})")
        kind = str(d["kind"])
        strategy = d.get("strategy") or kind
        return cls(id=str(d["id"]), kind=kind, model=str(d["model"]), dataset=str(d["dataset"]),
                   name=d.get("name") or f"{strategy} · {d['model']} · {d['dataset']}", strategy=str(strategy),
                   status=parse_status(d["status"]), created_at=float(d.get("created_at") or 0.0),
                   config=_json(d.get("config")), summary=_json(d.get("summary")), group_id=d.get("group_id"),
                   cell_id=d.get("cell_id"), job_id=d.get("job_id"), started_at=_float(d.get("started_at")),
                   finished_at=_float(d.get("finished_at")), heartbeat_at=_float(d.get("heartbeat_at")),
                   pid=None if d.get("pid") is None else int(d["pid"]),
                   cancel_requested=bool(d.get("cancel_requested")), error=d.get("error"),
                   recorded=bool(d.get("recorded")))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the status as its string)."""
        return {f.name: (str(v) if isinstance(v := getattr(self, f.name), RunStatus) else v) for f in fields(self)}

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def seconds(self) -> float | None:
        """Wall time from start to finish, when both are known."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def weak_teacher(self) -> bool:
        """Pruned although its teacher failed the guard ("prune anyway")."""
        return bool(self.summary.get("weak_teacher"))
