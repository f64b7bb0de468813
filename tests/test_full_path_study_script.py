"""The full-path study's driver (``scripts/full_path_study.py``) reads what is measured from committed files only:
the shipped recorded pack's cells count as done, and a tree runs only the strategies it still lacks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.studies.config import StudyConfig
from tests.scripts import load_script

ROOT = Path(__file__).resolve().parent.parent


def test_the_pack_cells_are_measured_and_a_tree_runs_only_what_it_lacks(monkeypatch, tmp_path):
    script = load_script("full_path_study")
    study = StudyConfig.load(ROOT / "data" / "studies" / "full-path.toml")
    monkeypatch.setenv("PRUNE_PACK_DIR", str(ROOT / "data" / "pack"))
    monkeypatch.setattr(script, "load_full_path", lambda: None)  # nothing in the table: the pack alone
    done = script.measured(study)
    assert ("trec", 0, "rf_fusion") in done and ("rotten-tomatoes", 0, "top_down") in done
    assert not any(seed > 0 for _, seed, _ in done) and len(done) == 12
    trees = script.missing_trees(study)
    assert trees[0] == ("trec", 0, ["lr_fusion", "block_influence", "random"])
    assert len(trees) == len(study.datasets) * len(study.seeds)  # every tree lacks something

    # one more cell in the table at the study's budget; a row at another budget does not count
    table = pd.DataFrame([{"dataset": "trec", "seed": 0, "strategy": "random", "train_cap": study.data.train_cap,
                           "after_kd": 0.9},
                          {"dataset": "trec", "seed": 0, "strategy": "lr_fusion", "train_cap": 500, "after_kd": 0.9}])
    monkeypatch.setattr(script, "load_full_path", lambda: table)
    assert script.missing_trees(study)[0] == ("trec", 0, ["lr_fusion", "block_influence"])
    monkeypatch.setenv("PRUNE_PACK_DIR", "off")
    assert script.missing_trees(study)[0][2] == [s for s in study.strategies if s != "random"]


def test_the_frozen_bank_is_the_snapshot_the_recorded_fusion_cells_trained_on():
    """The study's fusion cells train on data/studies/full-path-bank, not data/bank: the pack's rf_fusion runs
    recorded that snapshot, so a grown data/bank leaves the study's cell ids (and rankers) as they were."""
    import json

    from core.fusion.bank import training_profiles
    from core.studies.records import snapshot_digest

    script = load_script("full_path_study")
    frozen = snapshot_digest(training_profiles(None, bank_folder=script.FROZEN_BANK))
    recorded = set()
    for config in (ROOT / "data" / "pack" / "runs").glob("*/config.json"):
        cfg = json.loads(config.read_text())
        if cfg.get("strategy") in ("rf_fusion", "lr_fusion"):
            recorded.add(str(cfg.get("profile_snapshot")))
    assert recorded == {frozen}, (recorded, frozen)


def test_a_pinned_bank_folder_that_holds_no_bank_is_refused_before_anything_runs(monkeypatch, tmp_path, capsys):
    from core.cli.study import main

    monkeypatch.setenv("PRUNE_STORE_DIR", str(tmp_path / "store"))
    rc = main(["run", "--bank-folder", str(tmp_path / "nothing"), "--config", str(ROOT / "data" / "studies" /
               "full-path.toml"), "--only", "trec", "--seeds", "0", "--strategies", "rf_fusion"])
    err = capsys.readouterr().err
    assert rc == 2 and "no usable profile bank" in err and "manifest.json" in err
    assert not (tmp_path / "store" / "studies").exists() or not any((tmp_path / "store" / "studies").iterdir())
