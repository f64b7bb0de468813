"""The one job queue (issue 32 item 1): every kind of job is a row of the store's jobs table, at most
``PRUNE_MAX_JOBS`` heavy jobs run at once, the others wait with their place and an estimate of when they start, a
cancelled waiting job never starts a worker, a killed worker reads as interrupted within seconds and its slot goes
to the next job.

Most tests run the real scheduler with workers that only sleep (the launcher's command swapped for a sleeper), so
they test the queue without training anything. The class test at the end runs real workers: ten sessions press
Start at once on one store, and it measures what the issue asks (workers alive at once, their memory, how long the
pages' reads take meanwhile).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.config import ConfigError, DataConfig, TrainConfig
from core.deploy.bench import DeployBenchConfig
from core.jobs import estimate, launcher, schedule, slots
from core.jobs.cancel import cancel_deploy, cancel_run, cancel_study
from core.jobs.deploy import deploy_job, deploy_running, start_deploy
from core.jobs.kinds import JobKind
from core.jobs.queue import JobRow, active_jobs, get_job, insert, job_for, new_job
from core.jobs.runner import Runner
from core.jobs.studies import start_study_job
from core.jobs.targets import HOOKS
from core.pruning.config import PruneConfig
from core.runs.artifacts import DEPLOY_JOB
from core.runs.record import RunStatus
from core.runs.store import RunStore
from core.studies import records
from core.studies.config import StudyConfig
from core.train import DistillConfig

ROOT = Path(__file__).resolve().parent.parent
SLEEP = "import time; time.sleep(300)"


def _wait(check, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _cfg(strategy: str = "top_down") -> dict:
    """What the runner needs of a run's config to queue it (a sleeping worker never reads the rest)."""
    return {"model": "tiny-bert", "dataset": "keywords", "strategy": strategy, "precision": "fp32"}


@pytest.fixture()
def queue_env(tmp_path, monkeypatch):
    """One slot and workers that only sleep; returns (store, the commands the launcher ran). Afterwards every
    waiting job is withdrawn (no real worker starts when the command is restored) and every sleeper killed."""
    ran: list[list[str]] = []

    def command(kind: str, store_root: str | Path, args: list[str]) -> list[str]:
        ran.append([str(kind), *map(str, args)])
        return [sys.executable, "-c", SLEEP, launcher.WORKER_MODULE]  # reads as our worker in /proc

    monkeypatch.setattr(launcher, "command", command)
    monkeypatch.setenv(slots.MAX_JOBS_ENV, "1")
    store = RunStore(tmp_path / "store")
    before = set(schedule.SPAWNED)
    yield store, ran
    for job in active_jobs(store):
        if job.waiting:
            schedule.withdraw(store, job.id)
    for job_id, proc in list(schedule.SPAWNED.items()):
        if job_id not in before and proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _running(store: RunStore) -> list[JobRow]:
    return [j for j in active_jobs(store) if j.running]


# ------------------------------------------------------------------------------------------ slots
def test_slots_follow_cores_and_memory_and_the_env_var_names_a_bad_value():
    assert slots.default_slots(cores=2, mem_gib=24) == 1  # this machine: one heavy job at a time
    assert slots.default_slots(cores=16, mem_gib=128) == 8
    assert slots.default_slots(cores=16, mem_gib=8) == 2  # memory-bound: 2 workers of ~2 GiB in half of 8 GiB
    assert slots.default_slots(cores=1, mem_gib=1) == 1  # never zero
    assert slots.max_jobs({slots.MAX_JOBS_ENV: "3"}) == 3
    for bad in ("0", "-2", "two"):
        with pytest.raises(ConfigError, match=f"PRUNE_MAX_JOBS must be a whole number >= 1.*'{bad}'"):
            slots.max_jobs({slots.MAX_JOBS_ENV: bad})
    assert slots.threads_per_job(1, cores=2) == 2 and slots.threads_per_job(4, cores=16) == 4
    assert slots.threads_per_job(8, cores=2) == 1


