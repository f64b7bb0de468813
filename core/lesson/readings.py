"""Precomputed layer-by-layer readings of a few preset sentences, shipped so the lesson's first chapter never
waits for a teacher (the way Transformer Explainer ships its preset prompts).

For each preset sentence, a fine-tuned teacher is read with no layer switched off and with each layer switched
off in turn (:func:`core.playground.trace`, exactly what the model with that layer removed computes, no retraining):
its prediction (every class's probability) and the layer-by-layer reading (*our definition*,
:data:`core.playground.LENS_DEFINITION`). ``scripts/make_readings.py`` makes the files from a cached teacher.

Files live in ``data/readings/`` (``PRUNE_READINGS_DIR``): one JSON file per (model, dataset) and a
``manifest.json`` with each file's size and sha256. :func:`load_readings` checks the manifest and the shapes and
raises :class:`ReadingsError` saying what is wrong; nothing is unpickled.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from core.jsontypes import JSONObject, JSONValue
from core.paths import PROJECT_ROOT, atomic_write_text
from core.playground import trace

if TYPE_CHECKING:
    from core.playground import Loaded

FORMAT = "layer-prune-readings"
VERSION = 1
MANIFEST_FILE = "manifest.json"
READINGS_DIR = PROJECT_ROOT / "data" / "readings"

#: preset sentences per dataset: (text, the class a reader would expect, or None)
PRESETS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "trec": (("Who wrote the novel Pride and Prejudice?", "human"),
             ("What is the capital of Australia?", "location"),
             ("What is the speed of light?", "number"),
             ("What does the abbreviation CPU mean?", "abbreviation"),
             ("What is the origin of the word quiz?", "description"),
             ("What is the best way to learn a language?", None)),
    "sms-spam": (("Are we still meeting for lunch at noon tomorrow?", "ham"),
                 ("WINNER! You have been selected for a free cruise. Call now to claim your prize", "spam"),
                 ("Sorry, running late, be there in ten minutes", "ham"),
                 ("URGENT: your mobile number has won 2000 pounds. Text CLAIM to 80082", "spam")),
    "rotten-tomatoes": (("A warm, funny and beautifully acted film.", "fresh"),
                        ("Two hours of my life I will never get back.", "rotten"),
                        ("The plot is thin, but the performances carry it.", None),
                        ("A dull, lifeless remake with nothing new to say.", "rotten")),
    "keywords": (("the cat saw a great game today", None), ("an awful day at the office again", None),
                 ("we watched the tennis match on tv", None)),
}


class ReadingsError(ValueError):
    """The readings files are missing, damaged or of another layout; the message says which and what."""


@dataclass(frozen=True)
class Reading:
    """One forward pass of one sentence: the prediction's probabilities and the reading after every depth."""

    probs: tuple[float, ...]
    #: what ran before each row of ``lens``: "embeddings", then the original index of each layer that ran
    after: tuple[str, ...]
    lens: tuple[tuple[float, ...], ...]

    def label(self, names: Sequence[str]) -> str:
        return str(names[max(range(len(self.probs)), key=self.probs.__getitem__)])

    def to_dict(self) -> JSONObject:
        """As the readings file stores it."""
        return {"probs": list(self.probs), "after": list(self.after), "lens": [list(row) for row in self.lens]}


class ReadingsMeta(TypedDict):
    """Where a readings file came from: the teacher, its length and precision, the code and the day."""

    teacher_key: str | None
    max_length: int | None
    precision: str | None
    code_version: str | None
    made: str | None


@dataclass(frozen=True)
class Sentence:
    text: str
    expected: str | None
    full: Reading
    #: layer -> the reading with that layer switched off
    off: dict[int, Reading]


@dataclass(frozen=True)
class Readings:
    model: str
    dataset: str
    label_names: tuple[str, ...]
    layers: tuple[int, ...]
    sentences: tuple[Sentence, ...]
    meta: ReadingsMeta

    def reading(self, sentence: int, layer_off: int | None) -> Reading:
        s = self.sentences[sentence]
        return s.full if layer_off is None else s.off[layer_off]


def readings_dir() -> Path:
    """``PRUNE_READINGS_DIR`` when set, else the shipped ``data/readings``."""
    value = os.environ.get("PRUNE_READINGS_DIR")
    return Path(value) if value else READINGS_DIR


def file_name(model: str, dataset: str) -> str:
    return f"{model}__{dataset}.json"


# ------------------------------------------------------------------------------------------ making them
def _reading(loaded: Loaded, text: str, off: Sequence[int]) -> Reading:
    found = trace(loaded, text, off)
    names = [str(n) for n in loaded.label_names]
    return Reading(probs=tuple(round(float(p), 6) for p in found.prediction.probs),
                   after=tuple(str(a) for a in found.lens["after"]),
                   lens=tuple(tuple(round(float(v), 6) for v in row) for row in found.lens[names].to_numpy()))


