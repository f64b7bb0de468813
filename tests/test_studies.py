"""Studies: the grid config and its cell ids, the shared tree (identical to independent runs), resume after a kill,
the local and the Ray executors (identical results; a killed Ray worker is retried)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from core.config import ConfigError, DataConfig
from core.pruning.tree import TreeWalk
from core.runs.store import RunStore
from core.studies import execute, records
from core.studies.config import StudyConfig

SMALL = DataConfig(train_cap=120, val_cap=40, test_cap=40)
STRATEGIES = ("oracle", "random", "top_down", "weight_magnitude", "rf_fusion")


def tiny_study(**kw) -> StudyConfig:
    base = dict(name="tiny", models=("tiny-bert",), datasets=("keywords",), strategies=STRATEGIES, seeds=(0,),
                layers_to_remove=2, step_epochs=1.0, distill=True, kd_epochs=1.0, calibration_size=32, data=SMALL)
    base.update(kw)
    return StudyConfig(**base)


def finals(store: RunStore, run_ids: list[str]) -> dict[str, dict]:
    out = {}
    for rid in run_ids:
        run = store.get_run(rid)
        s = run.summary
        out[run.strategy, run.config["seed"]] = {"removed": s["removed_order"], "kd": s["after_kd"],
                                                       "steps": store.steps(rid)[["step", "test_accuracy"]].to_dict()}
    return out


# ------------------------------------------------------------------------------------------- config and cells
def test_study_config_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="StudyConfig.strategies.*'magic'"):
        tiny_study(strategies=("oracle", "magic"))
    with pytest.raises(ConfigError, match="StudyConfig.datasets must be a non-empty list"):
        tiny_study(datasets=())
    with pytest.raises(ConfigError, match="StudyConfig.seeds lists a seed twice"):
        tiny_study(seeds=(0, 0))
    with pytest.raises(ConfigError, match="StudyConfig.layers_to_remove"):
        tiny_study(layers_to_remove=0)
    bad = tmp_path / "bad.toml"
    bad.write_text('[study]\nname = "x"\nmodels = ["tiny-bert"]\ndatasets = ["keywords"]\nepochs = 3\n')
    with pytest.raises(ConfigError, match=r"no field\(s\) \['epochs'\]"):
        StudyConfig.load(bad)
    bad.write_text('[study]\nname = "x"\ndata = {train_rows = 5}\n')
    with pytest.raises(ConfigError, match=r"StudyConfig.data has no field\(s\) \['train_rows'\]"):
        StudyConfig.load(bad)
    bad.write_text("[study\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        StudyConfig.load(bad)


def test_cells_and_ids(tmp_path):
    cfg = tiny_study(seeds=(0, 1))
    cells = cfg.cells(snapshot="abc")
    assert len(cells) == cfg.n_cells == len(STRATEGIES) * 2
    assert len({c.cell_id for c in cells}) == len(cells)
    assert len({c.group for c in cells}) == 2  # one tree per seed
    # the id is a function of what determines the result: same config -> same id; budget or snapshot -> new id
    again = {c.cell_id for c in tiny_study(seeds=(0, 1)).cells(snapshot="abc")}
    assert again == {c.cell_id for c in cells}
    longer = {c.cell_id for c in tiny_study(seeds=(0, 1), step_epochs=2.0).cells(snapshot="abc")}
    assert not longer & again
    other_snapshot = {(c.cfg.strategy, c.cfg.seed): c.cell_id for c in cfg.cells(snapshot="xyz")}
    for c in cells:  # only fusion cells train on the snapshot, so only their ids depend on it
        assert (other_snapshot[c.cfg.strategy, c.cfg.seed] != c.cell_id) == (c.cfg.strategy == "rf_fusion")
    # a file round-trips
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"study": cfg.to_dict()}))
    assert StudyConfig.load(path) == cfg


# ------------------------------------------------------------------------------------------- the shared tree
def test_shared_tree_equals_independent_runs():
    cfgs = [tiny_study().prune_config("tiny-bert", "keywords", s, 0) for s in STRATEGIES]
    ids = [f"run-{s}" for s in STRATEGIES]
    tree = TreeWalk(cfgs, ids)
    together = {rid: ev.payload for rid, ev in tree.events() if ev.stage == "done"}
    assert set(together) == set(ids)
    assert sum(tree.stats.finetunes_per_depth.values()) < 2 * len(STRATEGIES)  # something was shared
    assert tree.stats.states_per_depth[1] == 1
    for cfg, rid in zip(cfgs, ids):
        alone = {r: ev.payload for r, ev in TreeWalk([cfg], [rid]).events() if ev.stage == "done"}[rid]
        shared = together[rid]
        assert shared["removed_order"] == alone["removed_order"], cfg.strategy
        assert shared["after_kd"] == alone["after_kd"], cfg.strategy
        assert shared["before_kd"] == alone["before_kd"], cfg.strategy


def test_tree_rejects_configs_of_different_groups():
    a = tiny_study().prune_config("tiny-bert", "keywords", "oracle", 0)
    b = tiny_study(step_epochs=2.0).prune_config("tiny-bert", "keywords", "random", 0)
    with pytest.raises(ValueError, match="differ in more than their strategy"):
        TreeWalk([a, b], ["x", "y"])


# ------------------------------------------------------------------------------------------- resume
def test_killed_study_resumes_only_missing_cells(tmp_path):
    from core.jobs.studies import start_study_job, watch_study

    store = RunStore(tmp_path / "store")
    study = execute.start_study(store, tiny_study(seeds=(0, 1), distill=False))
    proc = start_study_job(store, study.id)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:  # wait until the first group (seed 0) has finished, then kill the worker
            done = records.done_cells(store, [c.cell_id for c in study.cells()])
            if len(done) >= len(STRATEGIES):
                break
            assert proc.poll() is None, "the study worker exited early"
            time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    first = records.done_cells(store, [c.cell_id for c in study.cells()])
    assert len(STRATEGIES) <= len(first) < 2 * len(STRATEGIES)
    assert watch_study(store, study.id).status == "interrupted"
    finished_runs = set(first.values())
    execute.run_local(store, study.id)
    again = records.done_cells(store, [c.cell_id for c in study.cells()])
    assert len(again) == 2 * len(STRATEGIES)
    for cell_id, run_id in first.items():
        assert again[cell_id] == run_id  # a finished cell is never redone
    done_runs = [r for r in store.list_runs(status="done") if r.group_id == study.id]
    assert len(done_runs) == 2 * len(STRATEGIES)
    assert finished_runs <= {r.id for r in done_runs}
    assert records.get_study(store, study.id).status == "done"
    table = records.cell_table(store, records.get_study(store, study.id))
    assert (table["status"] == "done").all()


def test_only_and_seeds_run_a_subset_of_a_study_file_and_name_a_wrong_one():
    """The full-path study is measured a dataset at a time across sessions (a store does not outlive one)."""
    from core.cli.study import _study_from_args, build_parser

    study_file = str(Path(__file__).resolve().parents[1] / "data" / "studies" / "paper-small.toml")
    args = build_parser().parse_args(["run", "--config", study_file, "--only", "rotten-tomatoes"])
    cfg = _study_from_args(args)
    assert cfg.datasets == ("rotten-tomatoes",) and cfg.data.train_cap == 500 and "[rotten-tomatoes]" in cfg.name
    assert len(cfg.strategies) == 18
    bad = build_parser().parse_args(["run", "--config", study_file, "--only", "imdb"])
    with pytest.raises(ValueError, match="imdb not among the study file's datasets"):
        _study_from_args(bad)
    one = _study_from_args(build_parser().parse_args(["run", "--config", study_file, "--only", "trec", "--seeds", "1"]))
    assert one.datasets == ("trec",) and one.seeds == (1,) and "[trec, seed 1]" in one.name
    assert _study_from_args(build_parser().parse_args(["run", "--config", study_file])).seeds == (0, 1)
    with pytest.raises(ValueError, match=r"--seeds: 7 not among the study file's seeds \(0, 1\)"):
        _study_from_args(build_parser().parse_args(["run", "--config", study_file, "--seeds", "7"]))
    flags = _study_from_args(build_parser().parse_args(["run", "--datasets", "trec"]))
    assert flags.seeds == (0,)  # without a file the seed still defaults to 0


@pytest.mark.precision  # cell ids hold the resolved precision: the same cells either way
def test_strategies_narrow_a_study_file_to_the_same_cells():
    """The recorded pack is the full-path study's seed-0 cells of four strategies: run first, skipped later."""
    from core.cli.study import _study_from_args, build_parser

    study_file = str(Path(__file__).resolve().parents[1] / "data" / "studies" / "full-path.toml")
    whole = _study_from_args(build_parser().parse_args(["run", "--config", study_file]))
    part = _study_from_args(build_parser().parse_args(
        ["run", "--config", study_file, "--only", "trec", "--seeds", "0", "--strategies", "top_down", "oracle"]))
    assert part.strategies == ("oracle", "top_down") and part.datasets == ("trec",) and part.seeds == (0,)
    ids = {c.cell_id for c in whole.cells(snapshot="s")}
    assert {c.cell_id for c in part.cells(snapshot="s")} <= ids and len(ids) == 4 * 3 * 7
    with pytest.raises(ValueError, match="--strategies: taylor not among the study file's strategies"):
        _study_from_args(build_parser().parse_args(["run", "--config", study_file, "--strategies", "taylor"]))