def test_a_store_from_before_the_queue_opens_with_the_jobs_table(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    con = sqlite3.connect(folder / "runs.sqlite")
    con.executescript("""CREATE TABLE runs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL,
        model TEXT NOT NULL, dataset TEXT NOT NULL, strategy TEXT NOT NULL, group_id TEXT, status TEXT NOT NULL,
        config TEXT NOT NULL, created_at REAL NOT NULL, started_at REAL, finished_at REAL, heartbeat_at REAL,
        pid INTEGER, cancel_requested INTEGER NOT NULL DEFAULT 0, error TEXT, summary TEXT, cell_id TEXT);""")
    con.execute("INSERT INTO runs (id, kind, name, model, dataset, strategy, status, config, created_at) VALUES "
                "('r1', 'prune', 'n', 'tiny-bert', 'keywords', 'oracle', 'done', '{}', 1.0)")
    con.commit()
    con.close()
    store = RunStore(folder)
    run = store.get_run("r1")
    assert run is not None and run.status == "done" and run.job_id is None
    assert active_jobs(store) == [] and estimate.queue(store) == []
    RunStore(folder)  # opening it again changes nothing
    with store.connection() as con:
        assert [r[1] for r in con.execute("PRAGMA table_info(runs)")][-1] == "job_id"


# ------------------------------------------------------------------------------------------ queue
def test_submissions_from_several_sessions_wait_in_one_queue_and_a_killed_worker_passes_its_slot_on(queue_env):
    store, ran = queue_env
    sessions = [Runner(store.root) for _ in range(3)]
    first = sessions[0].submit("prune", [_cfg()])
    second = sessions[1].submit("prune", [_cfg("random"), _cfg("oracle")])
    third = sessions[2].submit("merge", [_cfg("merge-accuracy")])
    running = _running(store)
    assert len(running) == 1 and running[0].targets == tuple(first) and len(ran) == 1
    assert store.get_run(first[0]).pid == running[0].pid  # the claim gave the run its worker's pid
    for run_id in second + third:  # waiting: queued, held by a job, no worker
        run = store.get_run(run_id)
        assert run.status == "queued" and run.pid is None and run.job_id is not None
    places = estimate.queue(store)
    assert [p.job_id for p in places] == [store.get_run(second[0]).job_id, store.get_run(third[0]).job_id]
    assert places[0].text.startswith("Queued: 1st in line (1 job running, 1 slot) · no estimate yet: no pruning "
                                      "run of tiny-bert has finished in this store yet")
    assert places[1].short == "2nd in line · no estimate yet"
    assert store.recover() == []  # a runner starting now leaves waiting runs alone, however long they wait

    os.kill(running[0].pid, signal.SIGKILL)  # what the out-of-memory killer does
    t0 = time.time()
    run = _wait(lambda: (r := store.get_run(first[0])).status == "interrupted" and r, 5, "the interrupted run")
    assert time.time() - t0 < 5 and ("SIGKILL" in run.error or "stopped" in run.error)
    after = _wait(lambda: (r := _running(store)) and r[0].targets == tuple(second) and r, 10, "the next job")
    assert after[0].pid != running[0].pid and len(ran) == 2
    killed = get_job(store, running[0].id)  # settled by the reaper thread, with the exit code
    assert killed.status == "interrupted" and "killed by SIGKILL" in killed.error
    assert [store.get_run(i).status for i in third] == ["queued"]


def test_a_worker_that_died_where_no_reaper_saw_it_frees_its_slot_on_the_next_liveness_check(queue_env):
    store, ran = queue_env
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan, waiting = (store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy="top_down",
                                        config=_cfg()) for _ in range(2))
    claimed, queued = new_job(JobKind.PRUNE, [orphan], [orphan]), new_job(JobKind.PRUNE, [waiting], [waiting])
    with store.transaction() as con:  # claimed by a server that has since restarted (no reaper thread is left)
        for job in (claimed, queued):
            insert(con, job)
            HOOKS[job.kind].queued(con, store, job)
        con.execute("UPDATE jobs SET status='running', pid=?, started_at=?, heartbeat_at=? WHERE id=?",
                    (dead.pid, time.time(), time.time(), claimed.id))
        HOOKS[claimed.kind].claimed(con, store, claimed, dead.pid)
    [ended] = schedule.tick(store)  # what a page's poll does
    assert ended.id == claimed.id and ended.status == "interrupted" and "stopped before the job finished" in ended.error
    assert store.get_run(orphan, check=False).status == "interrupted"
    assert [j.id for j in _running(store)] == [queued.id] and ran == [["prune", waiting]]