def make_readings(loaded: Loaded, sentences: Sequence[tuple[str, str | None]], code_version: str) -> JSONObject:
    """The readings of ``sentences`` through ``loaded``'s teacher (a JSON-ready dict)."""
    layers = [int(i) for i in loaded.teacher_layers]
    task = loaded.task
    return {"format": FORMAT, "version": VERSION, "model": str(task.model.key), "dataset": str(task.dataset_key),
            "label_names": [str(n) for n in loaded.label_names], "layers": [i for i in layers],
            "teacher_key": loaded.teacher_key, "max_length": int(loaded.max_length), "precision": loaded.precision,
            "code_version": code_version, "made": dt.date.today().isoformat(),
            "sentences": [{"text": text, "expected": expected, "full": _reading(loaded, text, ()).to_dict(),
                           "off": {str(k): _reading(loaded, text, (k,)).to_dict() for k in layers}}
                          for text, expected in sentences]}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_readings(data: JSONObject, folder: str | Path | None = None) -> Path:
    """Write one readings file and update the folder's manifest; returns the file's path."""
    folder = Path(folder) if folder is not None else readings_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name(str(data["model"]), str(data["dataset"]))
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    mpath = folder / MANIFEST_FILE
    old = json.loads(mpath.read_text()) if mpath.is_file() else {}
    files: dict[str, JSONValue] = dict(old.get("files") or {}) if isinstance(old, dict) else {}
    files[path.name] = {"bytes": path.stat().st_size, "sha256": _sha256(path), "model": data["model"],
                        "dataset": data["dataset"], "made": data["made"]}
    manifest: JSONObject = {"format": FORMAT, "version": VERSION, "files": files}
    atomic_write_text(mpath, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return path


# ------------------------------------------------------------------------------------------ reading them
def _fail(what: str) -> ReadingsError:
    return ReadingsError(f"The shipped sentence readings are unusable: {what}. Remake them with "
                         "scripts/make_readings.py or restore data/readings from git.")


def available(folder: str | Path | None = None) -> list[tuple[str, str]]:
    """(model, dataset) of every readings file the manifest lists (empty without a manifest)."""
    mpath = (Path(folder) if folder is not None else readings_dir()) / MANIFEST_FILE
    try:
        files = json.loads(mpath.read_text()).get("files") or {}
    except (OSError, ValueError, AttributeError):
        return []
    return [(str(e.get("model")), str(e.get("dataset"))) for e in files.values() if isinstance(e, dict)]


def _probs(values: Any, n: int, what: str) -> tuple[float, ...]:
    if not isinstance(values, list) or len(values) != n:
        raise _fail(f"{what} has {len(values) if isinstance(values, list) else 'no'} probabilities, expected {n}")
    out = tuple(float(v) for v in values)
    if any(v < 0 for v in out) or abs(sum(out) - 1.0) > 1e-3:
        raise _fail(f"{what}'s probabilities do not sum to 1")
    return out


def _parse_reading(raw: Any, n: int, what: str) -> Reading:
    if not isinstance(raw, dict):
        raise _fail(f"{what} is not a reading")
    after, lens = raw.get("after"), raw.get("lens")
    if not isinstance(after, list) or not isinstance(lens, list) or len(after) != len(lens) or not lens:
        raise _fail(f"{what}'s layer-by-layer reading is malformed")
    return Reading(probs=_probs(raw.get("probs"), n, what), after=tuple(str(a) for a in after),
                   lens=tuple(_probs(row, n, f"{what}, after {a}") for a, row in zip(after, lens)))


def parse_readings(data: Any) -> Readings:
    """:class:`Readings` from a file's JSON, every shape checked."""
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        raise _fail(f"not a readings file of format {FORMAT} version {VERSION}")
    names = tuple(str(n) for n in data.get("label_names") or ())
    layers = tuple(int(i) for i in data.get("layers") or ())
    if len(names) < 2 or not layers:
        raise _fail("no class names or no layers")
    sentences = []
    for i, raw in enumerate(data.get("sentences") or ()):
        what = f"sentence {i + 1}"
        off = raw.get("off") or {}
        if sorted(int(k) for k in off) != sorted(layers):
            raise _fail(f"{what} does not have one reading per layer switched off")
        sentences.append(Sentence(text=str(raw["text"]), expected=raw.get("expected"),
                                  full=_parse_reading(raw.get("full"), len(names), what),
                                  off={int(k): _parse_reading(v, len(names), f"{what} without L{k}")
                                       for k, v in off.items()}))
    if not sentences:
        raise _fail("no sentences")
    def text(key: str) -> str | None:
        value = data.get(key)
        return None if value is None else str(value)

    length = data.get("max_length")
    meta = ReadingsMeta(teacher_key=text("teacher_key"), max_length=None if length is None else int(length),
                        precision=text("precision"), code_version=text("code_version"), made=text("made"))
    return Readings(model=str(data["model"]), dataset=str(data["dataset"]), label_names=names, layers=layers,
                    sentences=tuple(sentences), meta=meta)


def load_readings(model: str, dataset: str, folder: str | Path | None = None) -> Readings | None:
    """The readings of (model, dataset), checked against the manifest; None when none ship for them."""
    folder = Path(folder) if folder is not None else readings_dir()
    mpath = folder / MANIFEST_FILE
    if not mpath.is_file():
        return None
    try:
        entry = (json.loads(mpath.read_text()).get("files") or {}).get(file_name(model, dataset))
    except (OSError, ValueError, AttributeError) as exc:
        raise _fail(f"{MANIFEST_FILE} does not read ({exc})") from None
    if entry is None:
        return None
    path = folder / file_name(model, dataset)
    if not path.is_file():
        raise _fail(f"{path.name} is missing, the manifest lists it")
    if path.stat().st_size != entry.get("bytes") or _sha256(path) != entry.get("sha256"):
        raise _fail(f"{path.name} does not match its checksum (changed after it was made)")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise _fail(f"{path.name} is not JSON ({exc})") from None
    return parse_readings(data)
