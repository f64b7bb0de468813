"""One text through a model: its prediction, the prediction with some encoder layers switched off, how the
prediction forms layer by layer, and how much each layer changes the text's hidden states.

Switching layers off is done in the forward pass (:mod:`core.models.forward`): the embeddings, the kept layers in
order, the classifier head, with the model's own modules and no copy of the model. That is exactly what the
model with those layers removed by surgery (:func:`core.models.surgery.remove_layers`) computes, so a switch is
honest (the tests check the logits are identical) and instant.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from core.data.batches import encode
from core.models.forward import embed, head_logits
from core.models.registry import encoder_layers, original_layer_indices
from core.playground.load import Loaded, PlaygroundError
from core.precision import Resolved, autocast
from core.signals.functions import block_influence
from core.signals.stats import PassStats, update_hidden

#: what the layer-by-layer reading is, in the words the page and the CLI print
LENS_DEFINITION = ("Our definition: after each layer, the trained classifier head (pooler and classifier) is "
                   "applied to that layer's hidden states, as if every later layer were removed and nothing were "
                   "retrained. It shows how the prediction forms on this text; it is not a measurement of a "
                   "layer's importance (the head was trained only on the last layer's output, so early readings "
                   "are off the states it knows, and removing a layer changes every later one).")
#: the per-example Block Influence, in words
CHANGE_DEFINITION = ("Each layer's change on this text: 1 - cosine similarity between its input and output hidden "
                     "states, averaged over the text's tokens (Block Influence, ShortGPT, on one example instead of "
                     "the calibration set).")


@dataclass(frozen=True)
class Prediction:
    """A model's answer on one text: the class, the probabilities of every class, and the encoder layers that
    ran (original indices)."""

    label: str
    index: int
    probs: tuple[float, ...]
    layers: tuple[int, ...]

    @property
    def confidence(self) -> float:
        return self.probs[self.index]

    def to_dict(self, label_names: Sequence[str]) -> dict:
        return {"label": self.label, "confidence": self.confidence, "layers": list(self.layers),
                "probabilities": {str(n): p for n, p in zip(label_names, self.probs)}}


@dataclass(frozen=True)
class LayerTrace:
    """One forward pass of one text, read after every layer: ``lens`` has a row per depth (``after`` is
    ``embeddings`` or the original index of the layer just run) with every class's probability under
    :data:`LENS_DEFINITION`; ``change`` has a row per layer that ran with its Block Influence on the text."""

    prediction: Prediction
    lens: pd.DataFrame
    change: pd.DataFrame


@dataclass(frozen=True)
class Comparison:
    """The playground's answer: the teacher, the compressed model and, when layers are switched off, the teacher
    without them, on one text."""

    text: str
    label_names: tuple[str, ...]
    tokens: int
    text_tokens: int
    teacher: Prediction
    compressed: Prediction | None
    teacher_off: Prediction | None
    layers_off: tuple[int, ...]

    @property
    def truncated(self) -> bool:
        """Whether the run's max length cut the text (the models read ``tokens`` of its ``text_tokens``)."""
        return self.text_tokens > self.tokens

    @property
    def agree(self) -> bool | None:
        """Whether the teacher and the compressed model predict the same class (None without a compressed one)."""
        return None if self.compressed is None else self.teacher.index == self.compressed.index

    def to_dict(self) -> dict:
        names = self.label_names
        return {"text": self.text, "tokens": self.tokens, "text_tokens": self.text_tokens, "truncated": self.truncated,
                "teacher": self.teacher.to_dict(names),
                "compressed": self.compressed.to_dict(names) if self.compressed else None,
                "agree": self.agree, "layers_off": list(self.layers_off),
                "teacher_layers_off": self.teacher_off.to_dict(names) if self.teacher_off else None}


# ------------------------------------------------------------------------------------------------ input
def encode_text(loaded: Loaded, text: str) -> dict[str, torch.Tensor]:
    """One text tokenised as the run's splits were (:func:`core.data.batches.encode`, the run's max length and
    truncation), on the models' device."""
    if not isinstance(text, str) or not text.strip():
        raise PlaygroundError("The text is empty: type or paste a sentence, or draw an example from the test split.")
    batch = encode(loaded.task.tokenizer, pd.DataFrame({"text": [text], "label": [0]}), loaded.max_length,
                   loaded.truncation)
    device = next(loaded.teacher.parameters()).device
    return {k: v.to(device) for k, v in batch.items() if k != "labels"}


def token_count(loaded: Loaded, text: str) -> tuple[int, int]:
    """How many tokens the models see of ``text`` (at most the run's max length) and how many it has."""
    full = len(loaded.task.tokenizer(text, truncation=False)["input_ids"])
    return min(full, loaded.max_length), full


def kept_positions(model: nn.Module, layers_off: Iterable[int]) -> list[int]:
    """Positions (in the model's ModuleList) of the layers that stay on when the original layers ``layers_off``
    are switched off; a clear error for a layer the model does not have and for switching every layer off."""
    off = sorted({int(i) for i in layers_off})
    have = original_layer_indices(model)
    unknown = [i for i in off if i not in have]
    if unknown:
        raise PlaygroundError(f"Layer(s) {unknown} are not in the model: it has layers {have}.")
    keep = [p for p, i in enumerate(have) if i not in off]
    if not keep:
        raise PlaygroundError(f"Every layer ({len(have)}) is switched off: keep at least one on.")
    return keep


