"""scripts/archive/leak_effect.py's pure parts: which old test rows leaked (their normalised text is in training),
and the accuracies and differences computed from per-example outcomes split by that flag."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.scripts import load_script

ROOT = Path(__file__).resolve().parent.parent


le = load_script("archive/leak_effect")


def test_leaked_mask_compares_normalised_texts_in_test_order():
    train = pd.DataFrame({"text": ["free prize now", "  see you  at\tnoon ", "call me"], "label": [1, 0, 0]})
    test = pd.DataFrame({"text": ["hello there", "free  prize now ", "see you at noon", "call  me later", "Call me"],
                         "label": [0, 1, 0, 0, 0]})
    # repeats up to whitespace and case (on either side; case since issue 29): leaked; a longer text: not
    assert le.leaked_mask(test, train).tolist() == [False, True, True, False, True]
    assert le.leaked_mask(test, train.iloc[:0]).tolist() == [False] * 5
    assert le.leaked_mask(test.iloc[:0], train).tolist() == []


def test_compare_partitions_outcomes_by_leak_flag():
    old_correct = np.array([1, 1, 1, 0, 1, 0, 0, 1], dtype=bool)
    leaked = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    new_correct = np.array([1, 0, 1, 0, 1, 0], dtype=bool)
    r = le.compare(old_correct, leaked, new_correct)
    assert (r["n old test"], r["n leaked"], r["n clean"], r["n new test"]) == (8, 3, 5, 6)
    assert r["old all"].estimate == pytest.approx(5 / 8)
    assert r["old leaked"].estimate == pytest.approx(1.0)
    assert r["old clean"].estimate == pytest.approx(2 / 5)
    assert r["new"].estimate == pytest.approx(3 / 6)
    assert r["old - new"].estimate == pytest.approx(5 / 8 - 3 / 6)
    assert r["leaked - clean"].estimate == pytest.approx(1.0 - 2 / 5)
    assert r["old clean"].method == "Wilson" and r["old - new"].method.startswith("Newcombe")
    assert r["old all"].low < 5 / 8 < r["old all"].high
    flat = le.flat(r)
    assert flat["old leaked"]["n"] == 3 and flat["n clean"] == 5


def test_compare_without_leaks_has_no_leaked_interval():
    r = le.compare(np.array([1, 0, 1], dtype=bool), np.zeros(3, dtype=bool), np.array([1, 1], dtype=bool))
    assert r["n leaked"] == 0 and r["old leaked"] is None and r["leaked - clean"] is None
    assert le.table_row("x", r)["old leaked"] == "-"
    with pytest.raises(ValueError):
        le.compare(np.array([1, 0], dtype=bool), np.array([1], dtype=bool), np.array([1], dtype=bool))