def test_a_silent_worker_is_dead_after_the_heartbeat_timeout_and_stopped(queue_env):
    store, _ = queue_env
    [run_id] = Runner(store.root).submit("prune", [_cfg()])
    [job] = _running(store)
    proc = schedule.process(job.id)
    assert proc is not None and proc.poll() is None
    with store.transaction() as con:
        con.execute("UPDATE jobs SET heartbeat_at=? WHERE id=?", (time.time() - 10 * schedule.HEARTBEAT_TIMEOUT_S,
                                                                  job.id))
    starting = JobRow(id="s", kind=JobKind.PRUNE, targets=("x",), args=("x",), status=RunStatus.RUNNING,
                      created_at=0.0, started_at=time.time() - 2 * schedule.HEARTBEAT_TIMEOUT_S, pid=proc.pid)
    assert schedule.dead_because(starting) is None  # no beat yet: a starting worker imports torch first
    assert "no heartbeat" in schedule.dead_because(starting, now=time.time() + schedule.STARTUP_TIMEOUT_S)
    [ended] = schedule.tick(store)
    assert ended.id == job.id and ended.status == "interrupted" and "no heartbeat" in ended.error
    assert proc.wait(10) == -signal.SIGKILL  # a frozen worker would hold its memory: it is stopped
    assert store.get_run(run_id).status == "interrupted"


def test_cancelling_waiting_jobs_of_every_kind_never_starts_their_workers(queue_env, tmp_path):
    store, ran = queue_env
    runner = Runner(store.root)
    [busy] = runner.submit("prune", [_cfg()])
    pair = runner.submit("prune", [_cfg("random"), _cfg("oracle")])
    [later] = runner.submit("prune", [_cfg("oracle")])
    study = records.create_study(store, StudyConfig(name="t", models=("tiny-bert",), datasets=("keywords",),
                                                    strategies=("top_down",), seeds=(0,), layers_to_remove=1),
                                 pd.DataFrame())
    assert start_study_job(store, study.id) is None  # waits: no worker yet
    assert records.get_study(store, study.id).status == "queued" and records.get_study(store, study.id).pid is None
    target = store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy="top_down", config={})
    store.finish(target, "done")
    assert start_deploy(store, target, "bench", repeats=3) is None
    check = deploy_job(store, target)
    assert check is not None and check.status == "queued" and deploy_running(store, target)
    assert store.read_json(target, DEPLOY_JOB)["message"] == "Waiting in the queue"
    with pytest.raises(ValueError, match="already running"):
        start_deploy(store, target, "export")
    study_place = estimate.place(store, job_for(store, JobKind.STUDY, study.id).id)
    assert study_place is not None and study_place.position == 3

    cancel_run(store, pair[0])  # one of two: the job still has work
    assert get_job(store, store.get_run(pair[0]).job_id).status == "queued"
    cancel_run(store, pair[1])  # the last one: the job leaves the queue
    pair_job = get_job(store, store.get_run(pair[1]).job_id)
    assert pair_job.status == "cancelled" and pair_job.pid is None and pair_job.started_at is None
    assert [store.get_run(i).status for i in pair] == ["cancelled", "cancelled"]
    cancel_study(store, study.id)
    assert records.get_study(store, study.id).status == "cancelled"
    assert job_for(store, JobKind.STUDY, study.id).status == "cancelled"
    cancel_deploy(store, target)
    assert deploy_job(store, target).status == "cancelled" and not deploy_running(store, target)
    assert job_for(store, JobKind.DEPLOY, target).status == "cancelled"

    os.kill(_running(store)[0].pid, signal.SIGKILL)
    _wait(lambda: (r := _running(store)) and r[0].targets == (later,), 10, "the next job still waiting")
    assert [cmd[1:] for cmd in ran] == [[busy], [later]]  # no worker ever started for the cancelled ones
    assert [p.job_id for p in estimate.queue(store)] == []


