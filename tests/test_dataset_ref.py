"""Dataset references: one parse (keys, ``hub:``, ``upload:``, file paths) and one load for all of them."""

from __future__ import annotations

import pytest

from core.data.batches import DataError
from core.data.datasets import keyword_frame
from core.data.ref import DatasetRef, hub_ref, load_dataset_ref, resolve_dataset_ref
from core.data.upload import read_upload
from core.data.upload_store import list_uploads, load_saved_upload, save_upload, upload_info


@pytest.mark.parametrize("text, kind, value", [
    ("trec", "key", "trec"),
    ("ag_news", "key", "ag_news"),                      # the registry's hub:ag_news by its short name
    ("hub:ag_news", "hub", "ag_news"),                  # a registry key that is a hub id
    ("hub:someone/my_set", "hub", "someone/my_set"),    # any hub id
    ("upload:0123456789abcdef", "upload", "0123456789abcdef"),
    ("data/mine.csv", "file", "data/mine.csv"),
    ("~/x.PARQUET", "file", "~/x.PARQUET"),
    ("SetFit/ag_news", "key", "SetFit/ag_news"),        # org/name without a suffix: a key, checked when loaded
])
def test_parse_tells_each_form_apart_and_prints_back_as_written(text, kind, value):
    ref = DatasetRef.parse(text)
    assert (ref.kind, ref.value) == (kind, value)
    assert str(ref) == text  # the string is the stored form: configs keep dataset: str
    assert DatasetRef.parse(ref) is ref


def test_an_existing_file_without_a_table_suffix_is_a_file_but_a_registry_key_stays_a_key(tmp_path, monkeypatch):
    (tmp_path / "notes").write_text("text,label\n")
    (tmp_path / "trec").write_text("text,label\n")
    monkeypatch.chdir(tmp_path)
    assert DatasetRef.parse("notes").kind == "file"
    assert DatasetRef.parse("trec").kind == "key"


@pytest.mark.parametrize("text, says", [
    ("", "empty"), ("   ", "empty"),
    ("upload:", "write upload:<id>"),
    ("upload:../../etc/passwd", "not the id of a stored upload"),
    ("hub:", "write hub:<id>"),
    ("hub:ag news", "not a hub dataset id"),
])
def test_a_bad_reference_gets_a_message_naming_what_to_do(text, says):
    with pytest.raises(DataError, match=says) as err:
        DatasetRef.parse(text)
    message = str(err.value)
    assert any(hint in message for hint in ("Give a dataset key", "Setup page", "hub:ag_news")), message


def test_hub_ref_takes_what_a_person_types():
    assert str(hub_ref(" ag_news ")) == "hub:ag_news"
    assert str(hub_ref("hub:org/set")) == "hub:org/set"
    with pytest.raises(DataError, match="hub:ag_news"):
        hub_ref("two words")


def test_keys_and_hub_ids_load_through_the_registry(monkeypatch):
    loaded = load_dataset_ref("keywords")
    assert loaded.spec.key == "keywords" and len(loaded.frame) == 1200
    seen = []
    monkeypatch.setattr("core.data.datasets.load_hub_dataset", lambda name: seen.append(name) or loaded)
    assert load_dataset_ref("hub:someone/my_set") is loaded and seen == ["someone/my_set"]
    with pytest.raises(DataError, match="Unknown dataset 'no-such-set'"):
        load_dataset_ref("no-such-set")


def _uploaded(rows: int = 60):
    frame = keyword_frame(rows)
    return read_upload(frame.to_csv(index=False).encode(), "mine.csv", "text", "label")


class _Store:  # anything with a root folder (a RunStore) works as well as the folder itself
    def __init__(self, root):
        self.root = root


def test_an_upload_is_kept_in_the_store_and_loads_by_its_reference(tmp_path):
    loaded = _uploaded()
    ref = save_upload(tmp_path, loaded, "mine.csv")
    assert ref.kind == "upload" and save_upload(_Store(tmp_path), loaded, "mine.csv") == ref  # once per content
    again = load_dataset_ref(str(ref), _Store(tmp_path))
    assert again.spec.key == str(ref) and again.spec.source == "upload" and again.label_names == loaded.label_names
    assert again.frame.equals(loaded.frame)
    assert load_saved_upload(tmp_path, ref).frame.equals(loaded.frame)
    [info] = list_uploads(tmp_path)
    assert info.ref == ref and info.name == "mine.csv" and info.rows == 60 and info.labels == loaded.label_names
    assert upload_info(tmp_path, ref) == info
    assert upload_info(tmp_path, DatasetRef("upload", "0" * 16)) is None
    assert list_uploads(tmp_path / "empty") == []


def test_a_missing_upload_or_a_missing_store_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match="no longer in the store: upload it again"):
        load_dataset_ref("upload:0123456789abcdef", tmp_path)
    with pytest.raises(DataError, match="read from a run store"):
        load_dataset_ref("upload:0123456789abcdef")


def test_a_file_loads_with_the_upload_pages_checks_and_resolves_to_a_stored_upload(tmp_path):
    path = tmp_path / "t.tsv"
    keyword_frame(45).rename(columns={"text": "message"}).to_csv(path, sep="\t", index=False)
    direct = load_dataset_ref(str(path))
    assert len(direct.frame) == 45 and direct.num_classes == 3
    ref = resolve_dataset_ref(str(path), tmp_path / "store")
    assert ref.kind == "upload" and load_dataset_ref(ref, tmp_path / "store").frame.equals(direct.frame)
    assert resolve_dataset_ref(str(ref), tmp_path / "store") == ref
    assert str(resolve_dataset_ref("trec", tmp_path / "store")) == "trec"
    with pytest.raises(DataError, match="no such file"):
        load_dataset_ref(str(tmp_path / "nope.csv"))
    with pytest.raises(DataError, match="apply to a file"):
        resolve_dataset_ref("trec", tmp_path / "store", text_column="body")
    with pytest.raises(DataError, match="no longer in the store"):
        resolve_dataset_ref("upload:0123456789abcdef", tmp_path / "store")


def test_every_stored_dataset_string_round_trips():
    """Configs keep ``dataset: str``: every registry key and every dataset named in the shipped bank and reference
    results parses to a reference that prints back unchanged (stored runs keep opening)."""
    from pathlib import Path

    import pandas as pd

    from core.data.registry import DATASETS

    data = Path(__file__).resolve().parents[1] / "data"
    stored = set(DATASETS)
    stored |= set(pd.read_parquet(data / "bank" / "profiles.parquet", columns=["dataset"])["dataset"])
    for name in ("full_path.csv", "one_step.csv"):
        frame = pd.read_csv(data / "reference" / name)
        if "dataset" in frame:
            stored |= set(frame["dataset"].dropna())
    assert len(stored) > len(DATASETS) // 2
    for text in sorted(stored):
        ref = DatasetRef.parse(text)
        assert str(ref) == text and ref.kind in ("key", "hub")
