"""Leak-free splits (issue 21): no normalised text in two splits, for every embedded dataset at the default
DataConfig and for an upload with duplicates; texts carrying two labels are left out and reported."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from core.config import DataConfig
from core.data import registry as R
from core.data.batches import Splits, make_splits, split_rows
from core.data.datasets import load_dataset
from core.data.splits import SplitReport, label_conflicts, normalise_text, one_row_per_text
from core.data.upload import read_upload
from tests.conftest import keyword_frame

EMBEDDED = [k for k, s in R.DATASETS.items() if s.source in ("package", "synthetic")]


def shared_texts(s: Splits) -> dict[str, int]:
    keys = {name: set(normalise_text(getattr(s, name)["text"])) for name in ("train", "val", "test")}
    return {f"{a}&{b}": len(keys[a] & keys[b]) for a, b in (("train", "val"), ("train", "test"), ("val", "test"))}


def test_normalisation_is_the_upload_strip_plus_whitespace_runs_and_case():
    texts = pd.Series(["  Win a prize\n", "Win  a\tprize", "win a PRIZE", "Straße"])
    assert normalise_text(texts).tolist() == ["win a prize", "win a prize", "win a prize", "strasse"]


def test_texts_differing_only_in_case_are_one_text():
    """BBC News holds one article twice, "grand slam" in one copy and "Grand Slam" in the other (issue 29)."""
    frame = pd.DataFrame({"text": ["He won the grand slam.", "He won the Grand Slam.", "Other."], "label": [2, 2, 1]})
    out, report = one_row_per_text(frame)
    assert out["text"].tolist() == ["He won the grand slam.", "Other."] and report.duplicate_rows == 1


def test_one_row_per_text_keeps_repeats_once_and_drops_conflicts():
    frame = pd.DataFrame({"text": ["a b", "a  b", "c", "c ", "d", "e", "d"],
                          "label": [0, 0, 1, 0, 1, 1, 1]})
    out, report = one_row_per_text(frame)
    assert out["text"].tolist() == ["a b", "d", "e"]  # first occurrences, original order; "c" has labels 0 and 1
    assert report == SplitReport(rows=7, duplicate_rows=2, test_copies=0, conflicting_texts=1, conflicting_rows=2)
    assert report.kept == 3 and len(report.notes()) == 2 and "two or more different labels" in report.notes()[1]
    assert label_conflicts(frame) == (1, 2)


def test_the_official_test_row_of_a_repeated_text_is_kept():
    frame = pd.DataFrame({"text": ["x", "y", "x", "z", "y"], "label": [0, 1, 0, 1, 1],
                          "split": ["train", "train", "test", "test", "train"]})
    out, report = one_row_per_text(frame)
    assert list(zip(out["text"], out["split"])) == [("y", "train"), ("x", "test"), ("z", "test")]
    assert (report.duplicate_rows, report.test_copies) == (2, 1)


def test_a_frame_without_repeats_splits_exactly_as_before():
    frame = keyword_frame(n=300, classes=3)
    assert not normalise_text(frame["text"]).duplicated().any()
    cfg = DataConfig(train_cap=90, val_cap=30, test_cap=30, seed=5)
    new, old = make_splits(frame, ["a", "b", "c"], cfg), split_rows(frame, ["a", "b", "c"], cfg)
    assert all(getattr(new, n).equals(getattr(old, n)) for n in ("train", "val", "test"))
    assert new.report == SplitReport(rows=300)


def test_repeated_texts_leaked_before_and_do_not_now():
    base = keyword_frame(n=240, classes=2)
    frame = pd.concat([base, base.head(80).assign(text=lambda f: " " + f["text"] + "  ")], ignore_index=True)
    cfg = DataConfig(train_cap=500, val_cap=500, test_cap=500)
    assert sum(shared_texts(split_rows(frame, ["a", "b"], cfg)).values()) > 0
    s = make_splits(frame, ["a", "b"], cfg)
    assert shared_texts(s) == {"train&val": 0, "train&test": 0, "val&test": 0}
    assert s.report.duplicate_rows == 80 and sum(s.sizes().values()) == 240


def test_an_upload_with_repeats_and_conflicting_labels(tiny_tokenizer):
    from core.data.task import prepare_task

    frame = keyword_frame(n=150, classes=3)
    rows = [(t, lab) for t, lab in zip(frame["text"], frame["label"])]
    rows += [(f"  {t}", lab) for t, lab in rows[:30]]          # the same texts again, padded: repeats
    rows += [(rows[40][0], (rows[40][1] + 1) % 3), (rows[41][0], (rows[41][1] + 2) % 3)]  # two texts, two labels
    csv = "text,label\n" + "\n".join(f'"{t}",{lab}' for t, lab in rows)
    loaded = read_upload(csv.encode(), "mine.csv", "text", "label")
    assert "2 text(s) carry two or more different labels" in loaded.spec.description
    s = make_splits(loaded.frame, loaded.label_names, DataConfig(train_cap=500, val_cap=500, test_cap=500))
    assert shared_texts(s) == {"train&val": 0, "train&test": 0, "val&test": 0}
    assert (s.report.conflicting_texts, s.report.conflicting_rows) == (2, 4)
    assert s.report.kept == sum(s.sizes().values()) == 148
    task = prepare_task("tiny-bert", loaded, DataConfig(train_cap=500, val_cap=500, test_cap=500))
    assert task.describe()["data_report"]["conflicting_texts"] == 2


@pytest.mark.integration
def test_no_embedded_dataset_shares_a_text_between_splits_at_the_default_budget():
    start = time.perf_counter()
    cfg = DataConfig()
    for key in EMBEDDED:
        loaded = load_dataset(key)
        s = make_splits(loaded.frame, loaded.label_names, cfg)
        assert shared_texts(s) == {"train&val": 0, "train&test": 0, "val&test": 0}, key
        every = pd.concat([s.train, s.val, s.test])
        assert label_conflicts(every) == (0, 0), key
    assert time.perf_counter() - start < 120  # ~5 s here: loading the package files dominates