def test_a_waiting_study_and_deploy_check_take_their_worker_pid_when_their_turn_comes(queue_env):
    store, ran = queue_env
    [busy] = Runner(store.root).submit("prune", [_cfg()])
    study = records.create_study(store, StudyConfig(name="t", models=("tiny-bert",), datasets=("keywords",),
                                                    strategies=("top_down",), seeds=(0,), layers_to_remove=1),
                                 pd.DataFrame())
    start_study_job(store, study.id, resume=True)
    target = store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy="top_down", config={})
    store.finish(target, "done")
    start_deploy(store, target, "export")
    for expected in ([study.id, "--resume"], [target, "export", str(DeployBenchConfig.repeats), "0"]):
        os.kill(_running(store)[0].pid, signal.SIGKILL)
        _wait(lambda target=expected[0]: (r := _running(store)) and r[0].targets == (target,), 30,
              f"the job of {expected[0]} to be claimed")
        assert ran[-1][1:] == expected
        if expected[0] == study.id:
            assert records.get_study(store, study.id).pid == _running(store)[0].pid
        else:
            assert store.read_json(target, DEPLOY_JOB)["pid"] == _running(store)[0].pid
    # the study's worker was killed: the one exit hook ended it as interrupted, saying how to go on
    ended = records.get_study(store, study.id)
    assert ended.status == "interrupted" and "SIGKILL" in ended.error and "Resume" in ended.error
    assert store.get_run(busy).status == "interrupted"


# ------------------------------------------------------------------------------------------ estimate
def test_the_estimate_plays_the_queue_out_over_the_slots_from_finished_jobs(tmp_path, monkeypatch):
    monkeypatch.setenv(slots.MAX_JOBS_ENV, "1")
    store = RunStore(tmp_path / "store")
    now = time.time()
    rows = []
    for seconds, units in ((100, 1), (240, 2), (110, 1)):  # 100, 120 and 110 s per run: the median is 110
        rows.append((new_job(JobKind.PRUNE, ["d"], ["d"], model="tiny-bert", units=units), "done",
                     now - 1000, now - 1000 + seconds))
    running = new_job(JobKind.PRUNE, ["r"], ["r"], model="tiny-bert")
    rows.append((running, "running", now - 30, None))
    waiting = [new_job(JobKind.PRUNE, ["w1"], ["w1"], model="tiny-bert", units=2),
               new_job(JobKind.PRUNE, ["w2"], ["w2"], model="e5-small"),
               new_job(JobKind.PRUNE, ["w3"], ["w3"], model="tiny-bert")]
    with store.transaction() as con:
        for job, status, started, finished in rows:
            insert(con, job)
            con.execute("UPDATE jobs SET status=?, started_at=?, finished_at=?, pid=? WHERE id=?",
                        (status, started, finished, os.getpid(), job.id))
        for i, job in enumerate(waiting):
            insert(con, job)
            con.execute("UPDATE jobs SET created_at=? WHERE id=?", (now + i, job.id))
    places = estimate.queue(store, now=now)
    assert [p.job_id for p in places] == [j.id for j in waiting]
    assert places[0].starts_in_s == pytest.approx(80)  # the running one: 110 s expected, 30 s done
    assert places[1].starts_in_s == pytest.approx(80 + 220)  # after two runs of tiny-bert
    assert places[2].starts_in_s is None and places[2].unknown == "pruning run of e5-small"
    assert places[0].text == "Queued: 1st in line (1 job running, 1 slot) · starts in about 1 min"
    assert places[1].short == "2nd in line · starts in about 5 min"
    assert places[2].text.endswith("no estimate yet: no pruning run of e5-small has finished in this store yet")
    monkeypatch.setenv(slots.MAX_JOBS_ENV, "2")  # a second slot is free: the first waiting job starts now
    assert [p.when for p in estimate.queue(store, now=now)][:2] == ["starting…", "starts in about 1 min"]


# ------------------------------------------------------------------------------------------ pages
def _page(name: str, root: Path, **query: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=90)
    at.session_state["sel_model"] = "tiny-bert"
    at.session_state["sel_dataset"] = "keywords"
    for key, value in query.items():
        at.query_params[key] = value
    return at


