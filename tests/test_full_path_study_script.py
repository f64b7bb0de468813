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
