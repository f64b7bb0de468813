"""Long texts (issue 23): the length chosen from the data (``max_length="auto"``), head+tail truncation, and the
teacher guard that knows the noise of its test split and names truncation when that is the cause."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from core.config import AUTO_LENGTH, ConfigError, DataConfig


def _words(n: int, offset: int = 0) -> str:
    """``n`` distinct-ish words of the tiny tokenizer's vocabulary: one token each."""
    from core.models.tiny import TINY_WORDS

    return " ".join(TINY_WORDS[(offset + i) % len(TINY_WORDS)] for i in range(n))


def _loaded(frame: pd.DataFrame, names=("a", "b")):
    from core.data.registry import LoadedDataset, upload_spec

    return LoadedDataset(frame, tuple(names), upload_spec("upload:test", "test.csv", len(names), len(frame)))


def _known_lengths_frame(n: int = 200) -> pd.DataFrame:
    """Texts of 1..n words (each distinct, labels alternating): word counts known exactly."""
    return pd.DataFrame({"text": [_words(k, k) for k in range(1, n + 1)], "label": [k % 2 for k in range(1, n + 1)]})


# ------------------------------------------------------------------------------------------------ config
def test_data_config_takes_auto_and_names_bad_values():
    assert DataConfig(max_length="auto").max_length == AUTO_LENGTH
    assert DataConfig().max_length == 32 and DataConfig().truncation == "head"
    with pytest.raises(ConfigError, match=r"DataConfig.max_length must be an integer or 'auto', got 'long'"):
        DataConfig(max_length="long")
    with pytest.raises(ConfigError, match=r"DataConfig.truncation must be one of head, head\+tail; got 'tail'"):
        DataConfig(truncation="tail")
    with pytest.raises(ConfigError, match="DataConfig.max_auto_length must be <= 512"):
        DataConfig(max_auto_length=1024)


def test_default_length_is_auto_for_uploads_files_and_hub_and_32_for_embedded():
    from core.data.truncation import default_max_length

    assert default_max_length("trec") == 32 and default_max_length("keywords") == 32
    assert default_max_length("bbc-news") == 32
    for ref in ("upload:abc123", "hub:imdb", "imdb", "reviews.csv", "/tmp/x/data.parquet"):
        assert default_max_length(ref) == "auto", ref


# ------------------------------------------------------------------------------------------------ auto length
def test_auto_length_is_the_95th_percentile_rounded_up_and_capped():
    from core.data.truncation import AUTO_PERCENTILE, choose_length

    counts = np.arange(1, 201)  # 1..200 tokens, one text each
    assert AUTO_PERCENTILE == 95
    auto = choose_length(counts, DataConfig(max_length="auto", max_auto_length=512))
    assert auto.needed == 190 and auto.length == 192  # 190 of 200 texts fit in 190 tokens; a multiple of 8
    assert auto.truncated == pytest.approx(8 / 200) and auto.covered == pytest.approx(192 / 200)
    assert not auto.capped and "95th percentile" in auto.reason()
    capped = choose_length(counts, DataConfig(max_length="auto"))  # the default budget: 128
    assert capped.length == 128 and capped.capped and capped.cover_length == 190
    assert capped.truncated == pytest.approx(72 / 200)
    assert "max_auto_length=128" in capped.reason() and "length 190 would cover 95% of them" in capped.reason()
    assert capped.cost_factor() == pytest.approx(190 / 128)
    fixed = choose_length(counts, DataConfig(max_length=32))
    assert fixed.length == 32 and not fixed.auto and fixed.truncated == pytest.approx(168 / 200)
    assert "auto would choose 128" in fixed.reason()
    short = choose_length(np.full(50, 5), DataConfig(max_length="auto"))
    assert short.length == 16  # the shortest auto length
    limited = choose_length(counts, DataConfig(max_length="auto", max_auto_length=512), limit=64)
    assert limited.length == 64 and "model's limit of 64" in limited.reason()


