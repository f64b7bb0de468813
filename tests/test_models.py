"""The model registry (offline errors that say what to do) and the tiny random BERT the unit tests use."""

from __future__ import annotations

import pytest

from core.models.registry import (
    MODELS,
    ModelUnavailableError,
    count_parameters,
    encoder_layers,
    get_model_spec,
    model_dir,
    original_layer_indices,
)


def test_registry_entries_and_hub_offline_error(monkeypatch):
    assert {"e5-small", "minilm-l6", "bert-base-uncased", "tiny-bert"} <= set(MODELS)
    assert MODELS["e5-small"].num_layers == 12
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as err:
        model_dir(get_model_spec("bert-base-uncased"))
    msg = str(err.value)
    assert "offline" in msg.lower() and "e5-small" in msg and "minilm-l6" in msg
    with pytest.raises(ModelUnavailableError):
        get_model_spec("not a model id")


def test_tiny_model_shape(tiny_model):
    assert len(encoder_layers(tiny_model)) == 12
    assert tiny_model.config.hidden_size == 32 and tiny_model.config.num_attention_heads == 4
    assert original_layer_indices(tiny_model) == list(range(12))
    counts = count_parameters(tiny_model)
    assert counts["total"] == sum(p.numel() for p in tiny_model.parameters())
    assert counts["encoder"] + counts["embeddings"] + counts["head"] == counts["total"]
