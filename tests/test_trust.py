"""Trustworthy runs (issue 13): dead workers are seen at once, a teacher that learned nothing is caught before
anything is pruned, your own file from the command line, progress lines in a log, labels that do not overlap."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from core.config import ConfigError, DataConfig, TrainConfig
from core.jobs.execute import execute_run
from core.jobs.runner import Runner
from core.pruning.config import PruneConfig
from core.runs.store import RunStore, pid_alive
from core.train import DistillConfig
from tests.conftest import keyword_frame

ROOT = Path(__file__).resolve().parent.parent
TINY_DATA = DataConfig(train_cap=160, val_cap=48, test_cap=48, max_length=32, seed=0)
#: a teacher that never trains: the random tiny model predicts one class for every row
UNTRAINED = TrainConfig(epochs=0.0, min_steps=0, lr=3e-3, batch_size=16, freeze_word_embeddings=False,
                        head_lr_multiplier=1.0)


def tiny_cfg(**kw) -> dict:
    base = dict(model="tiny-bert", dataset="keywords", strategy="top_down", layers_to_remove=1, step_epochs=0.0,
                calibration_size=16, distill=False, data=TINY_DATA, kd=DistillConfig(epochs=0.0))
    return PruneConfig(**{**base, **kw}).to_dict()


@pytest.fixture()
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "store")


def wait_for(predicate, timeout: float, what: str, every: float = 0.25):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


# ------------------------------------------------------------------------------------------ 1. dead workers
def test_a_killed_worker_is_interrupted_at_once_and_reaped(store):
    runner = Runner(store.root)
    # a teacher long enough to be killed in the middle (a seed of its own: never a cached teacher)
    slow = TrainConfig(epochs=100.0, lr=3e-3, batch_size=16, freeze_word_embeddings=False, head_lr_multiplier=1.0,
                       seed=4242)
    [rid] = runner.submit("prune", [tiny_cfg(teacher=slow)])
    assert store.get_run(rid).pid, "the worker's pid is recorded while the run is queued"
    wait_for(lambda: getattr(store.last_event(rid), "stage", None) == "teacher", 180, "the teacher to train")
    pid = store.get_run(rid).pid
    os.kill(pid, signal.SIGKILL)  # what the out-of-memory killer does
    t0 = time.time()
    run = wait_for(lambda: (r := store.get_run(rid)).status == "interrupted" and r, 5, "the interrupted status")
    assert time.time() - t0 < 5
    assert "It had reached: Fine-tuning the teacher: step" in run.error
    assert "SIGKILL" in run.error or "stopped" in run.error
    assert store.last_event(rid).stage == "interrupted"
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 5, "the worker to be reaped (no zombie)")
    store.delete_run(rid)
    assert store.get_run(rid) is None


def test_store_reads_see_a_dead_worker_without_its_runner(store):
    """A worker started by another process (no Popen here): reading the store finds it dead, zombie or gone."""
    rid = store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy="top_down", config={})
    queued = store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy="top_down", config={})
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    store.assign_worker([rid, queued], child.pid)
    store.mark_running(rid, child.pid)
    store.add_event(rid, "teacher", progress=0.1, message="Fine-tuning the teacher: step 18/150")
    assert store.get_run(rid).status == "running"
    child.kill()
    wait_for(lambda: not pid_alive(child.pid), 5, "the child to die")  # a zombie: not reaped yet
    assert {r.id: r.status for r in store.list_runs()} == {rid: "interrupted", queued: "interrupted"}
    assert "Fine-tuning the teacher: step 18/150" in store.get_run(rid).error
    assert "had not started" in store.get_run(queued).error
    child.wait()


def test_cancel_on_a_run_whose_worker_is_gone_ends_it_at_once(store):
    rid = store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy="top_down", config={})
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    store.mark_running(rid, gone.pid)
    store.request_cancel(rid)
    run = store.get_run(rid, check=False)
    assert run.status == "cancelled"
    store.delete_run(rid)
    assert store.get_run(rid) is None


def test_exit_reason_names_the_signal():
    from core.jobs.launcher import exit_reason

    assert "SIGKILL" in exit_reason(-9, 12) and "out-of-memory" in exit_reason(-9, 12)
    assert "code 3" in exit_reason(3, 12)


# -------------------------------------------------------------------------------------- 2. recipe and guard
def test_min_steps_and_class_weights(tiny_model, keyword_batches):
    from core.train import class_weights, fine_tune

    data = keyword_batches["train"]
    rows = len(data["labels"])
    cfg = TrainConfig(epochs=1.0, batch_size=16, min_steps=3 * ((rows + 15) // 16) + 2)
    steps = [p.step for p in fine_tune(tiny_model, data, cfg, device=torch.device("cpu"))]
    assert steps[-1] == cfg.min_steps  # more than one epoch: the minimum wins
    labels = torch.tensor([0] * 6 + [1] * 2 + [2] * 0)
    w = class_weights(labels, 3, "balanced")
    assert torch.allclose(w, torch.tensor([8 / (2 * 6), 8 / (2 * 2), 0.0]))
    assert torch.allclose(class_weights(labels, 3, "sqrt"), w.sqrt())
    assert class_weights(labels, 3, "none") is None
    with pytest.raises(ConfigError, match="TrainConfig.class_weights"):
        TrainConfig(class_weights="inverse")


def test_default_teacher_recipe_is_recorded_in_its_config():
    from core.teacher import TEACHER_MIN_STEPS, default_train_config

    cfg = default_train_config("e5-small", 3)
    assert cfg.min_steps == TEACHER_MIN_STEPS > 0 and cfg.class_weights == "balanced"
    assert default_train_config("e5-small", 20).min_steps == TEACHER_MIN_STEPS


def test_check_teacher_against_the_trivial_baselines():
    from core.teacher import check_teacher

    train = torch.tensor([0] * 65 + [1] * 20 + [2] * 15)
    test = torch.tensor([0] * 65 + [1] * 20 + [2] * 15)
    names = ("neutral", "good", "bad")
    # the teacher: it predicted the majority class for every row
    weak = check_teacher({"accuracy": 0.646, "macro_f1": 0.26}, train, test, names, 32)
    assert weak.weak and weak.majority_class == "neutral"
    assert weak.baseline_accuracy == pytest.approx(0.65)
    assert weak.baseline_macro_f1 == pytest.approx(1 / 3, abs=1e-3)  # guessing by frequency beats 0.263
    message = weak.message()
    assert "stopped before pruning" in message and "max length (now 32 tokens)" in message
    assert "different text column" in message and "more rows" in message
    assert not check_teacher({"accuracy": 0.80, "macro_f1": 0.62}, train, test, names, 32).weak
    # accuracy far below the majority class is weak even with a fair macro-F1
    assert check_teacher({"accuracy": 0.55, "macro_f1": 0.50}, train, test, names, 32).weak


def test_guard_stops_an_untrained_teacher_and_prune_anyway_flags_the_run(store):
    rid = store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy="top_down",
                           config=tiny_cfg(teacher=UNTRAINED))
    assert execute_run(store, rid) == "failed"
    last = store.last_event(rid)
    assert last.stage == "weak_teacher" and last.payload["weak"]
    assert "did not learn the task" in store.get_run(rid).error
    assert store.steps(rid).empty, "nothing was pruned"

    anyway = store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy="top_down",
                              config=tiny_cfg(teacher=UNTRAINED, allow_weak_teacher=True))
    assert execute_run(store, anyway) == "done", store.get_run(anyway).error
    steps = store.steps(anyway)
    assert bool(steps.iloc[0]["weak_teacher"]) and len(steps) == 2
    assert store.read_json(anyway, "summary.json")["weak_teacher"] is True
    frame = store.runs_frame().set_index("id")
    assert bool(frame.loc[anyway, "weak_teacher"]) and not bool(frame.loc[rid, "weak_teacher"])


def test_prune_config_flag_is_validated():
    assert PruneConfig(allow_weak_teacher=True).allow_weak_teacher
    with pytest.raises(ConfigError, match="allow_weak_teacher"):
        PruneConfig(allow_weak_teacher="yes")


# ------------------------------------------------------------------------------------ 3. your own file (CLI)
def _cli(*args: str, store_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PRUNE_STORE_DIR": str(store_dir), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_cli_teaches_on_your_own_csv_and_on_its_upload_id(tmp_path):
    frame = keyword_frame(150, classes=3).rename(columns={"text": "review", "label": "sentiment"})
    frame.insert(0, "id", range(len(frame)))
    frame.loc[3, "sentiment"] = None  # dropped while cleaning
    path = tmp_path / "mine.csv"
    frame.to_csv(path, index=False)
    store_dir = tmp_path / "store"
    tiny = ["--model", "tiny-bert", "--train-cap", "100", "--val-cap", "20", "--test-cap", "20", "--json"]
    out = _cli("teach", "--dataset", str(path), *tiny, store_dir=store_dir)
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    ref = payload["task"]["dataset"]
    assert ref.startswith("upload:") and "check" in payload
    from core.data.upload_store import list_uploads

    [upload] = list_uploads(RunStore(store_dir))
    assert str(upload.ref) == ref and upload.rows == 149 and "1 with no label" in upload.description
    again = _cli("teach", "--dataset", ref, *tiny, store_dir=store_dir)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["cached"] is True


def test_cli_bad_files_get_the_upload_pages_messages(tmp_path):
    store_dir = tmp_path / "store"
    png = tmp_path / "photo.csv"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    out = _cli("teach", "--model", "tiny-bert", "--dataset", str(png), store_dir=store_dir)
    assert out.returncode == 2 and "a PNG image" in out.stderr
    missing = _cli("run", "--model", "tiny-bert", "--dataset", str(tmp_path / "nope.csv"), store_dir=store_dir)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    good = tmp_path / "ok.csv"
    keyword_frame(30).to_csv(good, index=False)
    wrong = _cli("teach", "--model", "tiny-bert", "--dataset", str(good), "--text-column", "body",
                 store_dir=store_dir)
    assert wrong.returncode == 2 and "no text column 'body'" in wrong.stderr and "text, label" in wrong.stderr
    gone = _cli("teach", "--model", "tiny-bert", "--dataset", "upload:0123456789abcdef", store_dir=store_dir)
    assert gone.returncode == 2 and "no longer in the store" in gone.stderr


def test_resolve_dataset_arg_and_merge_command_line(tmp_path, monkeypatch):
    from core.cli.main import _resolve_rest_dataset
    from core.data.ref import resolve_dataset_ref

    store = RunStore(tmp_path / "store")
    monkeypatch.setenv("PRUNE_STORE_DIR", str(store.root))
    path = tmp_path / "t.tsv"
    keyword_frame(40).rename(columns={"text": "message"}).to_csv(path, sep="\t", index=False)
    ref = str(resolve_dataset_ref(str(path), store))
    assert ref.startswith("upload:") and str(resolve_dataset_ref(ref, store)) == ref
    assert str(resolve_dataset_ref("trec", store)) == "trec"
    assert str(resolve_dataset_ref("SetFit/ag_news", store)) == "SetFit/ag_news"
    rest = _resolve_rest_dataset(["--model", "tiny-bert", "--dataset", str(path), "--auto", "2"])
    assert rest[:-2] == ["--model", "tiny-bert", "--auto", "2"] and rest[-2:] == ["--dataset", ref]


# --------------------------------------------------------------------------------------------- 4. smaller
def test_progress_in_a_log_is_a_line_per_stage_and_per_tenth():
    from core.runs.progress import StageProgress

    log = io.StringIO()
    bar = StageProgress("run-1", stream=log)
    assert not bar.tty
    for i in range(501):
        bar.update(i / 500, f"Fine-tuning the teacher: step {i}/500", "teacher")
    bar.update(0.0, "Step 1: computing the twelve signals", "signals")
    for i in range(300):
        bar.update(i / 300, f"Step 1: fine-tuning {i}/300", "finetune")
    bar.close()
    lines = log.getvalue().splitlines()
    assert 15 <= len(lines) <= 25, lines
    assert any("signals" in line for line in lines) and "\r" not in log.getvalue()


def test_cleaning_notes_say_how_many_rows_were_dropped_and_why():
    from core.data.upload import read_upload

    raw = b"text,label\na,x\n,x\nb,\nc,\nd,y\nd,y\ne,y\nf,x\ng,y\nh,x\n"
    loaded = read_upload(raw, "c.csv", "text", "label")
    text = loaded.spec.description
    assert "Kept 6 of 10 rows." in text and "1 with no text, 2 with no label" in text and "1 duplicate row" in text


def test_clustered_candidate_labels_do_not_overlap():
    from ui.plots import label_positions, predicted_vs_measured

    x = [0.0, 0.01, 0.02, 0.03, 0.5, 1.0]
    y = [0.50, 0.505, 0.51, 0.50, 0.9, 0.1]
    pos = label_positions(x, y)
    assert len(set(pos[:4])) == 4, pos  # four clustered points: four different spots
    assert label_positions([0, 0.5, 1], [0, 0.5, 1]) == ["top center"] * 3  # spread out: the default
    from types import SimpleNamespace

    choice = SimpleNamespace(candidates=(1, 2, 3, 4, 5, 6), scores=tuple(x), measured=tuple(y), chosen_layer=2,
                             trained=False, target=None)
    assert list(predicted_vs_measured(choice).data[0].textposition) == pos


def test_app_listens_on_localhost_by_default():
    config = (ROOT / ".streamlit" / "config.toml").read_text()
    import tomllib

    assert tomllib.loads(config)["server"]["address"] == "localhost"
    assert "--server.address 0.0.0.0" in (ROOT / "README.md").read_text()


# ------------------------------------------------------------------------------------------- the Live page
def _live(store_root: Path, run_id: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "pages" / "live.py"), default_timeout=90)
    at.session_state["sel_model"] = "tiny-bert"
    at.session_state["sel_dataset"] = "keywords"
    at.query_params["run"] = run_id
    return at.run()


def _button(at, label: str):
    found = [b for b in at.button if b.label == label]
    assert found, [b.label for b in at.button]
    return found[0]


def test_live_page_offers_prune_anyway_and_start_again(tmp_path, monkeypatch):
    root = tmp_path / "store"
    monkeypatch.setenv("PRUNE_STORE_DIR", str(root))
    store = RunStore(root)
    weak = store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy="top_down",
                            config=tiny_cfg(teacher=UNTRAINED))
    assert execute_run(store, weak) == "failed"
    at = _live(root, weak)
    assert not at.exception
    assert any("Stopped before pruning" in w.value and "max length" in w.value for w in at.warning)
    _button(at, "Prune anyway").click().run()
    newest = store.list_runs()[0]
    assert newest.id != weak and newest.config["allow_weak_teacher"] is True
    assert at.query_params["run"] in (newest.id, [newest.id])  # the page attached the new run
    store.request_cancel(newest.id)

    dead = store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy="top_down",
                            config=tiny_cfg())
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    store.mark_running(dead, gone.pid)
    store.add_event(dead, "teacher", progress=0.12, message="Fine-tuning the teacher: step 18/150")
    at = _live(root, dead)
    assert not at.exception
    assert any("Interrupted" in w.value and "step 18/150" in w.value for w in at.warning)
    _button(at, "Start again with the same settings").click().run()
    again = store.list_runs()[0]
    assert again.id not in (dead, newest.id) and again.config == store.get_run(dead).config
    store.request_cancel(again.id)
