"""A waiting job's place in the queue and an estimate of when it starts, from the store's own durations: the
median time per unit (run, cell) of the jobs of the same kind and model that finished as done, times the units of
each job ahead, played out over the slots first come, first served. No finished job of a kind and model that is
running or ahead means no estimate yet, and :attr:`Place.text` says so and why."""

from __future__ import annotations

import heapq
import math
import statistics
import time
from dataclasses import dataclass

from core.jobs.kinds import JobKind
from core.jobs.queue import JobRow, active_jobs, finished_jobs
from core.jobs.slots import max_jobs
from core.runs.store import RunStore

_NOUNS = {JobKind.PRUNE: "pruning run", JobKind.MERGE: "merging run", JobKind.STUDY: "study",
          JobKind.DEPLOY: "deploy check"}


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def minutes_text(seconds: float) -> str:
    if seconds < 60:
        return "under a minute"
    if seconds < 3600:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


@dataclass(frozen=True)
class Place:
    """Where a waiting job stands: ``position`` 1 starts next; ``starts_in_s`` is None without an estimate, and
    ``unknown`` then names the kind and model that no finished job of this store has timed yet."""

    job_id: str
    position: int
    waiting: int
    running: int
    slots: int
    starts_in_s: float | None
    unknown: str = ""

    @property
    def when(self) -> str:
        """``starts in about 6 min``, ``starting…`` or ``no estimate yet``."""
        if self.starts_in_s is None:
            return "no estimate yet"
        if self.starts_in_s <= 0 and self.running < self.slots:
            return "starting…"
        return f"starts in {minutes_text(self.starts_in_s)}"

    @property
    def short(self) -> str:
        """``2nd in line · starts in about 6 min`` (a table cell)."""
        return f"{ordinal(self.position)} in line · {self.when}"

    @property
    def text(self) -> str:
        """``Queued: 2nd in line (1 job running, 1 slot) · starts in about 6 min``, or ``... · no estimate yet``
        and why."""
        jobs = "job" if self.running == 1 else "jobs"
        slots = "slot" if self.slots == 1 else "slots"
        why = f": no {self.unknown} has finished in this store yet" if self.starts_in_s is None and self.unknown else ""
        return (f"Queued: {ordinal(self.position)} in line ({self.running} {jobs} running, {self.slots} {slots}) · "
                f"{self.when}{why}")


class Durations:
    """Expected seconds of a job from the store's finished jobs of its kind and model (read once per pair)."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self._per_unit: dict[tuple[JobKind, str], float | None] = {}

    def per_unit(self, kind: JobKind, model: str) -> float | None:
        key = (kind, model)
        if key not in self._per_unit:
            times = [s / job.units for job in finished_jobs(self.store, kind, model) if (s := job.seconds)]
            self._per_unit[key] = statistics.median(times) if times else None
        return self._per_unit[key]

    def expected(self, job: JobRow) -> float | None:
        unit = self.per_unit(job.kind, job.model)
        return None if unit is None else unit * job.units


def _what(job: JobRow) -> str:
    return f"{_NOUNS[job.kind]} of {job.model}" if job.model else _NOUNS[job.kind]


def queue(store: RunStore, now: float | None = None) -> list[Place]:
    """Every waiting job's place, in the order they start."""
    now = time.time() if now is None else now
    jobs = active_jobs(store)
    running = [j for j in jobs if j.running]
    waiting = [j for j in jobs if j.waiting]
    slots = max_jobs()
    durations = Durations(store)
    free: list[float] = []  # when each running job (then each started one) frees its slot, seconds from now
    unknown = ""
    for job in running:
        expected = durations.expected(job)
        if expected is None:
            unknown = unknown or _what(job)
        free.append(math.inf if expected is None else max(0.0, expected - (now - (job.started_at or now))))
    heapq.heapify(free)
    places, last = [], 0.0
    for i, job in enumerate(waiting):
        while len(free) >= slots:
            last = max(last, heapq.heappop(free))
        places.append(Place(job.id, i + 1, len(waiting), len(running), slots,
                            None if math.isinf(last) else last, unknown if math.isinf(last) else ""))
        expected = durations.expected(job)
        if expected is None:
            unknown = unknown or _what(job)
        heapq.heappush(free, last + (math.inf if expected is None else expected))
    return places


def place(store: RunStore, job_id: str) -> Place | None:
    """The waiting job's place, or None when it is not waiting (running, ended, unknown)."""
    return next((p for p in queue(store) if p.job_id == job_id), None)


def batch_text(job: JobRow, run_id: str) -> str | None:
    """For a run that waits inside a job already running (runs started together share one worker, which runs
    them one after another): ``Queued: 3rd of the 3 runs started together; their worker runs them in turn (2
    before this one)``. None when the run is not a later target of a running job."""
    if not job.running or run_id not in job.targets or len(job.targets) < 2:
        return None
    k = job.targets.index(run_id)
    if k == 0:
        return None
    return (f"Queued: {ordinal(k + 1)} of the {len(job.targets)} runs started together; their worker runs them in "
            f"turn ({k} before this one)")