def test_live_runs_and_studies_show_the_place_in_the_queue(queue_env, monkeypatch):
    store, _ = queue_env
    monkeypatch.setenv("PRUNE_STORE_DIR", str(store.root))
    runner = Runner(store.root)
    runner.submit("prune", [_cfg()])
    [waiting] = runner.submit("prune", [_cfg("random")])
    study = records.create_study(store, StudyConfig(name="t", models=("tiny-bert",), datasets=("keywords",),
                                                    strategies=("top_down",), seeds=(0,), layers_to_remove=1),
                                 pd.DataFrame())
    start_study_job(store, study.id)

    live = _page("live", store.root, run=waiting)
    live.run()
    assert not live.exception, [e.value for e in live.exception]
    bar = [node.proto.text for node in live.get("progress")][0]
    assert bar.startswith("Queued: 1st in line (1 job running, 1 slot) · no estimate yet"), bar
    runs = _page("runs", store.root)
    runs.run()
    assert not runs.exception, [e.value for e in runs.exception]
    table = runs.dataframe[0].value
    assert table.loc[table["run"] == waiting, "queue"].tolist() == ["1st in line · no estimate yet"]
    studies = _page("study", store.root, study=study.id)
    studies.run()
    assert not studies.exception, [e.value for e in studies.exception]
    bars = [node.proto.text for node in studies.get("progress")]
    assert any(b.startswith("Queued: 2nd in line") for b in bars), bars


def test_runs_started_together_wait_for_their_turn_on_the_one_worker_and_live_says_so(queue_env, monkeypatch):
    """Three strategies started at once are one job: its worker runs them in turn, so the second and third wait
    inside a running job (not in the queue): Live says which turn, not 'waiting for the worker to start'."""
    store, _ = queue_env
    monkeypatch.setenv("PRUNE_STORE_DIR", str(store.root))
    first, second, third = Runner(store.root).submit("prune", [_cfg(), _cfg("random"), _cfg("oracle")])
    _wait(lambda: _running(store), 30, "the job's worker")
    live = _page("live", store.root, run=f"{first},{second},{third}")
    live.run()
    assert not live.exception, [e.value for e in live.exception]
    bars = [node.proto.text for node in live.get("progress")]
    assert any(b.startswith("Queued: 2nd of the 3 runs started together") and "(1 before this one)" in b
               for b in bars), bars
    assert any(b.startswith("Queued: 3rd of the 3 runs started together") and "(2 before this one)" in b
               for b in bars), bars


# ------------------------------------------------------------------------------------------ a class
CLASS = ("top_down", "random", "weight_magnitude", "weight_entropy", "block_influence", "attention_entropy",
         "inhibition", "energy", "intensity", "attention_weight")


def _class_config(strategy: str) -> dict:
    """One student's run: the tiny model standing in for e5-small, a budget that ends in seconds."""
    return PruneConfig(model="tiny-bert", dataset="keywords", strategy=strategy, layers_to_remove=1,
                       step_epochs=0.0, calibration_size=16, distill=False, kd=DistillConfig(epochs=0.0),
                       data=DataConfig(train_cap=64, val_cap=32, test_cap=32, max_length=16, seed=0),
                       teacher=TrainConfig(epochs=1.0, lr=3e-3, batch_size=16, freeze_word_embeddings=False,
                                           head_lr_multiplier=1.0),
                       allow_weak_teacher=True, precision="fp32").to_dict()


