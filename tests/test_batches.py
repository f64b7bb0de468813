"""Splits (stratified, seeded, capped, the official test split kept) and tokenised batches (trimmed,
length-grouped, every row once)."""

from __future__ import annotations

import pytest
import torch

from core.config import DataConfig
from core.data.batches import DataError, batches, encode, make_splits
from tests.conftest import keyword_frame


def test_splits_are_stratified_seeded_and_capped():
    frame = keyword_frame(n=300, classes=3)
    cfg = DataConfig(train_cap=90, val_cap=30, test_cap=30, seed=5)
    a = make_splits(frame, ["a", "b", "c"], cfg)
    b = make_splits(frame, ["a", "b", "c"], cfg)
    assert a.sizes() == {"train": 90, "val": 30, "test": 30}
    assert a.train.equals(b.train) and a.test.equals(b.test)
    assert a.train["label"].value_counts().tolist() == [30, 30, 30]
    c = make_splits(frame, ["a", "b", "c"], DataConfig(train_cap=90, val_cap=30, test_cap=30, seed=6))
    assert not a.train.equals(c.train)
    # no row is in two splits
    assert not set(a.train["text"]) & set(a.test["text"]) - set(frame["text"][frame["text"].duplicated()])


def test_official_test_split_is_respected():
    frame = keyword_frame(n=200)
    frame["split"] = ["test" if i % 4 == 0 else "train" for i in range(len(frame))]
    s = make_splits(frame, ["a", "b"], DataConfig(train_cap=500, val_cap=500, test_cap=500))
    assert len(s.test) == 50


def test_split_errors_say_what_to_do():
    frame = keyword_frame(n=40)
    with pytest.raises(DataError, match="single class"):
        make_splits(frame.assign(label=0), ["a"], DataConfig())
    rare = frame.copy()
    rare.loc[0, "label"] = 2
    with pytest.raises(DataError, match="fewer than 3 rows"):
        make_splits(rare, ["a", "b", "c"], DataConfig())


def test_batches_trim_padding_and_carry_extra_tensors(tiny_tokenizer):
    frame = keyword_frame(n=20)
    data = encode(tiny_tokenizer, frame, 32)
    data["teacher_logits"] = torch.arange(20 * 2, dtype=torch.float).view(20, 2)
    seen = 0
    for b in batches(data, 8, shuffle=True, seed=1):
        assert b["input_ids"].shape == b["attention_mask"].shape
        assert int(b["attention_mask"].sum(1).max()) == b["input_ids"].shape[1]
        assert b["teacher_logits"].shape == (b["labels"].shape[0], 2)
        seen += b["labels"].shape[0]
    assert seen == 20


def test_length_grouped_batches_cover_every_row_once_and_pad_less():
    gen = torch.Generator().manual_seed(0)
    n, width = 1000, 40
    lens = torch.randint(2, width + 1, (n,), generator=gen)
    mask = (torch.arange(width)[None, :] < lens[:, None]).long()
    data = {"input_ids": torch.arange(n)[:, None].repeat(1, width) * mask, "attention_mask": mask,
            "labels": torch.arange(n)}

    def padded(**kw):
        rows, tokens = [], 0
        for b in batches(data, 16, shuffle=True, seed=3, **kw):
            rows += b["labels"].tolist()
            tokens += b["input_ids"].numel()
            assert torch.equal(b["input_ids"][:, 0], b["labels"])  # rows stay whole
        return rows, tokens

    grouped_rows, grouped_tokens = padded(group_by_length=True)
    random_rows, random_tokens = padded()
    assert sorted(grouped_rows) == list(range(n)) == sorted(random_rows)
    assert grouped_tokens < 0.8 * random_tokens
    assert grouped_rows != sorted(grouped_rows, key=lambda i: -int(lens[i]))  # shuffled, not one global sort
    again, _ = padded(group_by_length=True)
    assert again == grouped_rows  # seeded


def test_evaluation_splits_are_in_length_order_with_their_frames(tiny_tokenizer):
    from core.data.batches import lengths, sort_by_length

    frame = keyword_frame(n=30)
    data = encode(tiny_tokenizer, frame, 32)
    ordered, ordered_frame = sort_by_length(data, frame)
    lens = lengths(ordered)
    assert bool((lens[:-1] >= lens[1:]).all())
    assert torch.equal(encode(tiny_tokenizer, ordered_frame, 32)["input_ids"][:, :ordered["input_ids"].shape[1]],
                       ordered["input_ids"])  # the frame was reordered row for row
