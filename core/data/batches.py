"""Splits and token batches: dataset frame -> seeded stratified splits -> padded tensors.

A batch is a plain ``dict`` with ``input_ids``, ``attention_mask`` and ``labels`` tensors, which is exactly
what a Hugging Face sequence classifier takes as keyword arguments.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from core.config import DataConfig
from core.data.splits import SplitReport, one_row_per_text

Batch = dict[str, torch.Tensor]


class DataError(ValueError):
    """The data cannot be used as given; the message says what to do."""


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    label_names: tuple[str, ...]
    #: what was removed before splitting so that no text is in two splits (:mod:`core.data.splits`)
    report: SplitReport = field(default_factory=SplitReport)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def _cap(frame: pd.DataFrame, cap: int, seed: int) -> pd.DataFrame:
    if len(frame) <= cap:
        return frame
    try:
        kept, _ = train_test_split(frame, train_size=cap, stratify=frame["label"], random_state=seed)
    except ValueError:  # a class too rare to stratify at this cap: fall back to a seeded sample
        kept = frame.sample(n=cap, random_state=seed)
    return kept


def make_splits(frame: pd.DataFrame, label_names: list[str] | tuple[str, ...], cfg: DataConfig) -> Splits:
    """Seeded, stratified train/validation/test splits, each capped by ``cfg``, with no text in two splits.

    ``frame`` has columns ``text`` and ``label`` (integer codes into ``label_names``). When it also has a
    ``split`` column with ``test`` rows (datasets shipped with an official test set), those rows form the
    test pool; otherwise the test pool is carved out of the data stratified by label. Repeated texts are kept
    once and texts carrying two labels are left out first (:func:`core.data.splits.one_row_per_text`); the
    splits' ``report`` counts them.
    """
    if not {"text", "label"} <= set(frame.columns):
        raise DataError("The dataset needs a 'text' and a 'label' column.")
    unique, report = one_row_per_text(frame)
    return replace(split_rows(unique, label_names, cfg), report=report)


def split_rows(frame: pd.DataFrame, label_names: list[str] | tuple[str, ...], cfg: DataConfig) -> Splits:
    """The seeded, stratified, capped splits of ``frame``'s rows as they are: a text repeated in ``frame`` may
    land in two splits (what every split was before issue 21; :func:`make_splits` removes repeats first)."""
    if not {"text", "label"} <= set(frame.columns):
        raise DataError("The dataset needs a 'text' and a 'label' column.")
    frame = frame.reset_index(drop=True)
    counts = frame["label"].value_counts()
    if len(counts) < 2:
        raise DataError("The dataset has a single class after cleaning; a classifier needs at least two.")
    if int(counts.min()) < 3:
        rare = [label_names[int(i)] for i in counts[counts < 3].index]
        raise DataError(f"Class(es) {', '.join(map(str, rare))} have fewer than 3 rows: too few to split into "
                        "train/validation/test. Remove them or add rows.")
    seed = cfg.seed
    if "split" in frame.columns and (frame["split"] == "test").any():
        pool, test = frame[frame["split"] != "test"], frame[frame["split"] == "test"]
    else:
        pool, test = train_test_split(frame, test_size=cfg.test_fraction, stratify=frame["label"],
                                      random_state=seed)
    train, val = train_test_split(pool, test_size=cfg.val_fraction / (1 - cfg.test_fraction),
                                  stratify=pool["label"], random_state=seed + 1)
    out = []
    for part, cap, salt in ((train, cfg.train_cap, 2), (val, cfg.val_cap, 3), (test, cfg.test_cap, 4)):
        part = _cap(part, cap, seed + salt)
        out.append(part[["text", "label"]].reset_index(drop=True))
    return Splits(out[0], out[1], out[2], tuple(str(n) for n in label_names))


def encode(tokenizer: Any, frame: pd.DataFrame, max_length: int, truncation: str = "head") -> Batch:
    """Tokenise a whole split once into padded tensors (padding to the longest, at most ``max_length``).

    A longer text keeps its first tokens (``truncation="head"``) or its first and last tokens (``"head+tail"``,
    :func:`head_tail`)."""
    if truncation == "head+tail":
        enc = encode_head_tail(tokenizer, list(frame["text"].astype(str)), max_length)
    elif truncation == "head":
        enc = tokenizer(list(frame["text"].astype(str)), truncation=True, max_length=max_length,
                        padding="longest", return_tensors="pt", return_token_type_ids=False)
    else:
        raise ValueError(f"truncation must be 'head' or 'head+tail', got {truncation!r}")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
            "labels": torch.tensor(frame["label"].to_numpy(dtype=np.int64))}


#: head+tail: the share of the kept tokens taken from the start of the text (Sun et al. 2019, "How to Fine-Tune
#: BERT for Text Classification?": the first 128 and the last 382 of 510 tokens, best on long IMDb reviews)
HEAD_SHARE = 128 / 510


def special_token_frame(tokenizer: Any) -> tuple[int, int]:
    """How many special tokens a single text gets before and after its own tokens (``[CLS]``/``[SEP]``: 1, 1)."""
    enc = tokenizer("probe", add_special_tokens=True, return_special_tokens_mask=True)
    mask = list(enc["special_tokens_mask"])
    before = next((i for i, m in enumerate(mask) if not m), len(mask))
    after = next((i for i, m in enumerate(reversed(mask)) if not m), 0)
    return before, after


def head_tail(ids: Sequence[int], max_length: int, before: int, after: int) -> list[int]:
    """``ids`` (a whole text's token ids, special tokens included) cut to ``max_length``: the special tokens
    ``before`` and ``after`` the text kept in place, and of the text its first :data:`HEAD_SHARE` and its last
    tokens. Texts that fit are returned whole."""
    ids = list(ids)
    if len(ids) <= max_length:
        return ids
    budget = max_length - before - after
    if budget <= 0:
        raise ValueError(f"max_length {max_length} leaves no room for text between {before + after} special tokens")
    body = ids[before:len(ids) - after]
    head = int(round(budget * HEAD_SHARE))
    tail = budget - head
    return ids[:before] + body[:head] + (body[len(body) - tail:] if tail else []) + ids[len(ids) - after:]


def encode_head_tail(tokenizer: Any, texts: Sequence[str], max_length: int) -> Batch:
    """Token ids and attention masks of ``texts`` cut by :func:`head_tail`, padded to the longest (torch tensors)."""
    before, after = special_token_frame(tokenizer)
    enc = tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)
    rows = [head_tail(ids, max_length, before, after) for ids in enc["input_ids"]]
    padded = tokenizer.pad({"input_ids": rows}, padding="longest", return_tensors="pt")
    return {"input_ids": padded["input_ids"], "attention_mask": padded["attention_mask"]}


SEQUENCE_KEYS = ("input_ids", "attention_mask", "token_type_ids")


#: batches per length-sorted mega-batch. Hugging Face uses 50; fewer keep batches closer to random samples
#: (length often correlates with the label, e.g. TREC abbreviations are short) and still save 1.6x of
#: TREC's tokens (50 saves 1.73x)
MEGA_BATCHES = 8


def lengths(data: Batch) -> torch.Tensor:
    """Real (unpadded) length of every row."""
    return data["attention_mask"].sum(dim=1)


def length_grouped_order(data: Batch, batch_size: int, seed: int = 0) -> torch.Tensor:
    """A shuffled row order in which each run of ``batch_size`` rows has similar lengths: a random
    permutation is cut into mega-batches of ``MEGA_BATCHES * batch_size`` rows, each sorted by length
    (longest first), and the resulting batches are shuffled. Every row appears once per epoch."""
    n = data["input_ids"].shape[0]
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    lens = lengths(data)
    mega = MEGA_BATCHES * batch_size
    chunks = []
    for start in range(0, n, mega):
        part = perm[start:start + mega]
        part = part[torch.argsort(-lens[part], stable=True)]
        chunks += list(torch.split(part, batch_size))
    order = torch.randperm(len(chunks), generator=gen)
    return torch.cat([chunks[i] for i in order]) if chunks else perm


def batches(data: Batch, batch_size: int, shuffle: bool = False, seed: int = 0,
            device: torch.device | str | None = None, group_by_length: bool = False) -> Iterator[Batch]:
    """Yield mini-batches of every tensor in ``data`` (extra per-row tensors such as cached teacher logits
    travel along), trimmed to their longest real sequence so short texts cost less compute. With
    ``shuffle`` and ``group_by_length``, rows of similar length share a batch (:func:`length_grouped_order`)."""
    n = data["input_ids"].shape[0]
    if shuffle and group_by_length:
        order = length_grouped_order(data, batch_size, seed)
    elif shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    else:
        order = torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        width = max(int(data["attention_mask"][idx].sum(dim=1).max()), 1)
        batch = {k: (v[idx, :width] if k in SEQUENCE_KEYS else v[idx]) for k, v in data.items()}
        if device is not None:
            batch = {k: v.to(device) for k, v in batch.items()}
        yield batch


def sort_by_length(data: Batch, frame: pd.DataFrame | None = None) -> tuple[Batch, pd.DataFrame | None]:
    """``data`` (and its source ``frame``, row for row) reordered by real length, longest first, stable.
    Evaluation splits are kept in this order: their fixed batches then hold rows of similar length and
    waste little compute on padding; accuracy, F1 and loss do not depend on the order of rows."""
    order = torch.argsort(-lengths(data), stable=True)
    out = {k: v[order] for k, v in data.items()}
    return out, (frame.iloc[order.numpy()] if frame is not None else None)


def model_inputs(batch: Batch) -> Batch:
    """The keyword arguments a classifier's forward takes (no labels: losses are computed by the caller)."""
    return {k: v for k, v in batch.items() if k in SEQUENCE_KEYS}


def num_batches(data: Batch, batch_size: int) -> int:
    return (data["input_ids"].shape[0] + batch_size - 1) // batch_size


def take(data: Batch, n: int) -> Batch:
    """The first ``n`` rows of an encoded split (a calibration subset)."""
    return {k: v[:n] for k, v in data.items()}


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
