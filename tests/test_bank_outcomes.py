"""The bank carries what its intervals need (issue 21): the per-example oracle outcomes companion
(data/bank/outcomes.parquet) is built from runs that stored them, checked against the manifest and the profiles,
kept compact, grown path by path; and profiles of a run whose teacher failed the guard never train a ranker."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.config import DataConfig
from core.fusion import bank as B
from core.fusion import bank_build as BB
from core.fusion.protocol import choose_training_rows
from core.jobs.execute import execute_run
from core.pruning.config import PruneConfig
from core.runs.store import RunStore

SMALL = DataConfig(train_cap=120, val_cap=40, test_cap=40)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A store with one finished tiny oracle-path run (it stores oracle_val outcomes at each step)."""
    store = RunStore(tmp_path_factory.mktemp("outcomestore"))
    cfg = PruneConfig(model="tiny-bert", dataset="keywords", strategy="oracle", layers_to_remove=2, step_epochs=1.0,
                      data=SMALL, calibration_size=32, distill=False)
    rid = store.create_run(kind="prune", model=cfg.model, dataset=cfg.dataset, strategy=cfg.strategy,
                           config=cfg.to_dict())
    assert execute_run(store, rid) == "done", store.get_run(rid).error
    rows = BB.bank_rows_from_store(store, code_version="test")
    return store, rid, rows


def test_outcomes_companion_round_trips_and_matches_the_oracle(built, tmp_path):
    store, rid, rows = built
    outcomes = BB.outcomes_from_store(store, rows)
    # one row per (step, removed layer, validation example): 12 + 11 layer-steps of the validation split
    n_val = outcomes["example"].nunique()
    assert 0 < n_val <= SMALL.val_cap and len(outcomes) == (12 + 11) * n_val
    manifest = BB.write_bank(rows, tmp_path, outcomes=outcomes)
    entry = manifest["outcomes"]
    assert entry["rows"] == len(outcomes) and entry["layer_steps"] == 23 and entry["steps"] == 2
    assert entry["sha256"] == B.file_sha256(tmp_path / B.OUTCOMES_FILE)
    bank = B.load_bank(tmp_path)
    back = B.load_outcomes(tmp_path, bank)
    assert list(back.columns) == list(B.OUTCOME_COLUMNS)
    assert str(back["correct"].dtype) == "int8" and str(back["loss"].dtype) == "float32"
    assert str(back["kl_to_teacher"].dtype) == "float32"
    # each layer-step's mean correctness is exactly the oracle accuracy of its profile row
    acc = back.groupby(["step", "original_layer"])["correct"].mean()
    prof = bank.rows.set_index(["step", "original_layer"])["oracle_accuracy"]
    assert np.allclose(acc.sort_index().to_numpy(), prof.loc[acc.sort_index().index].to_numpy(), atol=1e-9)
    # the KL to the teacher was stored (a teacher exists) and is a divergence
    assert back["kl_to_teacher"].notna().all() and (back["kl_to_teacher"] >= 0).all()
    assert entry["bytes_per_layer_step"] == pytest.approx(entry["bytes"] / 23, abs=0.1)


def test_the_companion_is_compact(tmp_path):
    """At bank scale the file costs about the values' own bytes (int8 + two float32 per example and layer-step):
    the keys (run, step, layer, example) compress to almost nothing."""
    from tests.paper_synthetic import synthetic_bank

    rows, outcomes = synthetic_bank(n_examples=1000)
    entry = BB.write_bank(rows, tmp_path, outcomes=outcomes)["outcomes"]
    per_row = entry["bytes"] / entry["rows"]
    print(f"{entry['bytes']:,} bytes for {entry['rows']:,} rows: {per_row:.2f} bytes per example, "
          f"{entry['bytes_per_layer_step'] / 1e3:.1f} kB per layer-step of 1,000 examples")
    assert per_row < 8.5  # 9 bytes of values before compression


