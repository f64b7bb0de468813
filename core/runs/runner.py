"""Runs pruning/merging jobs outside the caller's process and records them in the run store.

:func:`execute_run` consumes a run's event generator and writes everything to the store (events, steps,
profiles, artifacts); it checks the cancel flag after every event, i.e. within one training batch.
:class:`Runner` starts a worker process per submission (several runs of one submission share a worker
and run one after another, so they share the cached teacher and do not fight over two CPU cores).
The UI keeps only run ids: any page, tab or reload re-attaches by reading the store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

from core.paths import PROJECT_ROOT
from core.runs import artifacts
from core.runs.events import Stage
from core.runs.store import ACTIVE, RunStore


class Cancelled(Exception):
    pass


def record_event(store: RunStore, run_id: str, ev: Any) -> None:
    """Write one event (and the tables/artifacts it carries) to the store."""
    step = ev.step
    if ev.tables:
        for name, frame in ev.tables.items():
            store.write_table(run_id, artifacts.step_table(step, name), frame)
    if ev.stage == Stage.CHOICE:
        store.write_json(run_id, artifacts.step_choice(step), ev.payload)
        profile = ev.tables.get(artifacts.PROFILE_TABLE)
        if profile is not None:
            store.add_profile(run_id, step, profile["model"].iloc[0], profile["dataset"].iloc[0], profile)
        payload = {"layer": ev.payload.get("layer")}
    elif ev.stage == Stage.STEP_DONE:
        store.add_step(run_id, step, ev.payload)
        payload = ev.payload
    elif ev.stage == Stage.DONE:
        model = ev.artifacts.get("model")
        if model is not None:
            from core.models.surgery import save_model

            save_model(model, ev.artifacts.get("tokenizer"), store.run_dir(run_id) / artifacts.MODEL_DIR)
        store.write_json(run_id, artifacts.SUMMARY, ev.payload)
        payload = ev.payload
    else:
        payload = ev.payload
    store.add_event(run_id, ev.stage, step=step, progress=ev.progress, message=ev.message, payload=payload)


_record = record_event  # the name used inside this module


def _events_for(store: RunStore, run: dict[str, Any]) -> Iterator[Any]:
    if run["kind"] == "prune":
        from core.pruning.config import PruneConfig
        from core.pruning.loop import prune_events

        cfg = PruneConfig.from_dict(run["config"])
        from core.fusion.bank import training_profiles

        profiles = training_profiles(store)  # the shipped bank + this store's runs (fusion picks leave-one-dataset-out)
        if not profiles.empty:
            profiles = profiles[profiles["run_id"] != run["id"]]
        return prune_events(cfg, run_id=run["id"], profiles=profiles, dataset=_upload_for(store, cfg.dataset))
    if run["kind"] == "merge":
        from core.merging.loop import MergeConfig, merge_events

        cfg = MergeConfig.from_dict(run["config"])
        return merge_events(cfg, run_id=run["id"], dataset=_upload_for(store, cfg.dataset))
    raise ValueError(f"unknown run kind {run['kind']!r}")


def _upload_for(store: RunStore, dataset: str) -> Any:
    """Uploaded datasets are stored as Parquet in the store (``upload:<digest>``); registry keys pass through."""
    if not dataset.startswith("upload:"):
        return None
    from core.runs.uploads import load_saved_upload

    return load_saved_upload(store, dataset)


def execute_run(store: RunStore, run_id: str, on_event: Callable[[Any], None] | None = None) -> str:
    """Run ``run_id`` to completion in this process; returns its final status."""
    run = store.get_run(run_id)
    if run is None:
        raise ValueError(f"no run {run_id!r}")
    if run["status"] != "queued":
        return run["status"]
    if store.cancel_requested(run_id):
        store.finish(run_id, "cancelled")
        return "cancelled"
    from core.teacher import WeakTeacherError

    store.mark_running(run_id, os.getpid())
    weak = False
    try:
        for ev in _events_for(store, run):
            if ev.stage == Stage.TEACHER_CHECK and ev.payload.get("weak") and ev.payload.get("allowed"):
                weak = True  # allowed to go on ("prune anyway"): flag the run wherever it is shown
                store.update_summary(run_id, {"weak_teacher": True})
            if weak and (ev.stage == Stage.DONE or (ev.stage == Stage.STEP_DONE and ev.step == 0)):
                ev = dataclasses.replace(ev, payload={**ev.payload, "weak_teacher": True})
            _record(store, run_id, ev)
            if on_event is not None:
                on_event(ev)
            if store.cancel_requested(run_id):
                raise Cancelled()
            if ev.stage == Stage.DONE:
                store.finish(run_id, "done", summary=ev.payload)
                return "done"
        store.finish(run_id, "done")
        return "done"
    except Cancelled:
        store.add_event(run_id, Stage.CANCELLED, message="Cancelled by the user")
        store.finish(run_id, "cancelled")
        return "cancelled"
    except WeakTeacherError as exc:  # the guard: stopped before pruning; "prune anyway" resubmits with the flag
        store.add_event(run_id, Stage.WEAK_TEACHER, message=str(exc), payload=exc.check.to_dict())
        store.finish(run_id, "failed", error=str(exc))
        return "failed"
    except Exception as exc:  # the run fails, the store and the app do not
        store.add_event(run_id, Stage.FAILED, message=f"{type(exc).__name__}: {exc}",
                        payload={"traceback": traceback.format_exc()[-4000:]})
        store.finish(run_id, "failed", error=f"{type(exc).__name__}: {exc}")
        return "failed"


def execute_with_bar(store: RunStore, run_id: str, quiet: bool = False) -> str:
    """:func:`execute_run` in this process with the CLI's progress (a bar on a terminal, a line per stage and
    per 10 % in a pipe or log: :class:`core.runs.progress.StageProgress`); returns the final status."""
    from core.runs.progress import StageProgress

    bar = StageProgress(run_id, quiet=quiet)

    def on_event(ev: Any) -> None:
        bar.update(ev.progress, ev.message, ev.stage)

    try:
        return execute_run(store, run_id, on_event=on_event)
    finally:
        bar.close()


def _worker(store_root: str, run_ids: list[str]) -> None:
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 2)))
    with contextlib.suppress(OSError, AttributeError):  # AttributeError: no os.nice (Windows)
        os.nice(5)  # training takes the idle CPU; the app's server stays responsive while a run trains
    store = RunStore(store_root)
    for run_id in run_ids:
        execute_run(store, run_id)


if __name__ == "__main__":  # the worker process: python -m core.runs.runner STORE_ROOT RUN_ID [RUN_ID ...]
    _worker(sys.argv[1], sys.argv[2:])


def exit_reason(returncode: int | None, pid: int) -> str:
    """Why a worker process ended, in words (``returncode`` as :attr:`subprocess.Popen.returncode`)."""
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        why = " (what the out-of-memory killer does)" if name == "SIGKILL" else ""
        return f"The worker process (pid {pid}) was killed by {name}{why}."
    if returncode:
        return f"The worker process (pid {pid}) exited with code {returncode}."
    return f"The worker process (pid {pid}) ended before the run finished."


class Runner:
    """Starts worker processes for runs and tracks them. Safe to share (e.g. in ``st.cache_resource``)."""

    def __init__(self, store_root: Path | str | None = None) -> None:
        self.store = RunStore(store_root)
        self.store.recover()
        self._procs: dict[str, subprocess.Popen] = {}

    def submit(self, kind: str, configs: list[dict[str, Any]], *, group_id: str | None = None,
               strategy: str | None = None) -> list[str]:
        """Create one run per config and start one worker that runs them in order. A run's strategy is the
        config's own ``strategy`` (pruning), else ``strategy`` (e.g. ``merge-accuracy``), else ``kind``."""
        ids = []
        for cfg in configs:
            ids.append(self.store.create_run(kind=kind, model=cfg["model"], dataset=cfg["dataset"],
                                             strategy=cfg.get("strategy") or strategy or kind, config=cfg,
                                             group_id=group_id))
        # a fresh interpreter (not multiprocessing): the caller's __main__ (a Streamlit page, pytest) is never
        # re-executed in the worker, and the worker outlives a reload of the page that started it
        root = str(PROJECT_ROOT)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        proc = subprocess.Popen([sys.executable, "-m", "core.runs.runner", str(self.store.root), *ids], cwd=root,
                                env=env, stdin=subprocess.DEVNULL, start_new_session=True)
        self.store.assign_worker(ids, proc.pid)
        for run_id in ids:
            self._procs[run_id] = proc
        # a watcher reaps the worker the moment it exits (no zombie) and ends runs it left unfinished
        threading.Thread(target=self._watch, args=(proc, ids), name=f"reap-{proc.pid}", daemon=True).start()
        return ids

    def _watch(self, proc: subprocess.Popen, ids: list[str]) -> None:
        proc.wait()
        self._settle(proc, ids)

    def _settle(self, proc: subprocess.Popen, ids: list[str]) -> list[str]:
        """Mark the runs of an exited worker that are still queued or running as interrupted, saying why."""
        lost = []
        for run_id in ids:
            run = self.store.get_run(run_id, check=False)
            if run is not None and run["status"] in ACTIVE:
                self.store.interrupt(run_id, exit_reason(proc.returncode, proc.pid))
                lost.append(run_id)
        return lost

    def reap(self) -> list[str]:
        """Poll every worker (reaping the ones that exited) and interrupt their unfinished runs; returns
        those runs' ids. The watcher threads do this on their own; this is for callers that want it now."""
        lost: list[str] = []
        by_proc: dict[int, tuple[subprocess.Popen, list[str]]] = {}
        for run_id, proc in self._procs.items():
            by_proc.setdefault(id(proc), (proc, []))[1].append(run_id)
        for proc, ids in by_proc.values():
            if proc.poll() is not None:
                lost += self._settle(proc, ids)
        return lost

    def cancel(self, run_id: str) -> None:
        self.store.request_cancel(run_id)

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
