"""A BERT-family classifier's forward pass in pieces: embeddings (and the attention mask every layer gets), the
encoder layers, the classifier head. The oracle restarts the pass at any layer's input with them; the latency
benchmark times the non-encoder part alone.

They are the model's own transformers modules, called the way ``BertModel.forward`` calls them (transformers
5); :func:`forward_logits` is checked against the model's own ``forward`` in the tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from core.models.registry import base_model, config_of, encoder_layers

#: a batch of model inputs (``core.data.batches.Batch``; models sit below data, so the type is spelled here)
Batch = Mapping[str, torch.Tensor]


def embed(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Embedding output and the attention mask every encoder layer receives, as ``BertModel.forward``
    (and its RoBERTa/ELECTRA siblings) build them: the model's embeddings module (plus ELECTRA's
    ``embeddings_project``) and transformers' ``create_bidirectional_mask`` (eager: an additive mask with
    large negative values at padding; ``None`` when nothing is padded)."""
    from transformers.masking_utils import create_bidirectional_mask  # noqa: PLC0415 deferred: cost (transformers)

    base = base_model(model)
    config = config_of(base)
    if getattr(config, "is_decoder", False):
        raise ValueError("The oracle supports encoder (bidirectional) models only; this config is a decoder.")
    hidden = base.get_submodule("embeddings")(input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids"))
    if hasattr(base, "embeddings_project"):
        hidden = base.get_submodule("embeddings_project")(hidden)
    mask = create_bidirectional_mask(config=config, inputs_embeds=hidden,
                                     attention_mask=batch.get("attention_mask"))
    if mask is not None and not isinstance(mask, torch.Tensor):  # a BlockMask comes only with flex attention
        raise TypeError(f"expected an additive attention mask (eager attention), got a {type(mask).__name__}")
    return hidden, mask


def run_layers(layers: Sequence[nn.Module], hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Run encoder layers in order, as ``BertEncoder.forward`` does (each returns its hidden states)."""
    for layer in layers:
        hidden = layer(hidden, mask)
    return hidden


def head_logits(model: nn.Module, sequence_output: torch.Tensor) -> torch.Tensor:
    """The classifier head applied to the encoder's last hidden states, with the model's own modules.

    ``BertForSequenceClassification``: pooler (first token, dense, tanh) -> dropout -> linear classifier.
    RoBERTa / XLM-R / CamemBERT / ELECTRA: their ``classifier`` head takes the whole sequence output.
    """
    classifier = getattr(model, "classifier", None)
    if classifier is None:
        raise ValueError(f"{type(model).__name__} has no 'classifier': expected a *ForSequenceClassification model.")
    if isinstance(classifier, nn.Linear):
        pooler = getattr(base_model(model), "pooler", None)
        if pooler is None:
            raise ValueError(f"{type(model).__name__} has a linear classifier but no pooler.")
        return classifier(model.get_submodule("dropout")(pooler(sequence_output)))
    return classifier(sequence_output)


@torch.no_grad()
def forward_logits(model: nn.Module, batch: Batch, skip: int | None = None) -> torch.Tensor:
    """Logits of ``model`` on one batch through the pieces above, optionally skipping the layer at
    position ``skip``. ``skip=None`` reproduces ``model(**batch).logits``."""
    layers = list(encoder_layers(model))
    if skip is not None:
        layers = layers[:skip] + layers[skip + 1:]
    hidden, mask = embed(model, batch)
    return head_logits(model, run_layers(layers, hidden, mask))