class Sampler(threading.Thread):
    """Every 0.1 s: the worker processes of the store (``/proc``: cmdline, state, resident memory), the running
    jobs the store records, and how long the reads a page's poll makes take."""

    def __init__(self, store: RunStore) -> None:
        super().__init__(daemon=True)
        self.store, self.stop = store, threading.Event()
        self.max_workers = self.max_running = 0
        self.peak_rss_mib = self.max_read_s = 0.0
        self.running_jobs: set[str] = set()
        self.crowd: dict[int, str] = {}  # the worker processes when the most were seen at once
        self.heartbeats: dict[str, set[float]] = {}

    @staticmethod
    def describe(pid: int) -> str:
        """Parent, state and command of a process (what the report shows when more workers than slots were seen)."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[-160:]
        except OSError:
            return "gone"
        return f"ppid {stat[1]} state {stat[0]}: {cmd}"

    def workers(self) -> dict[int, float]:
        found = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"core.jobs.worker" not in cmdline or str(self.store.root).encode() not in cmdline:
                    continue
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if fields.get("State", "").strip().startswith("Z"):
                continue
            found[int(pid)] = int(fields.get("VmRSS", "0 kB").split()[0]) / 1024
        return found

    def run(self) -> None:
        while not self.stop.wait(0.1):
            workers = self.workers()
            t0 = time.perf_counter()
            runs = self.store.list_runs()  # what Live, Runs and the sidebar read on every poll
            estimate.queue(self.store)
            for run in runs[:3]:
                self.store.last_event(run.id)
            self.max_read_s = max(self.max_read_s, time.perf_counter() - t0)
            running = _running(self.store)
            self.running_jobs |= {j.id for j in running}
            for job in running:
                self.heartbeats.setdefault(job.id, set()).add(job.heartbeat_at or 0.0)
            if len(workers) > self.max_workers:
                self.crowd = {pid: self.describe(pid) for pid in workers}
            self.max_workers = max(self.max_workers, len(workers))
            self.max_running = max(self.max_running, len(running))
            self.peak_rss_mib = max(self.peak_rss_mib, sum(workers.values()))


def test_a_class_of_ten_presses_start_at_once_and_one_worker_runs_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setenv(slots.MAX_JOBS_ENV, "1")  # what this 2-core machine gets by default
    monkeypatch.setenv("PRUNE_STORE_DIR", str(tmp_path / "class"))
    n = slots.max_jobs()
    sessions = [Runner(tmp_path / "class") for _ in CLASS]  # ten people, one server's store
    store = sessions[0].store
    sampler = Sampler(store)
    sampler.start()
    try:
        with ThreadPoolExecutor(len(CLASS)) as pool:
            futures = [pool.submit(s.submit, "prune", [_class_config(k)]) for s, k in zip(sessions, CLASS)]
            ids = [f.result()[0] for f in futures]
        waiting = [p.job_id for p in estimate.queue(store)]
        assert len(waiting) == len(CLASS) - n
        # two people change their minds while they wait: the last two in line
        doomed = [run_id for run_id in ids if store.get_run(run_id).job_id in waiting[-2:]]
        for run_id in doomed:
            sessions[ids.index(run_id)].cancel(run_id)
        # the Live page of a waiting run answers meanwhile and says where it stands
        watcher = [run_id for run_id in ids if store.get_run(run_id).job_id == waiting[0]][0]
        live = _page("live", store.root, run=watcher)
        live.run()
        t0 = time.perf_counter()
        live.run()
        render_s = time.perf_counter() - t0
        assert not live.exception, [e.value for e in live.exception]
        bar = [node.proto.text for node in live.get("progress")][0]
        assert "in line" in bar or "Queued" in bar or store.get_run(watcher).status != "queued", bar
        _wait(lambda: not any(store.get_run(i).active for i in ids), 900, "every run to finish")
    finally:
        sampler.stop.set()
        sampler.join(5)
    statuses = {run_id: store.get_run(run_id).status for run_id in ids}
    print(f"\nclass of {len(CLASS)}, {n} slot(s): at most {sampler.max_workers} worker process(es) and "
          f"{sampler.max_running} running job(s) seen; peak worker memory {sampler.peak_rss_mib:.0f} MiB; slowest "
          f"page read {sampler.max_read_s * 1000:.0f} ms; Live page rerun {render_s * 1000:.0f} ms; "
          f"{sum(s == 'done' for s in statuses.values())} done, {sum(s == 'cancelled' for s in statuses.values())} "
          "cancelled")
    assert 1 <= sampler.max_workers <= n and 1 <= sampler.max_running <= n, (sampler.crowd, statuses)
    assert all(statuses[i] == "cancelled" for i in doomed) and len(doomed) == 2
    assert all(statuses[i] == "done" for i in ids if i not in doomed), statuses
    for run_id in doomed:  # never started: no worker, no claim
        job = get_job(store, store.get_run(run_id).job_id)
        assert job.status == "cancelled" and job.pid is None and job.id not in sampler.running_jobs
    assert len(sampler.running_jobs) == len(CLASS) - 2
    assert any(len(beats) > 1 for beats in sampler.heartbeats.values())  # workers beat while they run
    assert sampler.peak_rss_mib * 2**20 < 0.5 * (slots.memory_gib() or 24) * 2**30
    assert sampler.max_read_s < 1.0
