"""The oracle: the prefix-cached path agrees with building and evaluating each pruned model."""

from __future__ import annotations

import random

import pytest
import torch

from core.models.surgery import keep_layers, remove_layers
from core.models.tiny import TINY_WORDS
from core.pruning.oracle import COLUMNS, compute_oracle, forward_logits, naive_oracle
from core.train import evaluate


def sharpen(model, seed: int = 1):
    """Larger random weights: every layer visibly changes the output, so a mix-up of layers shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2 and "embeddings" not in name:
                p.normal_(0.0, 0.3, generator=gen)
    return model.eval()


def ragged_data(tokenizer, n: int = 40, seed: int = 0) -> dict[str, torch.Tensor]:
    """Texts of 1..30 words: most rows of a padded batch are mostly padding."""
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(TINY_WORDS) for _ in range(rng.choice([1, 2, 3, 30]))) for _ in range(n)]
    enc = tokenizer(texts, truncation=True, max_length=32, padding="longest", return_tensors="pt",
                    return_token_type_ids=False)
    assert (enc["attention_mask"] == 0).float().mean() > 0.4
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
            "labels": torch.tensor([rng.randrange(2) for _ in range(n)])}


@pytest.fixture()
def model(tiny_model):
    return sharpen(tiny_model)


@pytest.fixture()
def data(tiny_tokenizer):
    return ragged_data(tiny_tokenizer)


@torch.no_grad()
def test_no_removal_reproduces_model_logits(model, data):
    batch = {k: data[k] for k in ("input_ids", "attention_mask")}
    torch.testing.assert_close(forward_logits(model, batch), model(**batch).logits, atol=1e-5, rtol=0)


@torch.no_grad()
def test_skipping_a_layer_matches_removing_it(model, data):
    batch = {k: data[k] for k in ("input_ids", "attention_mask")}
    for i in (0, 6, 11):
        want = remove_layers(model, [i], by="position")(**batch).logits
        torch.testing.assert_close(forward_logits(model, batch, skip=i), want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kept", [list(range(12)), [0, 3, 4, 8, 11]])
def test_cached_equals_naive(model, data, kept):
    model = keep_layers(model, kept)
    cached = compute_oracle(model, data, batch_size=20, device=torch.device("cpu"), precision="fp32")
    naive = naive_oracle(model, data, batch_size=20, device=torch.device("cpu"))
    assert list(cached.columns) == list(COLUMNS)
    assert cached["layer"].tolist() == list(range(len(kept)))
    assert cached["original_layer"].tolist() == kept
    assert naive["original_layer"].tolist() == kept
    assert cached["loss"].std() > 1e-2  # layers differ: a mix-up of rows would not pass below
    for col in ("accuracy", "loss", "macro_f1", "accuracy_drop", "loss_increase"):
        assert (cached[col] - naive[col]).abs().max() <= 1e-5, col
    for key in ("accuracy", "loss", "macro_f1"):
        assert abs(cached.attrs["baseline"][key] - naive.attrs["baseline"][key]) <= 1e-5


def test_baseline_and_derived_columns(model, data):
    table = compute_oracle(model, data, batch_size=16, device=torch.device("cpu"), precision="fp32")
    reference = evaluate(model, data, batch_size=40, device=torch.device("cpu"), precision="fp32")
    base = table.attrs["baseline"]
    assert base["n"] == 40
    assert abs(base["accuracy"] - reference["accuracy"]) <= 1e-6
    assert abs(base["loss"] - reference["loss"]) <= 1e-5
    assert ((base["accuracy"] - table["accuracy"]) - table["accuracy_drop"]).abs().max() < 1e-12
    assert ((table["loss"] - base["loss"]) - table["loss_increase"]).abs().max() < 1e-12


def test_progress_is_reported(model, data):
    calls: list[tuple[int, int]] = []
    compute_oracle(model, data, batch_size=12, device=torch.device("cpu"), precision="fp32",
                   progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]  # 40 rows in batches of 12
    calls.clear()
    naive_oracle(keep_layers(model, [1, 2, 3]), data, batch_size=64, device=torch.device("cpu"),
                 progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_one_layer_model_has_no_oracle(model, data):
    with pytest.raises(ValueError, match="would leave none"):
        compute_oracle(keep_layers(model, [4]), data, precision="fp32")


def _tiny_sibling(kind: str):
    """Tiny RoBERTa / ELECTRA classifiers built from a config: their heads take the sequence output, and
    ELECTRA projects its (smaller) embeddings."""
    from transformers import (
        ElectraConfig,
        ElectraForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    common = dict(vocab_size=len(TINY_WORDS) + 5, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0, attn_implementation="eager", num_labels=2)
    torch.manual_seed(0)
    if kind == "roberta":
        return sharpen(RobertaForSequenceClassification(RobertaConfig(pad_token_id=0, **common)))
    return sharpen(ElectraForSequenceClassification(ElectraConfig(embedding_size=16, pad_token_id=0, **common)))


@pytest.mark.parametrize("kind", ["roberta", "electra"])
def test_other_bert_family_heads(kind, data):
    model = _tiny_sibling(kind)
    batch = {k: data[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        torch.testing.assert_close(forward_logits(model, batch), model(**batch).logits, atol=1e-5, rtol=0)
    cached = compute_oracle(model, data, batch_size=16, device=torch.device("cpu"), precision="fp32")
    naive = naive_oracle(model, data, batch_size=16, device=torch.device("cpu"))
    assert (cached["loss"] - naive["loss"]).abs().max() <= 1e-5
