"""A small recorded pack for tests (issue 30): finished runs of the tiny random 12-layer BERT on the keywords task,
made with the engine's own code path (``core.jobs.execute.execute_run``, as the app's worker runs them), pinned to
fp32, then packed by ``core.runs.pack_make.make_pack`` (what ``scripts/make_pack.py`` runs)."""

from __future__ import annotations

import fcntl
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

from core.config import DataConfig
from core.jobs.execute import execute_run
from core.pruning.config import PruneConfig
from core.runs.pack_make import PackSelection, make_pack
from core.runs.store import RunStore
from core.train import DistillConfig

#: the strategies of the test pack (a fusion run with SHAP values, the oracle, a fixed order)
STRATEGIES = ("rf_fusion", "oracle", "top_down")
ANY = PackSelection(datasets=None, strategies=None, seeds=None)
T = TypeVar("T")


def tiny_config(strategy: str) -> dict:
    return PruneConfig(model="tiny-bert", dataset="keywords", strategy=strategy, layers_to_remove=2, step_epochs=0.5,
                       calibration_size=32, kd=DistillConfig(epochs=1.0), precision="fp32",
                       data=DataConfig(train_cap=160, val_cap=48, test_cap=48, max_length=10, seed=0)).to_dict()


def make_tiny_store(root: Path) -> dict[str, str]:
    """Finished tiny runs of :data:`STRATEGIES` in a new store at ``root``: strategy -> run id."""
    store = RunStore(root)
    ids = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model gains nothing from a second thread
    try:
        for strategy in STRATEGIES:
            run_id = store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy=strategy,
                                      config=tiny_config(strategy))
            status = execute_run(store, run_id)
            assert status == "done", store.get_run(run_id).error
            ids[strategy] = run_id
    finally:
        torch.set_num_threads(threads)
    return ids


def make_tiny_pack(root: Path) -> tuple[Path, Path, dict[str, str]]:
    """A store of tiny runs and its pack under ``root``: (store folder, pack folder, strategy -> run id)."""
    store, pack = root / "store", root / "pack"
    ids = make_tiny_store(store)
    make_pack(store, pack, ANY)
    return store, pack, ids


def made_once(tmp_path_factory, name: str, make: Callable[[Path], T]) -> T:
    """``make(folder)`` once per test session: under pytest-xdist the workers share the session's temporary folder
    (the parent of each worker's own); the first worker to take the lock makes it there and the others read what it
    returned (pickled) once it is done. Only for what the tests read and never change. Without xdist, each call
    makes its own."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return make(tmp_path_factory.mktemp(name))
    root = tmp_path_factory.getbasetemp().parent / f"{name}-shared"
    root.mkdir(exist_ok=True)
    done = root / "made.pickle"
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when ``make`` fails
        if not done.exists():
            made = make(root)
            done.write_bytes(pickle.dumps(made))
    return pickle.loads(done.read_bytes())
