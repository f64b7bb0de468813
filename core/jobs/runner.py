"""Runs submitted from the app: :class:`Runner` records them and starts one worker process per submission (several
runs of one submission share a worker and run one after another, so they share the cached teacher and do not
fight over the CPU cores). The UI keeps only run ids: any page, tab or reload re-attaches by reading the store."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from core.jobs.kinds import RUN_KINDS, job_kind
from core.jobs.launcher import exit_reason, spawn
from core.runs.store import RunStore


class Runner:
    """Starts worker processes for runs and tracks them. Safe to share (e.g. in ``st.cache_resource``)."""

    def __init__(self, store_root: Path | str | None = None) -> None:
        self.store = RunStore(store_root)
        self.store.recover()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def submit(self, kind: str, configs: list[dict[str, Any]], *, group_id: str | None = None,
               strategy: str | None = None) -> list[str]:
        """Create one run per config and start one worker that runs them in order. A run's strategy is the
        config's own ``strategy`` (pruning), else ``strategy`` (e.g. ``merge-accuracy``), else ``kind``."""
        run_kind = job_kind(kind)
        if run_kind not in RUN_KINDS:
            raise ValueError(f"Runner.submit: kind must be one of {[k.value for k in RUN_KINDS]}, got {kind!r}")
        ids = [self.store.create_run(kind=run_kind, model=cfg["model"], dataset=cfg["dataset"],
                                     strategy=cfg.get("strategy") or strategy or run_kind, config=cfg,
                                     group_id=group_id) for cfg in configs]
        # the reaper thread ends the runs an exited worker left unfinished, saying why
        proc = spawn(run_kind, self.store.root, ids, on_exit=lambda p: self._settle(p, ids))
        self.store.assign_worker(ids, proc.pid)
        for run_id in ids:
            self._procs[run_id] = proc
        return ids

    def _settle(self, proc: subprocess.Popen[bytes], ids: list[str]) -> list[str]:
        """Mark the runs of an exited worker that are still queued or running as interrupted, saying why."""
        lost = []
        for run_id in ids:
            run = self.store.get_run(run_id, check=False)
            if run is not None and run.active:
                self.store.interrupt(run_id, exit_reason(proc.returncode, proc.pid))
                lost.append(run_id)
        return lost

    def reap(self) -> list[str]:
        """Interrupt the unfinished runs of every worker that has exited; returns those runs' ids. The reaper
        threads do this on their own; this is for callers that want it now."""
        lost: list[str] = []
        by_proc: dict[int, tuple[subprocess.Popen[bytes], list[str]]] = {}
        for run_id, proc in self._procs.items():
            by_proc.setdefault(id(proc), (proc, []))[1].append(run_id)
        for proc, ids in by_proc.values():
            if proc.poll() is not None:
                lost += self._settle(proc, ids)
        return lost

    def cancel(self, run_id: str) -> None:
        from core.jobs.cancel import cancel_run

        cancel_run(self.store, run_id)

    def alive(self, run_id: str) -> bool:
        proc = self._procs.get(run_id)
        return bool(proc and proc.poll() is None)

    def join(self, run_id: str, timeout: float | None = None) -> None:
        proc = self._procs.get(run_id)
        if proc is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
