"""Layer removal on the tiny 12-layer BERT: structure, numerics, composition, round trip, errors."""

from __future__ import annotations

import copy

import pytest
import torch

from core.models.registry import encoder_layers, original_layer_indices
from core.models.surgery import keep_layers, load_model, remove_layers, save_model

TEXTS = ["good movie", "the film was really very bad and the music was awful too", "love it",
         "what a terrible slow boring long game"]


@pytest.fixture()
def batch(tiny_tokenizer):
    enc = tiny_tokenizer(TEXTS, padding="longest", return_tensors="pt", return_token_type_ids=False)
    assert (enc["attention_mask"] == 0).any()  # the batch is padded: masks matter
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


@pytest.fixture()
def model(tiny_model):
    """The tiny model with larger random weights, so that every layer visibly changes the output."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in tiny_model.named_parameters():
            if p.ndim == 2 and "embeddings" not in name:
                p.normal_(0.0, 0.3, generator=gen)
    return tiny_model.eval()


def reference_states(model, batch, skip: set[int]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """By hand: embeddings, the original layers not in ``skip`` with a hand-made additive mask, then
    pooler + classifier. Returns the hidden states after each kept layer and the logits."""
    bert = model.bert
    hidden = bert.embeddings(input_ids=batch["input_ids"])
    mask = (1.0 - batch["attention_mask"][:, None, None, :].float()) * torch.finfo(torch.float32).min
    states = []
    for i, layer in enumerate(bert.encoder.layer):
        if i not in skip:
            hidden = layer(hidden, mask)
            states.append(hidden)
    return states, model.classifier(bert.pooler(hidden))


def layer_idx_values(model) -> list[list[int]]:
    return [[m.layer_idx for m in layer.modules() if hasattr(m, "layer_idx")] for layer in encoder_layers(model)]


@torch.no_grad()
def test_remove_two_layers_structure_and_outputs(model, batch):
    pruned = remove_layers(model, {3, 7})
    assert len(encoder_layers(pruned)) == 10
    assert pruned.config.num_hidden_layers == 10
    assert pruned.config.kept_layers == [0, 1, 2, 4, 5, 6, 8, 9, 10, 11]
    assert original_layer_indices(pruned) == [0, 1, 2, 4, 5, 6, 8, 9, 10, 11]
    assert layer_idx_values(pruned) == [[i] for i in range(10)]  # BertLayer's attention.self carries it
    out = pruned(**batch, output_hidden_states=True)
    states, logits = reference_states(model, batch, skip={3, 7})
    assert len(out.hidden_states) == 11
    for got, want in zip(out.hidden_states[1:], states):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.logits, logits, atol=1e-5, rtol=0)
    full = model(**batch).logits
    assert (full - out.logits).abs().max() > 1e-3  # removing layers did change the answer


def test_removal_composes(model, batch):
    both = remove_layers(model, [3, 7])
    step = remove_layers(remove_layers(model, [3]), [7])
    by_position = remove_layers(remove_layers(model, [3]), [6], by="position")  # original 7 is now at 6
    for other in (step, by_position):
        assert other.config.kept_layers == both.config.kept_layers
        assert layer_idx_values(other) == layer_idx_values(both)
        a, b = both.state_dict(), other.state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
        with torch.no_grad():
            assert torch.equal(other(**batch).logits, both(**batch).logits)


def test_save_and_load_round_trip(model, batch, tiny_tokenizer, tmp_path):
    pruned = remove_layers(model, [0, 5, 11])
    folder = save_model(pruned, tiny_tokenizer, tmp_path / "pruned")
    assert (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists()
    assert not list(folder.glob("*.bin"))
    loaded = load_model(folder)
    assert loaded.config.kept_layers == [1, 2, 3, 4, 6, 7, 8, 9, 10]
    assert loaded.config.num_hidden_layers == 9
    assert layer_idx_values(loaded) == [[i] for i in range(9)]
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, pruned(**batch).logits)
    # a second pruning step on the loaded model still speaks original indices
    again = remove_layers(loaded, [6])
    assert again.config.kept_layers == [1, 2, 3, 4, 7, 8, 9, 10]


def test_save_model_replaces_atomically(model, tmp_path):
    folder = tmp_path / "m"
    save_model(model, None, folder)
    save_model(remove_layers(model, [2]), None, folder)
    assert load_model(folder).config.kept_layers == [0, 1] + list(range(3, 12))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp or old folders left behind


def test_load_model_refuses_non_model_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(tmp_path)


@torch.no_grad()
def test_down_to_one_layer(model, batch):
    single = keep_layers(model, [5])
    assert single.config.kept_layers == [5]
    assert single.config.num_hidden_layers == 1
    assert layer_idx_values(single) == [[0]]
    _, logits = reference_states(model, batch, skip=set(range(12)) - {5})
    torch.testing.assert_close(single(**batch).logits, logits, atol=1e-5, rtol=0)
    same = remove_layers(model, [i for i in range(12) if i != 5])
    assert torch.equal(same(**batch).logits, single(**batch).logits)


def test_input_model_unchanged(model, batch):
    before = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        logits = model(**batch).logits
    remove_layers(model, [1, 2, 3])
    keep_layers(model, [0, 4])
    assert len(encoder_layers(model)) == 12
    assert model.config.num_hidden_layers == 12
    assert getattr(model.config, "kept_layers", None) is None
    assert layer_idx_values(model) == [[i] for i in range(12)]
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, logits)


@pytest.mark.parametrize("layers, by, message", [
    (range(12), "original", "Cannot remove all 12 layers"),
    ([3, 3], "original", r"Duplicate layer indices \[3\]"),
    ([12], "original", r"Original layer\(s\) \[12\] are not in the model"),
    ([-1], "original", r"Original layer\(s\) \[-1\] are not in the model"),
    ([12], "position", r"out of range: the model has 12 layers"),
    ([], "original", "No layers given"),
    ([1], "index", "by must be 'original' or 'position'"),
])
def test_errors_are_clear(model, layers, by, message):
    with pytest.raises(ValueError, match=message):
        remove_layers(model, layers, by=by)


def test_errors_after_a_removal_use_original_indices(model):
    pruned = remove_layers(model, [3])
    with pytest.raises(ValueError, match=r"Original layer\(s\) \[3\] are not in the model"):
        remove_layers(pruned, [3])
    with pytest.raises(ValueError, match=r"out of range: the model has 11 layers"):
        remove_layers(pruned, [11], by="position")
    with pytest.raises(ValueError, match=r"Original layer\(s\) \[3\]"):
        keep_layers(pruned, [3, 4])
    with pytest.raises(ValueError, match="at least one"):
        keep_layers(pruned, [])
