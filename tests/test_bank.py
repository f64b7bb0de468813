"""The profile bank: built from a store, validated on load (damaged files give BankError, never a crash), and what
fusion trains on from a fresh store's first step (the bank, leave-one-dataset-out)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from core.config import DataConfig
from core.fusion import bank as B
from core.fusion import bank_build as BB
from core.jobs.execute import execute_run
from core.pruning.config import PruneConfig
from core.runs.store import RunStore

SMALL = DataConfig(train_cap=120, val_cap=40, test_cap=40)


def _run(store: RunStore, **kw) -> str:
    cfg = PruneConfig(**{**dict(model="tiny-bert", dataset="keywords", strategy="oracle", layers_to_remove=2,
                                step_epochs=1.0, data=SMALL, calibration_size=32, distill=False), **kw})
    rid = store.create_run(kind="prune", model=cfg.model, dataset=cfg.dataset, strategy=cfg.strategy,
                           config=cfg.to_dict())
    assert execute_run(store, rid) == "done", store.get_run(rid).error
    return rid


@pytest.fixture(scope="module")
def bank_rows(tmp_path_factory) -> pd.DataFrame:
    """Bank rows of a tiny oracle-path run, plus copies standing in for two other datasets."""
    store = RunStore(tmp_path_factory.mktemp("bankstore"))
    _run(store)
    rows = BB.bank_rows_from_store(store, code_version="test")
    assert len(rows) == 12 + 11  # two steps: 12 then 11 remaining layers
    others = [rows.assign(dataset=name, run_id=rows["run_id"] + "-" + name) for name in ("trec", "bbc-news")]
    return pd.concat([rows, *others], ignore_index=True)


def test_bank_rows_carry_provenance(bank_rows):
    rows = bank_rows[bank_rows["dataset"] == "keywords"]
    assert set(B.COLUMNS) <= set(rows.columns)
    assert rows["removed_so_far"].map(json.loads).map(len).tolist() == [0] * 12 + [1] * 11
    assert rows["teacher_fingerprint"].nunique() == 1 and len(rows["teacher_fingerprint"].iloc[0]) == 20
    assert json.loads(rows["data_config"].iloc[0])["train_cap"] == 120
    assert (rows["code_version"] == "test").all() and (rows["seed"] == 0).all()


def test_bank_round_trip_and_coverage(tmp_path, bank_rows):
    manifest = BB.write_bank(bank_rows, tmp_path, study_file="data/studies/bank.toml")
    assert manifest["rows"] == len(bank_rows) and manifest["version"] == B.VERSION
    bank = B.load_bank(tmp_path)
    assert len(bank.rows) == len(bank_rows) and bank.source == f"bank v{B.VERSION}"
    assert set(bank.coverage()["dataset"]) == {"keywords", "trec", "bbc-news"}
    assert "score__weight_magnitude" in bank.rows  # oriented scores are derived from the registry on load


def test_a_bank_grows_path_by_path_over_sessions(tmp_path, bank_rows):
    first = bank_rows[bank_rows["dataset"] != "bbc-news"]
    BB.write_bank(first, tmp_path)
    # a later session re-ran trec (new numbers) and added bbc-news; keywords it never touched stays
    redo = bank_rows[bank_rows["dataset"].isin(["trec", "bbc-news"])].assign(
        oracle_accuracy=lambda f: f["oracle_accuracy"] * 0.5)
    grown = BB.merge_rows(B.load_bank(tmp_path).rows, redo)
    assert len(grown) == len(bank_rows)
    by = grown.groupby("dataset")["oracle_accuracy"].sum()
    base = bank_rows.groupby("dataset")["oracle_accuracy"].sum()
    assert by["keywords"] == pytest.approx(base["keywords"])
    assert by["trec"] == pytest.approx(base["trec"] * 0.5) and by["bbc-news"] == pytest.approx(base["bbc-news"] * 0.5)
    BB.write_bank(grown, tmp_path)
    assert len(B.load_bank(tmp_path).rows) == len(bank_rows)


@pytest.mark.parametrize("damage, message", [
    ("truncate", "does not match the checksum"),
    ("edit_value", "does not match the checksum"),
    ("manifest_json", "is not valid JSON"),
    ("manifest_version", "this code reads version"),
    ("missing", "does not exist"),
    ("consistent_but_nan", "missing or infinite"),
    ("consistent_but_column", "are missing"),
])
def test_damaged_bank_gives_the_documented_error(tmp_path, bank_rows, damage, message):
    BB.write_bank(bank_rows, tmp_path)
    ppath, mpath = tmp_path / B.PROFILES_FILE, tmp_path / B.MANIFEST_FILE
    if damage == "truncate":
        ppath.write_bytes(ppath.read_bytes()[:200])
    elif damage == "edit_value":
        edited = pd.read_parquet(ppath)
        edited.loc[0, "oracle_accuracy"] = 0.5
        edited.to_parquet(ppath, index=False)
    elif damage == "manifest_json":
        mpath.write_text("{not json")
    elif damage == "manifest_version":
        mpath.write_text(json.dumps({**json.loads(mpath.read_text()), "version": 99}))
    elif damage == "missing":
        ppath.unlink()
    else:  # a hand-edit that also rewrote the checksum: the content checks still catch it
        edited = pd.read_parquet(ppath)
        if damage == "consistent_but_nan":
            edited.loc[3, "taylor"] = float("nan")
        else:
            edited = edited.drop(columns=["oracle_loss"])
        edited.to_parquet(ppath, index=False)
        mpath.write_text(json.dumps({**json.loads(mpath.read_text()), "sha256": B.file_sha256(ppath)}))
    with pytest.raises(B.BankError, match=message) as err:
        B.load_bank(tmp_path)
    assert "python -m core study bank" in str(err.value)  # says what to do
    bank, reason = B.bank_or_none(tmp_path)  # the app keeps working without it
    assert bank is None and message.split()[0] in reason


def test_fresh_store_first_fusion_step_trains_on_the_bank_never_on_its_dataset(tmp_path, monkeypatch, bank_rows):
    """A fresh store's first rf_fusion step (tiny stand-in: pruning `trec`, the bank holding trec, bbc-news and
    keywords rows) is trained from the bank, leave-one-dataset-out: no trec row, from any run or source."""
    from core.fusion import read_choice

    bank_folder = tmp_path / "bank"
    BB.write_bank(bank_rows, bank_folder)
    monkeypatch.setenv("PRUNE_BANK_DIR", str(bank_folder))
    store = RunStore(tmp_path / "fresh")
    # the tiny model prunes the keyword task under the name it has in this store; the bank's "keywords" rows
    # stand for the dataset being pruned, "trec" and "bbc-news" for the others
    rid = _run(store, strategy="rf_fusion", layers_to_remove=1)
    choice = read_choice(store.read_json(rid, "steps/1/choice.json"))
    assert choice is not None and choice.protocol.name == "leave_one_dataset_out"
    assert "keywords" not in choice.protocol.datasets
    assert set(choice.protocol.datasets) == {"trec", "bbc-news"}
    assert choice.protocol.n_rows == int((bank_rows["dataset"] != "keywords").sum())
    assert any(src.startswith("bank v") for src in choice.protocol.sources)
    assert choice.ranker is not None and choice.explanation is not None
    assert choice.chosen_layer == store.steps(rid)["removed"].iloc[1]


def test_shipped_bank_loads_if_present():
    if not (B.BANK_DIR / B.MANIFEST_FILE).exists():
        pytest.skip("no bank shipped in data/bank yet")
    bank = B.load_bank(B.BANK_DIR)
    rows = bank.rows
    assert (rows["model"] == "e5-small").all()
    # the manifest's coverage is what the file holds, dataset by dataset
    manifest = json.loads((B.BANK_DIR / B.MANIFEST_FILE).read_text())
    assert manifest["rows"] == len(rows)
    for entry in manifest["coverage"]:
        part = rows[(rows["model"] == entry["model"]) & (rows["dataset"] == entry["dataset"])]
        assert len(part) == entry["rows"] and sorted(part["seed"].unique()) == entry["seeds"]
    assert sum(e["rows"] for e in manifest["coverage"]) == len(rows)
    # every profiled step profiles every remaining layer once, with a finite oracle
    for _, step in rows.groupby(["dataset", "seed", "run_id", "step"]):
        assert len(step) == step["n_layers"].iloc[0] == step["layer"].nunique()
    assert rows["oracle_accuracy"].between(0, 1).all()


def test_the_paper_check_budget_is_read_from_the_bank_not_assumed(bank_rows, tmp_path):
    from core.studies import paper

    BB.write_bank(bank_rows, tmp_path, study_file="data/studies/bank.toml")
    bank = B.load_bank(tmp_path)
    summary = paper.summarise_one_step(paper.one_step_table(bank.rows, ("random", "top_down")))
    text = paper.bank_budget(bank, summary)
    assert "tiny-bert" in text and f"{SMALL.train_cap:,} training rows" in text
    assert f"length {SMALL.max_length}" in text and "1 seed per dataset" in text
