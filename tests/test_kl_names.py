"""One name per KL (issue 29 item 4): the oracle's KL is against the step's current model (``kl_to_current`` in
the oracle table, ``oracle_kl_to_current`` in profiles and the bank), the per-example KL against the original
teacher (``kl_to_teacher``). Files written under the old names (``kl``, ``oracle_kl``) still load, under today's."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.fusion import bank as B
from core.fusion import bank_build as BB
from core.fusion import features as F
from core.oracle import KL_TO_CURRENT, best_layer, compute_oracle, upgrade_oracle_table
from tests.paper_synthetic import synthetic_bank


def test_the_oracle_table_names_its_reference_and_old_tables_still_read(tiny_model, keyword_batches):
    oracle = compute_oracle(tiny_model, keyword_batches["val"], precision="fp32")
    assert KL_TO_CURRENT in oracle.columns and "kl" not in oracle.columns
    assert F.ORACLE_TABLE_KL[0] == KL_TO_CURRENT  # the profile builder reads the oracle's own name
    legacy = oracle.rename(columns={KL_TO_CURRENT: "kl"})
    assert best_layer(legacy) == best_layer(oracle)
    assert upgrade_oracle_table(legacy)[KL_TO_CURRENT].equals(oracle[KL_TO_CURRENT])
    signals = pd.DataFrame({"original_layer": oracle["original_layer"], "layer": oracle["layer"]})
    for table in (oracle, legacy):
        rows = F.profile_rows(signals, table, run_id="r", dataset="d", model="m", step=1, n_original=len(oracle))
        assert F.ORACLE_KL in rows.columns and "oracle_kl" not in rows.columns
        assert np.allclose(rows[F.ORACLE_KL], oracle[KL_TO_CURRENT])


def test_profiles_of_old_and_new_runs_concatenated_keep_one_kl_column():
    old = pd.DataFrame({"run_id": ["a", "a"], "oracle_kl": [0.1, 0.2]})
    new = pd.DataFrame({"run_id": ["b", "b"], F.ORACLE_KL: [0.3, 0.4]})
    both = F.upgrade_profiles(pd.concat([old, new], ignore_index=True))
    assert "oracle_kl" not in both.columns
    assert both[F.ORACLE_KL].tolist() == [0.1, 0.2, 0.3, 0.4]
    assert F.upgrade_profiles(both).equals(both)  # idempotent


def _old_named_bank(folder, rows: pd.DataFrame) -> None:
    """A bank written by the code before the rename: the profile column ``oracle_kl``, its checksum matching."""
    BB.write_bank(rows, folder)
    path = folder / B.PROFILES_FILE
    table = pd.read_parquet(path).rename(columns={F.ORACLE_KL: "oracle_kl"})
    table.to_parquet(path, index=False)
    manifest = json.loads((folder / B.MANIFEST_FILE).read_text())
    manifest["sha256"] = B.file_sha256(path)
    (folder / B.MANIFEST_FILE).write_text(json.dumps(manifest))


def test_bank_kl_names_round_trip(tmp_path):
    profiles, _ = synthetic_bank(datasets=("alpha", "beta"), steps=2, n_examples=40)
    rows = profiles[list(B.COLUMNS)].assign(**{F.ORACLE_KL: np.linspace(0.0, 1.0, len(profiles))})
    old = tmp_path / "old"
    _old_named_bank(old, rows)
    assert "oracle_kl" in pd.read_parquet(old / B.PROFILES_FILE).columns
    loaded = B.load_bank(old)  # the old file, unchanged on disk, read under today's name
    assert F.ORACLE_KL in loaded.rows.columns and "oracle_kl" not in loaded.rows.columns
    assert np.allclose(loaded.rows[F.ORACLE_KL], rows[F.ORACLE_KL])
    again = tmp_path / "new"
    BB.write_bank(loaded.rows[list(B.COLUMNS) + [F.ORACLE_KL]], again)
    written = pd.read_parquet(again / B.PROFILES_FILE)
    assert F.ORACLE_KL in written.columns and "oracle_kl" not in written.columns
    assert np.allclose(B.load_bank(again).rows[F.ORACLE_KL], rows[F.ORACLE_KL])
    # growing an old bank with new rows keeps one column, every value kept
    grown = BB.merge_rows(pd.read_parquet(old / B.PROFILES_FILE), written[written["dataset"] == "beta"])
    assert "oracle_kl" not in grown.columns and grown[F.ORACLE_KL].notna().all()


def test_the_shipped_bank_loads_and_its_two_kls_have_different_references():
    """The bank's KL is to the step's current model, the outcomes' to the original teacher: equal at step 1 (the
    current model is the teacher), apart from step 2 on. This is what the names say."""
    bank = B.load_bank(B.BANK_DIR)  # the shipped folder (the tests point PRUNE_BANK_DIR elsewhere)
    assert bank.manifest["sha256"] == B.file_sha256(B.BANK_DIR / B.PROFILES_FILE)  # the shipped file is untouched
    assert F.ORACLE_KL in bank.rows.columns and "oracle_kl" not in bank.rows.columns
    outcomes = B.load_outcomes(B.BANK_DIR, bank)
    if outcomes is None:
        pytest.skip("the shipped bank has no per-example outcomes")
    assert "kl_to_teacher" in outcomes.columns
    mean = outcomes.groupby(["run_id", "step", "original_layer"])["kl_to_teacher"].mean().rename("to_teacher")
    both = bank.rows.merge(mean.reset_index(), on=["run_id", "step", "original_layer"])
    gap = (both[F.ORACLE_KL] - both["to_teacher"]).abs()
    assert gap[both["step"] == 1].max() < 1e-4
    assert gap[both["step"] >= 2].max() > 0.05
