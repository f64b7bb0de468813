"""The recorded pack (issue 30): made from a store of finished tiny runs, read back as a second, read-only store;
refused when a file was changed, missing or added (and the app still starts); its summaries agree with its own step
tables and outcome files; the pages show it on a fresh store; the replay's captions come from its stored data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from core.fusion.bank import training_profiles
from core.pruning.narrate import StoredSteps, narrate, shap_pushes
from core.runs import artifacts, noise
from core.runs.pack import MANIFEST_FILE, PackError, load_pack, pack_dir, table_file
from core.runs.pack_check import check_pack, check_run
from core.runs.pack_make import PackRefused, make_pack
from core.runs.pack_store import ReadOnlyRunError, StoreWithPack
from core.runs.store import RunStore
from tests.packs import ANY, made_once, make_tiny_pack
from tests.scripts import load_script
from tests.test_app_pages import assert_clean, chart_titles, page, texts


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    return made_once(tmp_path_factory, "pack", make_tiny_pack)


@pytest.fixture()
def copied(tiny_pack, tmp_path) -> Path:
    """A copy of the pack to change."""
    return Path(shutil.copytree(tiny_pack[1], tmp_path / "pack"))


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------------------------ making it
def test_pack_holds_every_artifact_but_the_weights_and_the_tables(tiny_pack):
    store_dir, pack_folder, ids = tiny_pack
    manifest = json.loads((pack_folder / MANIFEST_FILE).read_text())
    assert {r["id"] for r in manifest["runs"]} == set(ids.values())
    assert manifest["precision"] == ["fp32"] and manifest["code_versions"] and manifest["made"]
    assert manifest["budget"] == ["160 / 48 / 48 rows (train / val / test), length 10, 2 layers removed, "
                                  "0.5 epoch(s) per step, KD 1 epoch(s)"]
    for run_id in ids.values():
        source = store_dir / "runs" / run_id
        shipped = _files(pack_folder / "runs" / run_id)
        assert (source / artifacts.MODEL_CONFIG).is_file() and not any(f.startswith("model/") for f in shipped)
        assert shipped == {f for f in _files(source) if not f.startswith("model/")}
    assert not [f for f in _files(pack_folder) if f.endswith((".safetensors", ".bin", ".pkl", ".onnx"))]
    listed = manifest["files"]
    assert set(listed) == _files(pack_folder) - {MANIFEST_FILE}
    assert manifest["total_bytes"] == sum(e["bytes"] for e in listed.values()) < 20_000_000


def test_pack_reads_back_as_the_store_did(tiny_pack):
    store_dir, pack_folder, ids = tiny_pack
    store, pack = RunStore(store_dir), load_pack(pack_folder)
    assert pack is not None
    for run_id in ids.values():
        assert pack.get_run(run_id).recorded and not store.get_run(run_id).recorded
        want, got = store.get_run(run_id).to_dict(), pack.get_run(run_id).to_dict()
        for key in ("kind", "model", "dataset", "strategy", "status", "config", "summary", "finished_at"):
            assert got[key] == want[key], key
        pd.testing.assert_frame_equal(pack.steps(run_id), store.steps(run_id))
        assert pack.events(run_id) == store.events(run_id) and pack.last_event(run_id) == store.last_event(run_id)
    pd.testing.assert_frame_equal(pack.profiles().sort_values(["run_id", "step", "layer"]).reset_index(drop=True),
                                  store.profiles().sort_values(["run_id", "step", "layer"]).reset_index(drop=True))


def test_making_it_again_changes_nothing_and_resumes_a_missing_file(tiny_pack, copied):
    store_dir, _, ids = tiny_pack
    before = (copied / MANIFEST_FILE).read_text()
    again = make_pack(store_dir, copied, ANY)
    assert again.written == [] and again.removed == [] and (copied / MANIFEST_FILE).read_text() == before
    lost = f"runs/{ids['oracle']}/{artifacts.step_table(1, artifacts.SIGNALS_TABLE)}"
    (copied / lost).unlink()
    (copied / "runs" / "stray.txt").write_text("left behind")
    resumed = make_pack(store_dir, copied, ANY)
    assert resumed.written == [lost] and resumed.removed == ["runs/stray.txt"]
    assert (copied / MANIFEST_FILE).read_text() == before and load_pack(copied) is not None


def test_a_pack_over_the_limit_or_without_runs_is_refused_and_nothing_is_written(tiny_pack, tmp_path):
    store_dir = tiny_pack[0]
    with pytest.raises(PackRefused, match="more than the limit of 100,000"):
        make_pack(store_dir, tmp_path / "big", ANY, limit=100_000)
    assert not (tmp_path / "big").exists()
    with pytest.raises(PackRefused, match="no finished run"):
        make_pack(store_dir, tmp_path / "none")  # the default pick: e5-small datasets, none here
    assert not (tmp_path / "none").exists()


def test_the_script_makes_the_pack_from_the_command_line(tiny_pack, tmp_path, capsys):
    store_dir, _, ids = tiny_pack
    script = load_script("make_pack")
    assert script.main(["--store", str(store_dir), "--out", str(tmp_path / "p"), "--runs", ids["top_down"]]) == 0
    assert [r.id for r in load_pack(tmp_path / "p").list_runs()] == [ids["top_down"]]
    assert script.main(["--store", str(store_dir), "--out", str(tmp_path / "q"), "--limit-mb", "0.01", "--any"]) == 1
    assert "refused, nothing written" in capsys.readouterr().err and not (tmp_path / "q").exists()


# ------------------------------------------------------------------------------------------ refusing it
@pytest.mark.parametrize("change, says", [
    ("edit", "does not match its checksum"), ("grow", "has"), ("delete", "is missing"),
    ("add", "not in the manifest"), ("manifest", "not a pack manifest")])
def test_a_changed_pack_is_refused_with_a_message_naming_the_file(tiny_pack, copied, change, says):
    run_id = tiny_pack[2]["rf_fusion"]
    target = copied / "runs" / run_id / artifacts.step_table(1, artifacts.ORACLE_TABLE)
    if change == "edit":  # same size, one digit changed
        text = target.read_text()
        i = next(i for i, c in enumerate(text) if c.isdigit() and i > text.index("\n"))
        target.write_text(text[:i] + str((int(text[i]) + 1) % 10) + text[i + 1:])
    elif change == "grow":
        target.write_text(target.read_text() + "0,0,1,0,1,0,0,0\n")
    elif change == "delete":
        target.unlink()
    elif change == "add":
        (copied / "runs" / run_id / "steps" / "3").mkdir()
        (copied / "runs" / run_id / "steps" / "3" / "choice.json").write_text('{"layer": 0}')
    else:
        (copied / MANIFEST_FILE).write_text('{"format": "something else"}')
    with pytest.raises(PackError, match=says) as refused:
        load_pack(copied)
    message = str(refused.value)
    assert "was refused" in message and "runs without it" in message and str(copied.parent) not in message
    if change in ("edit", "grow", "delete"):
        assert f"runs/{run_id}/steps/1/oracle.csv" in message


def test_a_tampered_table_is_refused(copied):
    table = copied / table_file("steps")
    table.write_bytes(table.read_bytes()[:-8] + b"\x00" * 8)
    with pytest.raises(PackError, match="tables/steps.parquet does not match its checksum"):
        load_pack(copied)


def test_the_pack_location_is_data_pack_unless_overridden(monkeypatch, tmp_path):
    monkeypatch.delenv("PRUNE_PACK_DIR")
    assert pack_dir() == Path(__file__).resolve().parent.parent / "data" / "pack"
    for off in ("off", "", "none"):
        monkeypatch.setenv("PRUNE_PACK_DIR", off)
        assert pack_dir() is None
    monkeypatch.setenv("PRUNE_PACK_DIR", str(tmp_path))
    assert pack_dir() == tmp_path and load_pack() is None  # an empty folder: no pack, no complaint


def test_the_app_starts_and_explains_when_the_pack_was_changed(tiny_pack, copied, tmp_path, monkeypatch):
    run_id = tiny_pack[2]["rf_fusion"]
    (copied / "runs" / run_id / artifacts.SUMMARY).write_text("{}")
    monkeypatch.setenv("PRUNE_PACK_DIR", str(copied))
    monkeypatch.setenv("PRUNE_STORE_DIR", str(tmp_path / "fresh"))
    for name in ("home", "signals", "fusion", "compare", "runs", "live"):
        at = page(name).run()
        assert not at.exception, (name, [e.value for e in at.exception])
        shown = texts(at)
        assert "was refused" in shown and f"runs/{run_id}/summary.json" in shown, name
        assert "read-only" not in shown and "[recorded]" not in shown and str(tmp_path) not in shown, name


# ------------------------------------------------------------------------------------------ consistent
def test_the_packs_summaries_agree_with_its_step_tables_and_outcome_files(tiny_pack):
    pack = load_pack(tiny_pack[1])
    runs = {r.id: r.summary for r in pack.list_runs()}
    assert check_pack(pack.steps, pack.run_dir, runs) == []
    for run in pack.list_runs():  # the figures the pages show, from the files they come from
        summary = json.loads((pack.run_dir(run.id) / artifacts.SUMMARY).read_text())
        steps = pack.steps(run.id)
        kd = pd.read_parquet(pack.run_dir(run.id) / artifacts.step_outcomes(2, artifacts.KD_TEST_OUTCOMES))
        assert summary["after_kd"]["test_accuracy"] == pytest.approx((kd["pred"] == kd["label"]).mean())
        assert summary["removed_order"] == list(steps.iloc[-1]["removed_order"]) == steps["removed"].tolist()[1:]


def test_a_summary_that_disagrees_is_found_and_not_packed(tiny_pack, tmp_path):
    store_dir, _, ids = tiny_pack
    store = Path(shutil.copytree(store_dir, tmp_path / "store"))
    folder = store / "runs" / ids["top_down"]
    summary = json.loads((folder / artifacts.SUMMARY).read_text())
    summary["after_kd"]["test_accuracy"] += 0.25
    (folder / artifacts.SUMMARY).write_text(json.dumps(summary))
    problems = check_run(ids["top_down"], RunStore(store).steps(ids["top_down"]), folder)
    assert len(problems) == 1 and "after-KD test accuracy" in problems[0]
    with pytest.raises(PackRefused, match="disagrees with their own files"):
        make_pack(store, tmp_path / "pack", ANY)
    assert not (tmp_path / "pack").exists()


# ------------------------------------------------------------------------------------------ reading it
def test_the_users_store_comes_first_and_recorded_runs_are_read_only(tiny_pack, tmp_path):
    _, pack_folder, ids = tiny_pack
    both = StoreWithPack(tmp_path / "mine", load_pack(pack_folder))
    mine = both.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy="random", config={})
    listed = both.list_runs(kind="prune")
    assert listed[0].id == mine and not listed[0].recorded and {r.id for r in listed[1:]} == set(ids.values())
    assert [r.id for r in both.own_runs()] == [mine]
    recorded = ids["rf_fusion"]
    assert both.read_json(recorded, artifacts.SUMMARY) == both.get_run(recorded).summary
    assert both.read_outcomes(recorded, 0, artifacts.TEST_OUTCOMES) is not None
    assert set(both.all_steps()["run_id"]) == {*ids.values()} and not both.all_steps([mine]).shape[0]
    assert set(both.profiles(with_recorded=True)["run_id"]) == {*ids.values()}
    assert both.profiles().empty and training_profiles(both).empty  # fusion never trains on the pack
    for write in (lambda: both.delete_run(recorded), lambda: both.request_cancel(recorded),
                  lambda: both.add_event(recorded, "done"), lambda: both.write_json(recorded, "x.json", {})):
        with pytest.raises(ReadOnlyRunError, match="recorded run"):
            write()
    assert load_pack(pack_folder) is not None  # nothing was written into the pack
    both.delete_run(mine)
    assert [r.id for r in both.own_runs()] == []


def test_captions_tell_each_step_from_the_stored_data(tiny_pack):
    _, pack_folder, ids = tiny_pack
    store = StoreWithPack(pack_folder.parent / "empty", load_pack(pack_folder))
    for strategy, run_id in ids.items():
        steps = store.steps(run_id)
        choices = {k: store.read_json(run_id, artifacts.step_choice(k)) for k in (1, 2)}
        intervals = noise.prune_intervals(run_id, steps, store.read_json(run_id, artifacts.SUMMARY),
                                          store.read_outcomes)
        told = narrate(StoredSteps(run_id, strategy, steps, choices), intervals, store.read_outcomes,
                       oracle=lambda k, r=run_id: store.read_table(r, artifacts.step_table(k, artifacts.ORACLE_TABLE)))
        assert sorted(told) == [0, 1, 2]
        for k in (1, 2):
            row = steps[steps["step"] == k].iloc[0]
            assert told[k].startswith(f"**Step {k} of 2.**") and f"removed **L{int(row['removed'])}**" in told[k]
            assert f"L{int(row['oracle_best'])}" in told[k] and intervals.steps[k].text() in told[k]
            assert "changes the predictions least, KL" in told[k]
            regret = (row["oracle_best_accuracy"] - row["chosen_oracle_accuracy"]) * 100
            assert (f"a regret of **{regret:.1f} points**" in told[k]) if regret >= 0.05 else "no regret" in told[k]
        assert "Distillation" in told[2] and intervals.after_kd.text() in told[2] and "Distillation" not in told[1]
    fusion_told = narrate(StoredSteps(ids["rf_fusion"], "rf_fusion", store.steps(ids["rf_fusion"]),
                                      {k: store.read_json(ids["rf_fusion"], artifacts.step_choice(k)) for k in (1, 2)}),
                          noise.PruneIntervals({}, {}), store.read_outcomes)
    from core.fusion import read_choice

    choice = read_choice(store.read_json(ids["rf_fusion"], artifacts.step_choice(2)))
    towards, _ = shap_pushes(choice, choice.chosen_layer)
    assert towards and "(SHAP)" in fusion_told[2]


# ------------------------------------------------------------------------------------------ the pages
def test_every_page_shows_the_pack_on_a_fresh_store(tiny_pack, tmp_path, monkeypatch):
    _, pack_folder, ids = tiny_pack
    monkeypatch.setenv("PRUNE_PACK_DIR", str(pack_folder))
    monkeypatch.setenv("PRUNE_STORE_DIR", str(tmp_path / "fresh"))
    empty = ("No run has computed signals", "No fusion run yet", "Nothing to compare", "The store is empty",
             "No run yet")
    for name in ("signals", "fusion", "compare", "runs", "live"):
        at = page(name).run()
        assert_clean(at)
        shown = texts(at)
        assert not [e for e in empty if e in shown], name
        assert "recorded" in shown, name
        assert str(tmp_path) not in shown and str(pack_folder) not in shown, name
    at = page("signals").run()
    assert any(t.startswith("Step 2") for t in chart_titles(at))
    at = page("fusion", fus_run=ids["rf_fusion"]).run()
    assert "Global importance: mean |SHAP value|" in chart_titles(at) and len(at.image) >= 2  # beeswarm, waterfall
    at = page("runs").run()
    assert set(at.multiselect(key="runs_delete").options) == set()  # nothing of the pack is offered for deletion
    at = page("live").run()
    assert at.query_params["run"] == ids["rf_fusion"]
    assert "**Step 2 of 2.**" in texts(at) and at.button(key=f"replay_btn_{ids['rf_fusion']}").label == "Play"
    at.slider(key=f"replay_{ids['rf_fusion']}").set_value(1).run()
    assert_clean(at)
    assert "**Step 1 of 2.**" in texts(at) and "**Step 2 of 2.**" not in texts(at)


def test_playground_reruns_a_recorded_run_and_opens_its_models(tiny_pack, tmp_path, monkeypatch):
    import time

    from ui.recorded_play import rerun_config

    _, pack_folder, ids = tiny_pack
    monkeypatch.setenv("PRUNE_PACK_DIR", str(pack_folder))
    monkeypatch.setenv("PRUNE_STORE_DIR", str(tmp_path / "fresh"))
    monkeypatch.setenv("PRUNE_CACHE_DIR", str(tmp_path / "cache"))  # no teacher cached: the weights are not here
    at = page("playground").run()
    assert_clean(at)
    shown = texts(at)
    assert "Recorded runs ship without their weights" in shown and "On the machine that recorded it (fp32)" in shown
    assert "Nothing to play with yet" not in shown
    at.button(key="pg_rerun_btn").click().run()
    assert not at.exception
    store = RunStore(tmp_path / "fresh")
    [mine] = store.list_runs()
    recorded = load_pack(pack_folder).get_run(ids["rf_fusion"])
    assert mine.config == rerun_config(recorded) and mine.strategy == "rf_fusion" and not mine.recorded
    deadline = time.monotonic() + 240
    while store.get_run(mine.id).active and time.monotonic() < deadline:
        time.sleep(1.0)
    assert store.get_run(mine.id).status == "done", store.get_run(mine.id).error
    at = page("playground").run()
    assert_clean(at)
    picker = at.selectbox(key="pg_choice")
    assert picker.value == mine.id and any(o.startswith("teacher · tiny-bert") for o in picker.options)
    assert any(m.label.startswith("Teacher (12 layers)") for m in at.metric)


# ------------------------------------------------------------------------------------------ the shipped pack
SHIPPED = Path(__file__).resolve().parent.parent / "data" / "pack"


@pytest.mark.skipif(not (SHIPPED / "manifest.json").exists(), reason="no recorded pack shipped (data/pack)")
def test_the_shipped_pack_validates_and_agrees_with_itself():
    """data/pack: every checksum holds, it is under the 20 MB limit, its runs are finished e5-small runs at the
    default budget with KD, and every summary agrees with its own step table and outcome files."""
    from core.runs.pack import LIMIT_BYTES

    pack = load_pack(SHIPPED)
    assert pack is not None
    assert sum(f.stat().st_size for f in SHIPPED.rglob("*") if f.is_file()) <= LIMIT_BYTES
    runs = pack.list_runs()
    assert runs and all(r.status == "done" and r.recorded and r.model == "e5-small" for r in runs)
    assert all(r.config["data"]["train_cap"] == 2000 and r.config["layers_to_remove"] == 6 and r.config["distill"]
               for r in runs)
    assert check_pack(pack.steps, pack.run_dir, {r.id: r.summary for r in runs}) == []


@pytest.mark.skipif(not (SHIPPED / "manifest.json").exists(), reason="no recorded pack shipped (data/pack)")
def test_the_shipped_manifest_reads_typed_and_writes_back_the_same_text():
    """The manifest as a record (issue 32): the file made before it was typed reads back and writes the same bytes,
    so making the same pack again leaves it unchanged."""
    from core.runs.pack import PackManifest

    text = (SHIPPED / MANIFEST_FILE).read_text()
    stored = json.loads(text)
    manifest = PackManifest.from_dict(stored)
    assert json.dumps(manifest.to_dict(), indent=1) + "\n" == text
    assert manifest.total_bytes == stored["total_bytes"] and len(manifest.runs) == len(stored["runs"])
    assert {r.precision for r in manifest.runs} == set(manifest.precision) and load_pack(SHIPPED).made == manifest.made
    assert manifest.content() == {k: v for k, v in stored.items() if k not in ("made", "made_by")}
