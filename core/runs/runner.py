"""Runs pruning/merging jobs outside the caller's process and records them in the run store.

:func:`execute_run` consumes a run's event generator and writes everything to the store (events, steps,
profiles, artifacts); it checks the cancel flag after every event, i.e. within one training batch.
:class:`Runner` starts a worker process per submission (several runs of one submission share a worker
and run one after another, so they share the cached teacher and do not fight over two CPU cores).
The UI keeps only run ids: any page, tab or reload re-attaches by reading the store.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

from core.paths import PROJECT_ROOT
from core.runs.store import RunStore


class Cancelled(Exception):
    pass


def _record(store: RunStore, run_id: str, ev: Any) -> None:
    """Write one event (and the tables/artifacts it carries) to the store."""
    step = ev.step
    if ev.tables:
        for name, frame in ev.tables.items():
            store.write_table(run_id, f"steps/{step}/{name}.csv", frame)
    if ev.stage == "choice":
        store.write_json(run_id, f"steps/{step}/choice.json", ev.payload)
        profile = ev.tables.get("profile")
        if profile is not None:
            store.add_profile(run_id, step, profile["model"].iloc[0], profile["dataset"].iloc[0], profile)
        payload = {"layer": ev.payload.get("layer")}
    elif ev.stage == "step_done":
        store.add_step(run_id, step, ev.payload)
        payload = ev.payload
    elif ev.stage == "done":
        model = ev.artifacts.get("model")
        if model is not None:
            from core.models.surgery import save_model

            save_model(model, ev.artifacts.get("tokenizer"), store.run_dir(run_id) / "model")
        store.write_json(run_id, "summary.json", ev.payload)
        payload = ev.payload
    else:
        payload = ev.payload
    store.add_event(run_id, ev.stage, step=step, progress=ev.progress, message=ev.message, payload=payload)


def _events_for(store: RunStore, run: dict[str, Any]) -> Iterator[Any]:
    if run["kind"] == "prune":
        from core.pruning.loop import PruneConfig, prune_events

        cfg = PruneConfig.from_dict(run["config"])
        profiles = store.profiles(model=cfg.model)
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
    store.mark_running(run_id, os.getpid())
    try:
        for ev in _events_for(store, run):
            _record(store, run_id, ev)
            if on_event is not None:
                on_event(ev)
            if store.cancel_requested(run_id):
                raise Cancelled()
            if ev.stage == "done":
                store.finish(run_id, "done", summary=ev.payload)
                return "done"
        store.finish(run_id, "done")
        return "done"
    except Cancelled:
        store.add_event(run_id, "cancelled", message="Cancelled by the user")
        store.finish(run_id, "cancelled")
        return "cancelled"
    except Exception as exc:  # the run fails, the store and the app do not
        store.add_event(run_id, "failed", message=f"{type(exc).__name__}: {exc}",
                        payload={"traceback": traceback.format_exc()[-4000:]})
        store.finish(run_id, "failed", error=f"{type(exc).__name__}: {exc}")
        return "failed"


def execute_with_bar(store: RunStore, run_id: str, quiet: bool = False) -> str:
    """:func:`execute_run` in this process with a tqdm bar (the CLI's progress); returns the final status."""
    from tqdm import tqdm

    bar = tqdm(total=1000, desc=run_id, disable=quiet, bar_format="{l_bar}{bar}| {elapsed} {postfix}")

    def on_event(ev: Any) -> None:
        if ev.progress is not None:
            bar.n = int(1000 * min(max(ev.progress, 0.0), 1.0))
        bar.set_postfix_str(ev.message[:70])
        bar.refresh()

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
        for run_id in ids:
            self._procs[run_id] = proc
        return ids

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