def test_a_damaged_companion_is_refused_and_a_bank_without_one_says_so(built, tmp_path):
    store, rid, rows = built
    BB.write_bank(rows, tmp_path, outcomes=BB.outcomes_from_store(store, rows))
    path = tmp_path / B.OUTCOMES_FILE
    edited = pd.read_parquet(path)
    edited.loc[0, "correct"] = 1 - edited.loc[0, "correct"]
    edited.to_parquet(path, index=False)
    with pytest.raises(B.BankError, match="does not match the checksum"):
        B.load_outcomes(tmp_path)
    # rewritten without outcomes: the old companion goes, the manifest names none
    manifest = BB.write_bank(rows, tmp_path)
    assert "outcomes" not in manifest and not path.exists()
    assert B.load_outcomes(tmp_path) is None and B.load_bank(tmp_path).outcomes is None
    # an outcome block whose accuracy disagrees with its profile cannot be written
    bad = BB.outcomes_from_store(store, rows)
    bad.loc[bad.index[0], "correct"] = 1 - bad.loc[bad.index[0], "correct"]
    with pytest.raises(B.BankError, match="differs from its profile"):
        BB.write_bank(rows, tmp_path, outcomes=bad)


def test_growing_keeps_the_outcomes_of_paths_the_new_store_did_not_rerun(built, tmp_path):
    store, rid, rows = built
    outcomes = BB.outcomes_from_store(store, rows)
    other_rows = rows.assign(dataset="trec", run_id=rows["run_id"] + "-trec")
    other_out = outcomes.assign(run_id=outcomes["run_id"] + "-trec")
    BB.write_bank(pd.concat([rows, other_rows], ignore_index=True), tmp_path,
                 outcomes=pd.concat([outcomes, other_out], ignore_index=True))
    old = B.load_bank(tmp_path)
    # a later session re-ran keywords only, in a store without outcomes (an older run): keywords loses its
    # outcomes, trec keeps its own
    grown = BB.merge_rows(old.rows, rows.assign(run_id=rows["run_id"] + "-again"))
    kept = BB.merge_outcomes(B.load_outcomes(tmp_path, old), None, grown)
    assert set(kept["run_id"]) == {rid + "-trec"}
    manifest = BB.write_bank(grown, tmp_path, outcomes=kept)
    assert manifest["outcomes"]["layer_steps"] == 23 and manifest["rows"] == 46


def test_cli_bank_writes_the_companion(built, tmp_path, capsys):
    from core.cli.study import main

    store, rid, rows = built
    assert main(["bank", "--store", str(store.root), "--out", str(tmp_path), "--code-version", "t"]) == 0
    out = capsys.readouterr().out
    assert "per-example oracle outcomes: 23 of 23 layer-steps" in out
    assert json.loads((tmp_path / B.MANIFEST_FILE).read_text())["outcomes"]["layer_steps"] == 23


def test_weak_teacher_profiles_never_train_a_ranker(built, tmp_path, monkeypatch):
    """A run pruned over a teacher that failed the guard: never banked, flagged in the training rows, left out of
    every ranker's rows with the count and the reason in the protocol's sentence."""
    store, rid, rows = built
    monkeypatch.setenv("PRUNE_BANK_DIR", str(tmp_path / "nobank"))  # no bank: the store's rows only
    weak_store = RunStore(tmp_path / "weak")
    profile = store.profiles()
    ids = {}
    for name, weak in (("trec", True), ("bbc-news", False)):
        run_id = weak_store.create_run(kind="prune", model="tiny-bert", dataset=name, strategy="oracle",
                                       config={"seed": 0})
        ids[name] = run_id
        for step, part in profile.groupby("step"):
            weak_store.add_profile(run_id, int(step), "tiny-bert", name,
                                   part.drop(columns=["run_id", "step", "model", "dataset"]))
        if weak:
            weak_store.update_summary(run_id, {"weak_teacher": True})
    assert B.weak_teacher_runs(weak_store) == {ids["trec"]}
    training = B.training_profiles(weak_store)
    assert training.loc[training["run_id"] == ids["trec"], B.WEAK_TEACHER].all()
    assert not training.loc[training["run_id"] == ids["bbc-news"], B.WEAK_TEACHER].any()
    chosen, protocol = choose_training_rows(training, "tiny-bert", "keywords", "new-run", 1)
    assert set(chosen["dataset"]) == {"bbc-news"} and protocol.n_rows == 23
    assert protocol.left_out_weak == 23
    assert "Left out 23 layer-step(s) of 1 run(s) whose teacher failed the guard" in protocol.description
    assert protocol.to_dict()["left_out_weak"] == 23
    # nothing left out: the sentence does not mention it
    _, clean = choose_training_rows(training[~training[B.WEAK_TEACHER]], "tiny-bert", "keywords", "new-run", 1)
    assert clean.left_out_weak == 0 and "Left out" not in clean.description
    # the bank is built only from runs with a sound teacher
    store.update_summary(rid, {"weak_teacher": True})
    try:
        assert BB.bank_rows_from_store(store, code_version="t").empty
    finally:
        store.update_summary(rid, {"weak_teacher": False})


