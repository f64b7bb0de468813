"""The job layer (core.jobs): one launcher (environment, niceness, threads, its own session), one record and
status for runs, studies and deploy checks, one reaper for jobs whose process died, one cancel path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from core.config import ConfigError, DataConfig
from core.deploy.worker import JOB_FILE
from core.jobs import launcher
from core.jobs.cancel import cancel
from core.jobs.deploy import deploy_job
from core.jobs.kinds import JobKind
from core.jobs.liveness import reap
from core.jobs.record import Job
from core.jobs.studies import start_study_job, watch_study
from core.jobs.worker import WORKERS, main
from core.paths import PROJECT_ROOT
from core.runs.store import RunStore
from core.studies import records
from core.studies.config import StudyConfig


@pytest.fixture()
def store(tmp_path):
    return RunStore(tmp_path / "store")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _run(store: RunStore) -> str:
    return store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy="oracle",
                            config={"model": "tiny-bert", "dataset": "keywords"})


def _study(store: RunStore) -> str:
    cfg = StudyConfig(name="tiny", models=("tiny-bert",), datasets=("keywords",), strategies=("top_down",), seeds=(0,),
                      layers_to_remove=1, step_epochs=0.5, distill=False, calibration_size=32,
                      data=DataConfig(train_cap=64, val_cap=32, test_cap=32))
    return records.create_study(store, cfg, pd.DataFrame()).id


def _wait(check, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# ------------------------------------------------------------------------------------------ launcher
def test_the_launcher_puts_the_project_first_on_the_path_and_runs_the_one_worker_module(tmp_path):
    env = launcher.environment({"PYTHONPATH": "/elsewhere", "KEEP": "1"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(PROJECT_ROOT), "/elsewhere"] and env["KEEP"] == "1"
    assert launcher.environment({})["PYTHONPATH"] == str(PROJECT_ROOT)
    assert launcher.command(JobKind.STUDY, tmp_path, ["s1", "--resume"]) == [
        sys.executable, "-m", "core.jobs.worker", "study", str(tmp_path), "s1", "--resume"]
    assert set(WORKERS) == set(JobKind)  # every kind of job has a worker


def test_one_setting_for_every_worker_niceness_and_threads_applied_in_the_worker(tmp_path):
    assert launcher.SETTINGS.niceness == 5
    assert launcher.SETTINGS.torch_threads == max(1, os.cpu_count() or 1)
    with pytest.raises(ConfigError, match="WorkerSettings.niceness"):
        launcher.WorkerSettings(niceness=25)
    with pytest.raises(ConfigError, match="WorkerSettings.threads"):
        launcher.WorkerSettings(threads=-1)
    code = ("import os, torch\n"
            "from core.jobs.launcher import SETTINGS, WorkerSettings, worker_setup\n"
            "before = os.nice(0)\n"
            "worker_setup()\n"
            "first = (os.nice(0) - before, torch.get_num_threads(), SETTINGS.torch_threads)\n"
            "worker_setup(WorkerSettings(niceness=2, threads=1))\n"
            "print(list(first) + [os.nice(0) - before, torch.get_num_threads()])\n")
    out = subprocess.run([sys.executable, "-c", code], env=launcher.environment(), cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, check=True)
    nice, threads, expected, nice_after, threads_after = json.loads(out.stdout.strip().splitlines()[-1])
    if os.nice(0) + 7 <= 19:  # room to lower the priority (a test run under nice -n 19 has none)
        assert nice == 5 and nice_after == 7
    assert threads == expected and threads_after == 1


def test_worker_usage_and_unknown_kind():
    assert main(["prune"]) == 2
    with pytest.raises(ValueError, match="job kind must be one of"):
        main(["train", "/tmp", "x"])


def test_a_worker_runs_in_its_own_session_and_its_death_is_reported_with_the_signal(store):
    study_id = _study(store)
    proc = start_study_job(store, study_id)
    assert records.get_study(store, study_id).pid == proc.pid  # claimed: queued with the worker's pid
    os.killpg(proc.pid, signal.SIGKILL)  # works only because the worker leads its own session
    study = _wait(lambda: (s := records.get_study(store, study_id)).status == "interrupted" and s, 30,
                  "the reaper thread to mark the study interrupted")
    assert proc.returncode == -signal.SIGKILL
    assert "killed by SIGKILL" in study.error and "Resume" in study.error
    assert not Job.of_study(study).active


# ------------------------------------------------------------------------------------------ reaper
def test_the_reaper_interrupts_runs_studies_and_deploy_checks_whose_process_died(store):
    dead = _dead_pid()
    run_id = _run(store)
    store.mark_running(run_id, dead)
    study_id = _study(store)
    records.set_status(store, study_id, "running", executor="local", pid=dead)
    target = _run(store)
    store.write_json(target, JOB_FILE, {"job": "bench", "status": "running", "pid": dead, "progress": 0.4,
                                        "message": "Timing", "started_at": time.time()})
    ended = {(job.kind, job.id): job for job in reap(store)}
    assert set(ended) == {(JobKind.PRUNE, run_id), (JobKind.STUDY, study_id), (JobKind.DEPLOY, target)}
    assert all(job.status == "interrupted" for job in ended.values())
    assert store.get_run(run_id, check=False).status == "interrupted"
    assert records.get_study(store, study_id).status == "interrupted"
    assert store.read_json(target, JOB_FILE)["status"] == "interrupted"
    assert reap(store) == []  # nothing left to reap; finished jobs are left alone


def test_a_queued_study_whose_worker_never_started_reads_as_interrupted(store):
    study_id = _study(store)
    records.claim(store, study_id, _dead_pid())  # the launcher recorded a worker that died before running
    assert watch_study(store, study_id).status == "interrupted"


# ------------------------------------------------------------------------------------------ cancel
def test_one_cancel_path_for_a_run_a_study_and_a_deploy_check(store):
    run_id = _run(store)
    cancel(store, Job.of_run(store.get_run(run_id)))
    assert store.get_run(run_id).status == "cancelled"  # queued: cancelled at once

    study_id = _study(store)
    cancel(store, Job.of_study(records.get_study(store, study_id)))
    assert records.get_study(store, study_id).status == "cancelled"

    target = _run(store)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    try:
        store.write_json(target, JOB_FILE, {"job": "export", "status": "running", "pid": sleeper.pid,
                                            "progress": 0.2, "message": "Exporting", "started_at": time.time()})
        job = deploy_job(store, target)
        assert job is not None and job.active and job.task == "export"
        cancel(store, job)
        assert sleeper.wait(10) == -signal.SIGTERM
        after = deploy_job(store, target)
        assert after is not None and after.status == "cancelled" and not after.active
    finally:
        if sleeper.poll() is None:
            sleeper.kill()


# ------------------------------------------------------------------------------------------ record
def test_a_deploy_check_written_by_an_earlier_version_reads_with_the_one_status_vocabulary():
    old = Job.of_deploy("r1", {"job": "bench", "status": "starting", "pid": None, "progress": 0.0})
    assert old.kind == JobKind.DEPLOY and old.status == "queued" and old.active
    died = Job.of_deploy("r1", {"job": "bench", "status": "died", "error": "gone", "updated_at": 5.0})
    assert died.status == "interrupted" and not died.active and died.finished_at == 5.0
    with pytest.raises(ValueError, match="status must be one of"):
        Job.of_deploy("r1", {"status": "exploded"})
