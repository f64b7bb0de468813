"""The dataset registry, the synthetic keyword task, hub column mapping (up to the network) and, marked
``integration``, every embedded dataset loaded from its package."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from core.config import ConfigError, DataConfig
from core.data import datasets as D
from core.data import hub as H
from core.data import labels as LB
from core.data import registry as R
from core.data.batches import DataError, make_splits
from core.models.tiny import TINY_WORDS

PAPER_DATASETS = {"newsgroup", "dbpedia", "amazon", "imdb", "agnews", "yahoo", "yelp", "arxiv", "patent"}


# ------------------------------------------------------------------------------------------------ registry
def test_registry_entries_are_consistent():
    for key, spec in R.DATASETS.items():
        assert spec.key == key
        if spec.source == "hub":
            assert key == f"hub:{spec.hub.name}" and not spec.offline and spec.package is None
        else:
            assert spec.offline and spec.hub is None
        if spec.source == "package":
            assert spec.package and spec.files
    hub_targets = [s.stands_for for s in R.DATASETS.values() if s.source == "hub"]
    assert sorted(hub_targets) == sorted(PAPER_DATASETS)  # the paper's nine, once each
    stand_ins = {s.stands_for for s in R.DATASETS.values() if s.source == "package"} - {"-"}
    assert stand_ins <= PAPER_DATASETS and len(stand_ins) == 7


def test_default_dataset_is_offline():
    assert R.get_dataset_spec(R.DEFAULT_DATASET).offline
    assert R.DEFAULT_DATASET in R.offline_dataset_names()


def test_spec_validation_names_the_field():
    with pytest.raises(ConfigError, match="source"):
        R.DatasetSpec("x", "X", "web", None, (), "", False, "-", 2, 10, "")
    with pytest.raises(ConfigError, match="hub"):
        R.DatasetSpec("hub:x", "X", "hub", None, (), "", False, "-", 2, 10, "")
    with pytest.raises(ConfigError, match="package"):
        R.DatasetSpec("p", "P", "package", None, (), "", False, "-", 2, 10, "")
    with pytest.raises(ConfigError, match="label_column"):
        R.HubColumns("ag_news", ("text",), "text")


def test_get_dataset_spec_accepts_bare_hub_names_and_rejects_unknown():
    assert R.get_dataset_spec("ag_news").key == "hub:ag_news"
    assert R.get_dataset_spec(" trec ").key == "trec"
    with pytest.raises(DataError, match="trec"):
        R.get_dataset_spec("no-such-dataset")


def test_describe_datasets_has_one_row_per_entry():
    table = R.describe_datasets()
    assert list(table["key"]) == list(R.DATASETS)
    assert list(table.columns) == ["key", "name", "source", "rows", "classes", "license", "offline", "stands_for"]
    offline = dict(zip(table["key"], table["offline"]))
    assert offline["trec"] == "yes" and offline["hub:ag_news"] == "no"
    assert table.loc[table["key"] == "reuters-r8", "license"].item().startswith("research only")


# -------------------------------------------------------------------------------------------------- labels
def test_encode_labels_sorts_numbers_numerically_and_names_alphabetically():
    codes, names = LB.encode_labels(pd.Series(["10", "2", "1", "2"]))
    assert names == ("1", "2", "10") and codes.tolist() == [2, 1, 0, 1]
    codes, names = LB.encode_labels(pd.Series([1.0, 0.0, 1.0]))
    assert names == ("0", "1") and codes.tolist() == [1, 0, 1]
    codes, names = LB.encode_labels(pd.Series([" spam", "ham", "spam "]))
    assert names == ("ham", "spam") and codes.tolist() == [1, 0, 1]


# ------------------------------------------------------------------------------------------------ keywords
def test_keyword_dataset_carries_its_label_in_one_keyword():
    loaded = D.load_dataset("keywords")
    frame = loaded.frame
    assert len(frame) == 1200 and loaded.num_classes == 3
    assert frame["label"].value_counts().tolist() == [400, 400, 400]
    vocab = set(TINY_WORDS)
    for text, code in zip(frame["text"], frame["label"]):
        words = text.split()
        assert set(words) <= vocab
        hits = [name for name, keys in D.KEYWORDS.items() for w in words if w in keys]
        assert hits == [loaded.label_names[code]]
    splits = make_splits(frame, loaded.label_names, DataConfig(train_cap=300, val_cap=60, test_cap=60))
    assert splits.sizes() == {"train": 300, "val": 60, "test": 60}


def test_keyword_frame_is_seeded():
    assert D.keyword_frame(50, seed=1).equals(D.keyword_frame(50, seed=1))
    assert not D.keyword_frame(50, seed=1).equals(D.keyword_frame(50, seed=2))


def test_load_dataset_returns_an_independent_copy():
    first = D.load_dataset("keywords")
    first.frame.loc[0, "text"] = "corrupted"
    first.frame.drop(index=[1, 2], inplace=True)
    again = D.load_dataset("keywords")
    assert len(again.frame) == 1200 and again.frame.loc[0, "text"] != "corrupted"


def test_missing_package_gives_an_install_hint():
    spec = R.DatasetSpec("ghost", "Ghost", "package", "no-such-package-xyz", ("a.csv",), "", False, "-", 2, 1, "")
    with pytest.raises(DataError, match="requirements-assets"):
        D.package_file(spec, "a.csv")


# ------------------------------------------------------------------------------------- hub, up to the net
@pytest.fixture()
def online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    H.load_hub_cached.cache_clear()
    yield
    H.load_hub_cached.cache_clear()


@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_hub_offline_names_the_embedded_alternatives(online, monkeypatch, var):
    import datasets

    def forbidden(*args, **kwargs):  # offline must stop before the hub client
        raise AssertionError("datasets.load_dataset was called while offline")

    monkeypatch.setattr(datasets, "load_dataset", forbidden)
    monkeypatch.setenv(var, "1")
    with pytest.raises(DataError, match=f"offline.*{var}") as info:
        D.load_dataset("hub:ag_news")
    assert "trec" in str(info.value) and "bbc-news" in str(info.value)


def test_hub_connection_error_becomes_data_error(online, monkeypatch):
    import datasets

    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'imdb' on the Hub (ConnectTimeout)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(DataError, match="ConnectionError.*trec"):
        D.load_dataset("imdb")


def _news(n_train=6, n_test=4):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"title": Value("string"), "content": Value("string"),
                         "label": ClassLabel(names=["world", "sports", "business"])})

    def part(n, offset):
        return Dataset.from_dict({"title": [f"Title {i}" if i % 5 else None for i in range(offset, offset + n)],
                                  "content": [f"body {i}" for i in range(offset, offset + n)],
                                  "label": [i % 3 for i in range(offset, offset + n)]}, features=features)

    unlabelled = Dataset.from_dict({"title": ["u"], "content": ["u"], "label": [-1]}, features=features)
    return DatasetDict(train=part(n_train, 0), validation=part(3, 100), test=part(n_test, 200),
                       unsupervised=unlabelled)


def test_hub_frame_joins_text_columns_and_maps_class_label_names():
    frame, names = H.hub_frame(_news(), R.HubColumns("news", ("title", "content"), "label"))
    assert names == ("business", "sports", "world")  # sorted names; codes follow them
    assert frame["split"].value_counts().to_dict() == {"train": 9, "test": 4}  # validation joins train
    assert "u" not in set(frame["text"])  # the unsupervised split is skipped
    assert frame["text"].iloc[0] == "body 0"  # missing title: no leading space
    assert frame["text"].iloc[1] == "Title 1 body 1"
    assert [names[c] for c in frame["label"][:3]] == ["world", "sports", "business"]


def test_hub_frame_uses_a_label_names_column_and_drops_unlabelled_rows():
    from datasets import ClassLabel, Dataset, Features, Value

    ds = Dataset.from_dict({"text": ["a", "b", "c"], "label": [7, 3, 7], "label_text": ["z", "y", "z"]})
    frame, names = H.hub_frame(ds, R.HubColumns("s", ("text",), "label", label_names_column="label_text"))
    assert names == ("y", "z") and frame["label"].tolist() == [1, 0, 1] and "split" not in frame
    frame, names = H.hub_frame(ds, R.HubColumns("s", ("text",), "label"))
    assert names == ("3", "7")
    feats = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    ds = Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, -1, 1]}, features=feats)
    frame, names = H.hub_frame(ds, R.HubColumns("s", ("text",), "label"))
    assert frame["text"].tolist() == ["a", "c"] and names == ("neg", "pos")


def test_hub_frame_missing_column_says_which_exist():
    with pytest.raises(DataError, match=r"'body'.*title, content, label"):
        H.hub_frame(_news(), R.HubColumns("news", ("body",), "label"))


def test_hub_frame_samples_each_split_with_a_seed():
    cols = R.HubColumns("news", ("content",), "label")
    a, _ = H.hub_frame(_news(60, 30), cols, max_rows_per_split=10, seed=0)
    b, _ = H.hub_frame(_news(60, 30), cols, max_rows_per_split=10, seed=0)
    c, _ = H.hub_frame(_news(60, 30), cols, max_rows_per_split=10, seed=1)
    assert a["split"].value_counts().to_dict() == {"train": 13, "test": 10}  # validation has 3 rows
    assert a.equals(b) and not a.equals(c)


def test_registered_hub_dataset_loads_through_the_mapping(online, monkeypatch):
    import datasets

    calls = []

    def fake_load(name, config=None, split=None):
        calls.append((name, config, split))
        return _news(30, 12)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    loaded = D.load_dataset("hub:dbpedia_14")  # title + content, label: the same shape as _news()
    assert calls == [("dbpedia_14", None, None)]
    assert loaded.spec.key == "hub:dbpedia_14" and loaded.label_names == ("business", "sports", "world")
    splits = make_splits(loaded.frame, loaded.label_names, DataConfig(train_cap=20, val_cap=6, test_cap=6))
    assert splits.sizes()["test"] == 6
    other = H.load_hub_dataset("org/news", ["title", "content"], "label", split="train")
    assert other.spec.key == "hub:org/news" and other.spec.source == "hub"
    assert calls[-1] == ("org/news", None, "train")


def test_load_hub_dataset_validates_its_arguments():
    with pytest.raises(DataError, match="label_column"):
        H.load_hub_dataset("ag_news", "text", "")
    with pytest.raises(DataError, match="max_rows_per_split"):
        H.load_hub_dataset("ag_news", "text", "label", max_rows_per_split=0)


# ------------------------------------------------------------------------------------ embedded: integration
#: measured from the pinned packages: rows, classes, (train, test) rows of an official split or None
EMBEDDED = {
    "trec": (5382, 6, None),
    "bbc-news": (2225, 5, None),
    "20newsgroups": (18821, 20, (11293, 7528)),
    "reuters-r8": (7674, 8, (5485, 2189)),
    "amazon-food": (5000, 2, (4000, 1000)),
    "rotten-tomatoes": (12808, 2, None),
    "tweets": (38158, 3, None),
    "sms-spam": (4837, 2, None),
}


def test_every_package_dataset_is_covered_below():
    assert set(EMBEDDED) == {k for k, s in R.DATASETS.items() if s.source == "package"}


@pytest.mark.integration
@pytest.mark.parametrize("key", list(EMBEDDED))
def test_embedded_dataset_loads_offline(key):
    rows, classes, split = EMBEDDED[key]
    loaded = D.load_dataset(key)
    frame = loaded.frame
    assert len(frame) == rows == loaded.spec.rows
    assert loaded.num_classes == classes == loaded.spec.num_classes
    assert frame["text"].map(lambda t: isinstance(t, str) and t.strip() == t and len(t) > 0).all()
    assert frame["label"].between(0, classes - 1).all() and frame["label"].nunique() == classes
    assert all(isinstance(n, str) and n and not re.fullmatch(r"\d+", n) for n in loaded.label_names)
    if split is None:
        assert "split" not in frame
    else:
        assert (frame["split"] == "train").sum() == split[0] and (frame["split"] == "test").sum() == split[1]
    splits = make_splits(frame, loaded.label_names, DataConfig())
    cfg = DataConfig()
    sizes = splits.sizes()
    assert 0 < sizes["train"] <= cfg.train_cap and 0 < sizes["val"] <= cfg.val_cap
    assert 0 < sizes["test"] <= cfg.test_cap
    assert splits.train["label"].nunique() == classes
    if split is not None:  # the official test set is the test pool
        assert set(splits.test["text"]) <= set(frame.loc[frame["split"] == "test", "text"])
