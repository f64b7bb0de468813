"""Runs submitted from the app: :class:`Runner` records them and puts one job per submission in the store's queue
(:mod:`core.jobs.schedule`): it starts at once when a slot is free, else it waits as queued. Several runs of one
submission share a worker and run one after another, so they share the cached teacher and do not fight over the
CPU cores. The UI keeps only run ids: any page, tab or reload re-attaches by reading the store."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from core.jobs import schedule
from core.jobs.cancel import cancel_run
from core.jobs.kinds import RUN_KINDS, job_kind
from core.jsontypes import JSONValue
from core.runs.record import RunStatus
from core.runs.store import RunStore


class Runner:
    """Submits runs to the job queue and watches the workers this process started. Safe to share (e.g. in
    ``st.cache_resource``); several runners (several app sessions, several servers) over one store share its one
    queue."""

    def __init__(self, store_root: Path | str | None = None) -> None:
        self.store = RunStore(store_root)
        self.store.recover()
        schedule.tick(self.store)  # after a restart: dead workers free their slots, waiting jobs take them

    def submit(self, kind: str, configs: Sequence[Mapping[str, JSONValue]], *, group_id: str | None = None,
               strategy: str | None = None) -> list[str]:
        """Create one run per config and queue one job that runs them in order. A run's strategy is the config's
        own ``strategy`` (pruning), else ``strategy`` (e.g. ``merge-accuracy``), else ``kind``."""
        run_kind = job_kind(kind)
        if run_kind not in RUN_KINDS:
            raise ValueError(f"Runner.submit: kind must be one of {[k.value for k in RUN_KINDS]}, got {kind!r}")
        if not configs:
            raise ValueError("Runner.submit: configs must hold at least one run's configuration, got []")
        ids = [self.store.create_run(kind=run_kind, model=str(cfg["model"]), dataset=str(cfg["dataset"]),
                                     strategy=str(cfg.get("strategy") or strategy or run_kind), config=cfg,
                                     group_id=group_id) for cfg in configs]
        schedule.submit(self.store, run_kind, ids, ids, model=str(configs[0]["model"]), units=len(ids))
        return ids

    @property
    def _procs(self) -> dict[str, subprocess.Popen[bytes]]:
        """The worker of each run whose job this process started."""
        with self.store.connection() as con:
            rows = con.execute("SELECT id, job_id FROM runs WHERE job_id IS NOT NULL").fetchall()
        found = {r["id"]: schedule.process(r["job_id"]) for r in rows}
        return {run_id: proc for run_id, proc in found.items() if proc is not None}

    def reap(self) -> list[str]:
        """A liveness check now (the reaper threads and the pages' polls do it on their own): runs whose worker
        died end as interrupted and their slots go to waiting jobs; returns those runs' ids."""
        lost = self.store.refresh_liveness()
        for job in schedule.tick(self.store):
            if job.kind in RUN_KINDS:
                lost += [run_id for run_id in job.targets if run_id not in lost and
                         (run := self.store.get_run(run_id, check=False)) is not None
                         and run.status == RunStatus.INTERRUPTED]
        return lost

    def cancel(self, run_id: str) -> None:
        cancel_run(self.store, run_id)

    def alive(self, run_id: str) -> bool:
        proc = self._procs.get(run_id)
        return bool(proc and proc.poll() is None)

    def join(self, run_id: str, timeout: float | None = None) -> None:
        """Wait until the run has ended and its worker (when this process started it) has exited, or ``timeout``
        seconds; a run still waiting in the queue is waited for too."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while deadline is None or time.monotonic() < deadline:
            proc = self._procs.get(run_id)
            if proc is not None:
                try:
                    proc.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    return
            run = self.store.get_run(run_id)
            if run is None or not run.active:
                return
            time.sleep(0.2)
