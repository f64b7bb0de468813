"""The on-demand quality scripts (mutation testing, planted bugs) stay pointed at code and tests that exist:
a refactor that moves a module or renames a test must update them, not leave them measuring nothing."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest

from tests.scripts import load_script

ROOT = Path(__file__).resolve().parent.parent


_script = load_script


@pytest.mark.parametrize("key", sorted(_script("mutation").MODULES))
def test_every_mutation_target_and_its_tests_exist(key):
    pattern, tests = _script("mutation").MODULES[key]
    assert glob.glob(str(ROOT / pattern)), f"{key}: nothing matches {pattern}"
    for test in tests:
        assert (ROOT / test).is_file(), f"{key}: {test} does not exist"


@pytest.mark.parametrize("number", range(1, 7))
def test_every_planted_bug_still_matches_the_code_once(number):
    bug = _script("plant_bugs").BUGS[number - 1]
    assert (ROOT / bug.file).read_text().count(bug.old) == 1, f"bug {number}: {bug.old!r} not found once in {bug.file}"
    test_file, _, test_name = bug.test.partition("::")
    source = (ROOT / test_file).read_text()
    assert not test_name or f"def {test_name}(" in source, f"bug {number}: {bug.test} does not exist"


def test_grow_bank_runs_only_the_paths_the_bank_lacks_seed_major():
    from core.studies.config import StudyConfig

    grow = _script("grow_bank")
    study = StudyConfig(models=("e5-small",), datasets=("trec", "bbc-news", "tweets"), strategies=("oracle",),
                        seeds=(0, 1), distill=False)
    manifest = {"coverage": [{"model": "e5-small", "dataset": "trec", "seeds": [0, 1]},
                             {"model": "e5-small", "dataset": "bbc-news", "seeds": [0]}]}
    assert grow.missing_paths(study, manifest) == [("e5-small", "tweets", 0), ("e5-small", "bbc-news", 1),
                                                   ("e5-small", "tweets", 1)]
    assert grow.missing_paths(study, {}) == [("e5-small", d, s) for s in (0, 1) for d in study.datasets]


def test_grow_bank_starts_a_regrow_from_the_paths_whose_splits_did_not_move(tmp_path):
    """--start-from BANK --drop D...: the new folder holds the bank's other datasets (their per-example outcomes
    too, the same rows), and growing it runs exactly the dropped datasets' paths plus the missing seeds."""
    from core.fusion import bank as B
    from core.studies.config import StudyConfig

    grow = _script("grow_bank")
    source = ROOT / "data" / "bank"
    shipped = B.load_bank(source)
    keep = sorted(set(shipped.rows["dataset"]))[:2]
    drop = sorted(set(shipped.rows["dataset"]) - set(keep))
    grow.start_from(str(source), str(tmp_path / "v"), drop, "data/studies/bank.toml")
    started = B.load_bank(tmp_path / "v")
    assert sorted(set(started.rows["dataset"])) == keep
    assert len(started.rows) == int(shipped.rows["dataset"].isin(keep).sum())
    outcomes = B.load_outcomes(tmp_path / "v", started)
    assert outcomes is not None and set(outcomes["run_id"]) == set(started.rows["run_id"])
    study = StudyConfig(models=("e5-small",), datasets=tuple(keep + drop[:1]), strategies=("oracle",), seeds=(0, 1),
                        distill=False)
    manifest = json.loads((tmp_path / "v" / "manifest.json").read_text())
    assert grow.missing_paths(study, manifest) == [("e5-small", drop[0], 0), ("e5-small", drop[0], 1)]
    with pytest.raises(SystemExit, match="not in the bank"):
        grow.start_from(str(source), str(tmp_path / "w"), ["no-such-dataset"], "x")