def test_auto_length_on_a_corpus_of_known_token_counts_is_recorded_in_the_task():
    from core.data.task import prepare_task

    frame = _known_lengths_frame(200)  # k words -> k + 2 tokens ([CLS] ... [SEP]) with the tiny tokenizer
    cfg = DataConfig(train_cap=400, val_cap=40, test_cap=40, max_length="auto", max_auto_length=512)
    task = prepare_task("tiny-bert", _loaded(frame), cfg)
    counts = np.sort(task.splits.train["text"].str.split().str.len().to_numpy() + 2)
    expected_needed = int(np.percentile(counts, 95, method="inverted_cdf"))
    assert task.length.needed == expected_needed and task.length.n_texts == len(task.splits.train)
    assert task.length.length == min(-(-expected_needed // 8) * 8, 128)  # the tiny model takes 128 tokens
    assert task.data_cfg.max_length == task.length.length  # resolved: pages and the guard see a number
    assert task.encoded["train"]["input_ids"].shape[1] <= task.length.length
    described = task.describe()
    assert described["length"]["length"] == task.length.length and described["data"]["max_length"] != "auto"
    assert "share" not in described["length"] and "reason" in described["length"]


def test_the_resolved_length_and_truncation_are_part_of_the_fingerprint():
    from core.data.task import fingerprint_cfg, prepare_task

    frame = _known_lengths_frame(120)
    base = dict(train_cap=100, val_cap=20, test_cap=20)
    auto = prepare_task("tiny-bert", _loaded(frame), DataConfig(**base, max_length="auto", max_auto_length=48))
    fixed = prepare_task("tiny-bert", _loaded(frame), DataConfig(**base, max_length=48))
    other = prepare_task("tiny-bert", _loaded(frame), DataConfig(**base, max_length=40))
    ht = prepare_task("tiny-bert", _loaded(frame), DataConfig(**base, max_length=48, truncation="head+tail"))
    assert auto.length.length == 48 and auto.fingerprint == fixed.fingerprint  # the same data, the same key
    assert len({fixed.fingerprint, other.fingerprint, ht.fingerprint}) == 3
    # a config from before these fields hashes as it did (its cached teacher stays valid)
    assert set(fingerprint_cfg(DataConfig())) == {"train_cap", "val_cap", "test_cap", "max_length", "seed",
                                                  "val_fraction", "test_fraction"}
    assert fingerprint_cfg(DataConfig(truncation="head+tail"))["truncation"] == "head+tail"


def test_length_line_states_length_reason_and_share_cut():
    from core.data.truncation import choose_length

    line = choose_length(np.arange(1, 201), DataConfig(max_length="auto", truncation="head+tail")).line()
    assert line.startswith("max length 128 tokens: auto: the 95th percentile of the 200 training texts")
    assert "36% of the training texts are longer and get cut (first and last tokens kept)" in line


# ------------------------------------------------------------------------------------------------ head+tail
def _check_head_tail(tokenizer, text: str, max_length: int, first: int, last: int) -> None:
    from core.data.batches import encode
    from core.data.truncation import HEAD_SHARE

    full = tokenizer(text, add_special_tokens=True)["input_ids"]
    body = full[1:-1]
    assert full[0] == first and full[-1] == last and len(body) > max_length
    frame = pd.DataFrame({"text": [text, "short"], "label": [0, 1]})
    batch = encode(tokenizer, frame, max_length, "head+tail")
    row = batch["input_ids"][0].tolist()
    assert len(row) == max_length and int(batch["attention_mask"][0].sum()) == max_length
    head = round((max_length - 2) * HEAD_SHARE)
    tail = max_length - 2 - head
    assert row[0] == first and row[-1] == last  # [CLS] first, [SEP] last, each once
    assert row[1:1 + head] == body[:head] and row[1 + head:-1] == body[-tail:]
    assert row.count(first) == 1 and row.count(last) == 1
    # the short text is whole, padded after its own end token
    short = tokenizer("short", add_special_tokens=True)["input_ids"]
    assert batch["input_ids"][1, :len(short)].tolist() == short
    assert int(batch["attention_mask"][1].sum()) == len(short)
    # head keeps what the tokenizer's own truncation keeps (unchanged behaviour)
    head_batch = encode(tokenizer, frame, max_length, "head")
    assert head_batch["input_ids"][0].tolist() == tokenizer(text, truncation=True, max_length=max_length)["input_ids"]


def test_head_tail_keeps_first_and_last_tokens_with_the_tiny_bert_tokenizer(tiny_tokenizer):
    text = _words(60)
    _check_head_tail(tiny_tokenizer, text, 16, tiny_tokenizer.cls_token_id, tiny_tokenizer.sep_token_id)


def test_head_tail_keeps_first_and_last_tokens_with_the_e5_tokenizer():
    """The project's e5 tokenizer (core.models.e5tokenizer: ``<s> A </s>``), built from a small vocabulary."""
    from core.models.e5tokenizer import METASPACE, E5Vocab, build_tokenizer

    words = [f"w{i}" for i in range(80)]
    pieces = ["<s>", "<pad>", "</s>", "<unk>", METASPACE, *[METASPACE + w for w in words]]
    vocab = E5Vocab(tuple(pieces), np.full(len(pieces), -1.0, dtype=np.float32), 0, 2, 1, 3)
    tok = build_tokenizer(vocab, {}, 512)
    _check_head_tail(tok, " ".join(words), 20, 0, 2)


@pytest.mark.integration
def test_head_tail_with_the_real_e5_small_tokenizer():
    from core.models.registry import load_tokenizer

    tok = load_tokenizer("e5-small")
    text = " ".join(f"Sentence number {i} of a long review." for i in range(60))
    _check_head_tail(tok, text, 64, tok.cls_token_id, tok.sep_token_id)


def test_head_tail_leaves_fitting_texts_whole_and_refuses_no_room():
    from core.data.truncation import head_tail

    assert head_tail([101, 5, 6, 102], 8, 1, 1) == [101, 5, 6, 102]
    assert head_tail([101, *range(20), 102], 6, 1, 1) == [101, 0, 17, 18, 19, 102]  # 1 head, 3 tail
    with pytest.raises(ValueError, match="no room"):
        head_tail([101, *range(20), 102], 2, 1, 1)


# ------------------------------------------------------------------------------------------------ the guard
def _labels(n_major: int, n_minor: int) -> torch.Tensor:
    return torch.tensor([0] * n_major + [1] * n_minor)


def test_guard_refuses_a_teacher_whose_interval_overlaps_the_majority_rate():
    from core.teacher import F1_MARGIN, check_teacher

    train, test = _labels(100, 100), _labels(50, 50)  # balanced: majority rate 0.5, 100 test rows
    # the teacher: 0.56 on 100 rows, macro-F1 0.559 > 0.5 + margin, but its interval reaches below 0.5
    check = check_teacher({"accuracy": 0.56, "macro_f1": 0.559}, train, test, ("neg", "pos"), 32)
    assert check.macro_f1 >= check.baseline_macro_f1 + F1_MARGIN  # the old rule let it through
    assert check.accuracy_low < check.baseline_accuracy < check.accuracy < check.accuracy_high
    assert check.weak and not check.beats_majority
    assert "reaches down to" in check.message() and "[0.462, 0.653]" in check.message()
    # the same accuracy on 2,000 test rows is beyond the noise
    big = check_teacher({"accuracy": 0.56, "macro_f1": 0.559}, _labels(1000, 1000), _labels(1000, 1000),
                        ("neg", "pos"), 32)
    assert big.accuracy_low > 0.5 and not big.weak
    d = big.to_dict()
    assert d["accuracy_low"] == pytest.approx(big.accuracy_low) and d["interval"] == "Wilson" and d["level"] == 0.95


def test_guard_names_truncation_first_with_the_covering_length_and_its_cost():
    from core.data.truncation import choose_length
    from core.teacher import check_teacher

    counts = np.concatenate([np.full(180, 700), np.full(20, 20)])  # 90 % of the texts are ~700 tokens
    choice = choose_length(counts, DataConfig(max_length=32))
    check = check_teacher({"accuracy": 0.56, "macro_f1": 0.559}, _labels(100, 100), _labels(50, 50),
                          ("neg", "pos"), 32, length=choice, teacher_seconds=60.0)
    message = check.message()
    assert check.weak and check.truncation_first
    assert message.startswith("Most texts were cut: 90% of the 200 training texts are longer than 32 tokens")
    assert "A max length of 512 would cover 10% of them, at about 16.0x the compute per step" in message
    assert "this teacher took 60 s; about 16 min at 512 tokens" in message
    assert message.index("Most texts were cut") < message.index("did not learn the task")
    # few texts cut: the refusal does not blame truncation
    few = choose_length(np.full(200, 20), DataConfig(max_length=32))
    plain = check_teacher({"accuracy": 0.56, "macro_f1": 0.559}, _labels(100, 100), _labels(50, 50),
                          ("neg", "pos"), 32, length=few).message()
    assert "Most texts were cut" not in plain
    assert plain.startswith("The teacher did not learn the task beyond the noise of its 100 test rows")
    # a teacher that passes says so, whatever the truncation
    good = check_teacher({"accuracy": 0.9, "macro_f1": 0.9}, _labels(100, 100), _labels(50, 50), ("neg", "pos"),
                         32, length=choice)
    assert not good.weak and good.message().startswith("The teacher beats the trivial baselines")


def test_teacher_lines_from_a_runs_events():
    from core.data.truncation import choose_length
    from core.runs.events import StoredEvent
    from core.teacher import TeacherCheck, check_teacher, teacher_lines

    choice = choose_length(np.arange(1, 201), DataConfig(max_length="auto"))
    check = check_teacher({"accuracy": 0.56, "macro_f1": 0.559}, _labels(100, 100), _labels(50, 50),
                          ("neg", "pos"), choice.length, length=choice)
    events = [StoredEvent("r", 0, 0.0, "prepare", payload={"task": {"length": choice.to_dict()}}),
              StoredEvent("r", 1, 1.0, "teacher", payload={"loss": 0.5}),
              StoredEvent("r", 2, 2.0, "teacher_check", payload=check.to_dict())]
    assert TeacherCheck.from_dict(check.to_dict()) == check  # the event's payload reads back as the check
    lines = teacher_lines(events)
    assert lines[0] == choice.line()
    assert lines[1] == ("Teacher: test accuracy 0.560 [0.462, 0.653] (95 % Wilson, 100 test rows) against 0.500 for "
                        "always predicting 'neg'; macro-F1 0.559 against 0.500: weak.")
    assert teacher_lines([StoredEvent("r", 0, 0.0, "prepare")]) == []  # a run from before issue 23
