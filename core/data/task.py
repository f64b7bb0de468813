"""A prepared task: one model spec + one dataset + one data config, tokenised once.

Teacher fine-tuning, pruning runs and feed-forward merging all start from a :class:`Task`. Its
``fingerprint`` hashes everything that determines the data a model sees, so caches keyed by it are safe.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from core.config import DataConfig, to_dict
from core.data.batches import Batch, Splits, encode, make_splits, sort_by_length
from core.data.datasets import load_dataset
from core.data.splits import SPLIT_VERSION
from core.data.truncation import LengthChoice, choose_length, model_length_limit, token_counts
from core.jsontypes import JSONObject
from core.models.registry import ModelSpec, get_model_spec, load_tokenizer


@dataclass(frozen=True)
class Task:
    model: ModelSpec
    dataset_key: str
    dataset_name: str
    data_cfg: DataConfig
    splits: Splits
    tokenizer: Any = field(repr=False)
    encoded: dict[str, Batch] = field(repr=False)
    fingerprint: str = ""
    #: the sequence length used, why, and the share of training texts cut (:mod:`core.data.truncation`);
    #: ``data_cfg.max_length`` holds the resolved length (never ``"auto"``)
    length: LengthChoice | None = None

    @property
    def num_labels(self) -> int:
        return self.splits.num_labels

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.splits.label_names

    @property
    def max_length(self) -> int:
        """The length every text was tokenised to (``data_cfg.max_length``, resolved)."""
        return int(self.data_cfg.max_length)

    def describe(self) -> JSONObject:
        return {"model": self.model.key, "dataset": self.dataset_key, "dataset_name": self.dataset_name,
                "data": to_dict(self.data_cfg), "sizes": {k: n for k, n in self.splits.sizes().items()},
                "labels": list(self.label_names), "fingerprint": self.fingerprint,
                "data_report": self.splits.report.to_dict(),
                **({"length": self.length.to_dict()} if self.length is not None else {})}


def frame_digest(frame: pd.DataFrame) -> str:
    """A content hash of a dataset frame (text, label, split), stable across processes."""
    h = hashlib.sha256()
    cols = [c for c in ("text", "label", "split") if c in frame.columns]
    h.update(pd.util.hash_pandas_object(frame[cols], index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def prepare_task(model: str | ModelSpec, dataset: Any, data_cfg: DataConfig | None = None) -> Task:
    """Load (or take) a dataset, split it, and tokenise every split once for ``model``.

    ``dataset`` is a registry key (``core.data.registry``) or an already loaded ``LoadedDataset`` (an upload).
    """
    data_cfg = data_cfg or DataConfig()
    spec = get_model_spec(model) if isinstance(model, str) else model
    loaded = load_dataset(dataset) if isinstance(dataset, str) else dataset
    return task_from_splits(spec, loaded, make_splits(loaded.frame, loaded.label_names, data_cfg), data_cfg)


def task_from_splits(spec: ModelSpec, loaded: Any, splits: Splits, data_cfg: DataConfig,
                     split_version: Any = SPLIT_VERSION) -> Task:
    """Tokenise splits already drawn from ``loaded`` (a ``LoadedDataset``) for ``spec``: the length chosen from the
    training texts, the evaluation splits (frames row for row) in length order. The fingerprint hashes
    ``split_version``: :data:`SPLIT_VERSION` for :func:`make_splits`; anything else (e.g. the pre-issue-21
    ``split_rows``, measured by ``scripts/archive/leak_effect.py``) can never share a cached teacher with it."""
    tokenizer = load_tokenizer(spec)
    length = choose_length(token_counts(tokenizer, splits.train["text"]), data_cfg, model_length_limit(tokenizer))
    data_cfg = replace(data_cfg, max_length=length.length)  # "auto" resolved: what the model sees
    encoded = {name: encode(tokenizer, getattr(splits, name), length.length, data_cfg.truncation)
               for name in ("train", "val", "test")}
    # evaluation splits in length order (their frames too, row for row): fixed batches of similar length
    # waste little compute on padding; the training split keeps its seeded order (calibration takes its head)
    sorted_frames = {}
    for name in ("val", "test"):
        encoded[name], sorted_frames[name] = sort_by_length(encoded[name], getattr(splits, name))
    splits = replace(splits, val=sorted_frames["val"], test=sorted_frames["test"])
    payload = json.dumps({"model": spec.key, "dataset": loaded.spec.key, "data": frame_digest(loaded.frame),
                          "labels": list(loaded.label_names), "cfg": fingerprint_cfg(data_cfg),
                          "splits": split_version}, sort_keys=True)
    fingerprint = hashlib.sha256(payload.encode()).hexdigest()[:16]
    return Task(model=spec, dataset_key=loaded.spec.key, dataset_name=loaded.spec.display_name,
                data_cfg=data_cfg, splits=splits, tokenizer=tokenizer, encoded=encoded, fingerprint=fingerprint,
                length=length)


def fingerprint_cfg(data_cfg: DataConfig) -> JSONObject:
    """The data config as the fingerprint hashes it: the *resolved* length (``"auto"`` and the number it chose give
    the same data, so the same fingerprint); ``max_auto_length`` only through that length; ``truncation`` only
    when not ``head`` (a config from before these fields keeps its fingerprint and its cached teacher)."""
    cfg = to_dict(data_cfg)
    cfg.pop("max_auto_length", None)
    if cfg.get("truncation") == "head":
        cfg.pop("truncation")
    return cfg
