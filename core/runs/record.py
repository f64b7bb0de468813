"""The typed records the run store hands out: a :class:`Run` (one row of the ``runs`` table) with its
:class:`RunStatus`, and the two summaries a finished run leaves (:class:`PruneSummary`, :class:`MergeSummary`)
with the figures the pages show, each decoded once here.

Stored runs of every earlier version still open: :meth:`Run.from_dict` ignores keys it does not know, fills the
ones an older store lacks (``cell_id`` came with studies) and reads old status words through
:data:`STATUS_ALIASES`; a summary keeps its raw dict and reads missing figures as ``None``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, Self


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


def _accuracy(block: Any) -> float | None:
    value = block.get("test_accuracy") if isinstance(block, Mapping) else None
    return None if value is None else float(value)


@dataclass(frozen=True)
class RunSummary:
    """What a finished run reported (``summary.json``), read through the figures the pages show; ``raw`` is the
    summary as stored. Both kinds of run report these; :class:`PruneSummary` and :class:`MergeSummary` add
    their own."""

    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, summary: Mapping[str, Any] | None) -> Self:
        return cls(dict(summary or {}))

    @property
    def teacher_accuracy(self) -> float | None:
        return _accuracy(self.raw.get("teacher"))

    @property
    def before_kd_accuracy(self) -> float | None:
        """Test accuracy of the compressed model after fine-tuning, before distillation."""
        return _accuracy(self.raw.get("before_kd"))

    @property
    def after_kd_accuracy(self) -> float | None:
        return _accuracy(self.raw.get("after_kd"))

    @property
    def final_accuracy(self) -> float | None:
        """Test accuracy of the model the run ends with: after distillation when it ran, else before."""
        after = self.after_kd_accuracy
        return after if after is not None else self.before_kd_accuracy

    @property
    def weak_teacher(self) -> bool:
        return bool(self.raw.get("weak_teacher"))

    @property
    def timings(self) -> dict[str, float]:
        return dict(self.raw.get("timings_s") or {})

    @property
    def total_seconds(self) -> float | None:
        value = self.timings.get("total")
        return float(value) if isinstance(value, (int, float)) and value > 0 else None


@dataclass(frozen=True)
class PruneSummary(RunSummary):
    """A pruning run's summary."""

    @property
    def after_kd_metrics(self) -> dict[str, Any]:
        """Every score of the distilled model (empty without distillation)."""
        return dict(self.raw.get("after_kd_metrics") or {})

    @property
    def removed_order(self) -> list[int]:
        return list(self.raw.get("removed_order") or [])

    @property
    def final_layers(self) -> int | None:
        value = self.raw.get("final_layers")
        return None if value is None else int(value)

    @property
    def strategies_in_tree(self) -> int:
        """How many strategies shared this run's tree walk (and its clock); 1 for a run on its own."""
        return max(int((self.raw.get("shared") or {}).get("strategies_in_tree") or 1), 1)


@dataclass(frozen=True)
class PruningSide:
    """A merge run's comparison: the same budget spent on removing whole layers (greedy oracle)."""

    raw: dict[str, Any]

    @property
    def final(self) -> dict[str, Any]:
        """The pruned model's scores after the same recovery as the merged one (distilled, else fine-tuned)."""
        return dict(self.raw.get("distilled") or self.raw.get("finetuned") or {})

    @property
    def final_accuracy(self) -> float | None:
        return _accuracy(self.final)

    @property
    def depth(self) -> int:
        return int(self.raw.get("depth") or 0)

    @property
    def removed_layers(self) -> list[int]:
        return list(self.raw.get("removed_layers") or [])

    @property
    def latency_ms(self) -> float | None:
        value = self.final.get("latency_ms", self.raw.get("latency_ms"))
        return None if value is None else float(value)


@dataclass(frozen=True)
class MergeSummary(RunSummary):
    """A merge run's summary."""

    @property
    def teacher(self) -> dict[str, Any]:
        return dict(self.raw.get("teacher") or {})

    @property
    def final(self) -> dict[str, Any]:
        """The merged model's scores after recovery (distilled when it ran, else fine-tuned)."""
        return dict(self.raw.get("final") or {})

    @property
    def final_accuracy(self) -> float | None:
        return _accuracy(self.raw.get("final")) if self.raw.get("final") else super().final_accuracy

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.raw.get("params") or {})

    @property
    def window_label(self) -> str:
        return str(self.raw.get("window_label") or "")

    @property
    def pruning(self) -> PruningSide | None:
        """The pruning side at the same budget, when the run compared one."""
        side = self.raw.get("pruning")
        return PruningSide(dict(side)) if side else None


def summary_of(kind: str, summary: Mapping[str, Any] | None) -> PruneSummary | MergeSummary:
    """The typed summary of a run of ``kind`` (``merge``, else a pruning run's)."""
    return MergeSummary.of(summary) if kind == "merge" else PruneSummary.of(summary)
