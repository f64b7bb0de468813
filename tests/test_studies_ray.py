"""Studies on Ray (a local instance, as on a cluster): the same finished cells as the local executor, and Ray's
own task retry after a worker is killed. Its own file, so the test runner can put it beside the other study
tests instead of after them (it is the longest test of the suite)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from core.runs.store import RunStore
from core.studies import execute, records
from tests.test_studies import finals, tiny_study


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    from core.studies.execute import ray_runtime_env

    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_AUTH_MODE", os.environ.get("RAY_AUTH_MODE", "disabled"))
        # Ray starts its workers at nice 15 (RAY_worker_niceness): beside the test runner's other process (nice 0)
        # they got a sliver of a core and this test took 50-120 s; a cluster, and `core study run --ray`, keep
        # Ray's default
        env.setenv("RAY_worker_niceness", "0")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env=ray_runtime_env(None))
        yield ray
        ray.shutdown()


def test_ray_executor_matches_local_and_retries_a_killed_worker(tmp_path, local_ray):
    cfg = tiny_study(seeds=(0, 1), strategies=("oracle", "random", "rf_fusion"), kd_epochs=0.5)
    local_store = RunStore(tmp_path / "local")
    s_local = execute.start_study(local_store, cfg)
    execute.run_local(local_store, s_local.id)
    local = finals(local_store, list(records.done_cells(local_store, [c.cell_id for c in s_local.cells()]).values()))

    ray_store = RunStore(tmp_path / "ray")
    s_ray = execute.start_study(ray_store, cfg)
    pid_dir = tmp_path / "pids"
    killed: list[int] = []

    def kill_first_worker() -> None:  # SIGKILL the worker of the first task to start, once
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            for f in pid_dir.glob("*.pid") if pid_dir.exists() else []:
                pid = int(f.read_text() or 0)
                if pid:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    f.unlink()
                    return
            time.sleep(0.05)

    t = threading.Thread(target=kill_first_worker)
    t.start()
    study = execute.run_ray(ray_store, s_ray.id, execute.RayOptions(cpus_per_task=1, pid_dir=str(pid_dir)))
    t.join()
    assert killed, "no Ray worker was killed"
    assert study.status == "done", study.error
    remote = finals(ray_store, list(records.done_cells(ray_store, [c.cell_id for c in s_ray.cells()]).values()))
    assert remote == local


