"""A model's card: its architecture and parameter counts, read from its configuration alone.

The model is built as an empty skeleton on PyTorch's ``meta`` device, so no weights are loaded or allocated; the
counts are those of the bare encoder (embeddings, layers, pooler) without a classification head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.models.registry import count_parameters, model_dir, per_layer_parameters


@dataclass(frozen=True)
class ModelCard:
    layers: int
    hidden: int
    heads: int
    ffn: int
    vocab: int
    model_type: str
    #: parameters of each encoder layer, in order
    per_layer: tuple[int, ...]
    #: unique parameters: ``total``, ``encoder``, ``embeddings`` and ``head`` (the pooler here)
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return self.counts["total"]

    @property
    def encoder_share(self) -> float:
        """The encoder layers' share of all parameters."""
        return self.counts["encoder"] / max(self.total, 1)

    @property
    def layer_share(self) -> float:
        """What removing one (the first) encoder layer saves, as a share of all parameters."""
        return (self.per_layer[0] if self.per_layer else 0) / max(self.total, 1)


def model_card(key: str) -> ModelCard:
    """The card of a registry key or hub id (raises ``ModelUnavailableError`` when it cannot be found)."""
    from transformers import AutoConfig, AutoModel  # noqa: PLC0415 deferred: cost (transformers)

    cfg = AutoConfig.from_pretrained(str(model_dir(key)), trust_remote_code=False)
    with torch.device("meta"):
        skeleton = AutoModel.from_config(cfg)
    return ModelCard(layers=cfg.num_hidden_layers, hidden=cfg.hidden_size, heads=cfg.num_attention_heads,
                     ffn=cfg.intermediate_size, vocab=cfg.vocab_size, model_type=cfg.model_type,
                     per_layer=tuple(per_layer_parameters(skeleton)), counts=count_parameters(skeleton))