def test_a_study_grown_bank_carries_outcomes_and_the_paper_check_scores_held_out(tmp_path, capsys):
    """The lead's path, tiny: an oracle-only study (what scripts/grow_bank.py runs, one dataset and seed), then
    `study bank --add` into a fresh folder, then `study paper` on a bank with three datasets."""
    from core.cli.study import main
    from core.studies import execute
    from core.studies.config import StudyConfig

    store = RunStore(tmp_path / "store")
    cfg = StudyConfig(name="bank tiny", models=("tiny-bert",), datasets=("keywords",), strategies=("oracle",),
                      seeds=(0,), layers_to_remove=2, step_epochs=1.0, distill=False, calibration_size=32,
                      data=SMALL)
    study = execute.start_study(store, cfg)
    execute.run_local(store, study.id)
    bank = tmp_path / "bank"
    # a fresh folder: --add starts the bank (the first path of a regrow)
    assert main(["bank", "--add", "--store", str(store.root), "--out", str(bank), "--code-version", "t"]) == 0
    assert "per-example oracle outcomes: 23 of 23 layer-steps" in capsys.readouterr().out
    grown = B.load_bank(bank)
    rows, outcomes = grown.rows, B.load_outcomes(bank, grown)
    # two more datasets (copies under other names) so that fusion is scored leave-one-dataset-out
    extra_rows = [rows.assign(dataset=d, run_id=rows["run_id"] + d) for d in ("trec", "bbc-news")]
    extra_out = [outcomes.assign(run_id=outcomes["run_id"] + d) for d in ("trec", "bbc-news")]
    BB.write_bank(pd.concat([rows[list(B.COLUMNS)], *[r[list(B.COLUMNS)] for r in extra_rows]], ignore_index=True),
                 bank, outcomes=pd.concat([outcomes, *extra_out], ignore_index=True))
    out = tmp_path / "reference"
    assert main(["paper", "--bank", str(bank), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "one-step regret scored on held-out halves" in printed
    assert "[rf_beats_lr]" in printed and ("within noise" in printed or "beyond noise" in printed)
    table = pd.read_csv(out / "one_step.csv")
    assert "noise_floor" in set(table["strategy"]) and (table.loc[table["strategy"] != "oracle", "scoring"]
                                                        == "held-out halves").all()
    meta = json.loads((out / "claims.json").read_text())
    assert meta["scoring"].startswith("scored on held-out halves")


def test_a_store_holding_a_path_twice_banks_only_the_newest_run(built):
    """A store kept across a change that made older cells stale holds the same path twice: only the newest
    finished run is banked (never two runs of one path)."""
    _, rid, rows = built
    older = rows.assign(run_id="older-run", oracle_accuracy=0.0)
    kept = BB._newest_per_path([rows, older], {rid: 200.0, "older-run": 100.0})
    assert len(kept) == 1 and kept[0]["run_id"].iloc[0] == rid
    kept = BB._newest_per_path([rows, older], {rid: 100.0, "older-run": 200.0})
    assert kept[0]["run_id"].iloc[0] == "older-run"