# ------------------------------------------------------------------------------------------------ forward
def _softmax(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.float(), dim=-1).cpu().numpy()


@torch.no_grad()
def skip_logits(model: nn.Module, batch: dict[str, torch.Tensor], layers_off: Iterable[int] = (), *,
                precision: Resolved) -> torch.Tensor:
    """The logits of ``model`` with the original layers ``layers_off`` skipped: embeddings, the kept layers in
    order, the classifier head (no copy of the model). Equal to the logits of
    ``remove_layers(model, layers_off)`` (the tests check it)."""
    return trace_logits(model, batch, layers_off, precision=precision, every_layer=False)[-1]


@torch.no_grad()
def trace_logits(model: nn.Module, batch: dict[str, torch.Tensor], layers_off: Iterable[int] = (), *,
                 precision: Resolved, hidden: list[torch.Tensor] | None = None, every_layer: bool = True
                 ) -> list[torch.Tensor]:
    """The classifier head read after the embeddings and after every kept layer (the last entry is the model's
    logits; ``every_layer=False``: the model's logits alone); the hidden states after each of those stages are
    appended to ``hidden`` when given."""
    keep = kept_positions(model, layers_off)
    layers = encoder_layers(model)
    device = next(model.parameters()).device
    model.eval()
    with autocast(precision, device, inference=True):
        state, mask = embed(model, batch)
        states = [state]
        for p in keep:
            state = layers[p](state, mask)
            states.append(state)
        logits = [head_logits(model, s).float() for s in (states if every_layer else states[-1:])]
    if hidden is not None:
        hidden.extend(s.float() for s in states)
    return logits


def predict(loaded: Loaded, model: nn.Module, batch: dict[str, torch.Tensor], layers_off: Iterable[int] = ()
            ) -> Prediction:
    """``model``'s prediction on one encoded text, with ``layers_off`` switched off."""
    off = set(int(i) for i in layers_off)
    probs = _softmax(skip_logits(model, batch, off, precision=loaded.precision))[0]
    index = int(probs.argmax())
    layers = tuple(i for i in original_layer_indices(model) if i not in off)
    return Prediction(label=str(loaded.label_names[index]), index=index, probs=tuple(float(p) for p in probs),
                      layers=layers)


def compare(loaded: Loaded, text: str, layers_off: Iterable[int] = ()) -> Comparison:
    """Teacher and compressed model on ``text``; with ``layers_off``, also the teacher without those layers."""
    off = tuple(sorted({int(i) for i in layers_off}))
    batch = encode_text(loaded, text)
    tokens, text_tokens = token_count(loaded, text)
    teacher = predict(loaded, loaded.teacher, batch)
    compressed = predict(loaded, loaded.compressed, batch) if loaded.compressed is not None else None
    teacher_off = predict(loaded, loaded.teacher, batch, off) if off else None
    return Comparison(text=text, label_names=loaded.label_names, tokens=tokens, text_tokens=text_tokens,
                      teacher=teacher, compressed=compressed, teacher_off=teacher_off, layers_off=off)


def layer_change(hidden: Sequence[torch.Tensor], mask: torch.Tensor, layers: Sequence[nn.Module]) -> np.ndarray:
    """Block Influence of each layer on one text from its hidden states (``hidden[0]`` = the embeddings, then
    one per layer): the signals' own accumulation (:func:`core.signals.stats.update_hidden`) and formula
    (:func:`core.signals.functions.block_influence`) over this text's tokens."""
    stats = PassStats(layers=list(layers), parts=frozenset({"cosine"}))
    update_hidden(stats, torch.stack(list(hidden)), mask)
    stats.n_examples, stats.n_tokens = int(mask.shape[0]), int(mask.sum())
    return np.asarray(block_influence(stats), dtype=float)


def trace(loaded: Loaded, text: str, layers_off: Iterable[int] = (), model: nn.Module | None = None) -> LayerTrace:
    """How ``model``'s (default: the teacher's) prediction on ``text`` forms layer by layer with ``layers_off``
    switched off (:data:`LENS_DEFINITION`), and each kept layer's change on the text (:data:`CHANGE_DEFINITION`)."""
    model = loaded.teacher if model is None else model
    off = sorted({int(i) for i in layers_off})
    batch = encode_text(loaded, text)
    hidden: list[torch.Tensor] = []
    logits = trace_logits(model, batch, off, precision=loaded.precision, hidden=hidden)
    kept = [i for i in original_layer_indices(model) if i not in off]
    names = [str(n) for n in loaded.label_names]
    probs = np.stack([_softmax(lg)[0] for lg in logits])
    lens = pd.DataFrame(probs, columns=names)
    lens.insert(0, "after", ["embeddings", *[str(i) for i in kept]])
    lens.insert(1, "depth", range(len(lens)))
    lens["predicted"] = [names[int(p.argmax())] for p in probs]
    layers = [encoder_layers(model)[p] for p in kept_positions(model, off)]
    change = pd.DataFrame({"layer": kept, "change": layer_change(hidden, batch["attention_mask"], layers)})
    last = probs[-1]
    prediction = Prediction(label=names[int(last.argmax())], index=int(last.argmax()),
                            probs=tuple(float(p) for p in last), layers=tuple(kept))
    return LayerTrace(prediction=prediction, lens=lens, change=change)
