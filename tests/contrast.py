"""A tiny model whose layers differ: the fixture that lets a test tell a good pruning choice from a bad one.

The tiny random BERT trained on a keyword task leaves the oracle flat (every layer removable at the same
accuracy), so nothing can be learnt or checked about *which* layer goes. :func:`contrast_model` builds a
12-layer tiny BERT in which most layers are exact identities and a few carry the whole task:

* every LayerNorm (embeddings and both per layer) is fixed at weight 1, bias 0, so every layer's output is
  a normalised vector;
* in a *harmless* layer the attention output projection and the FFN output projection are zero (weights
  and biases), so the layer computes ``LN(LN(x) + 0) + 0``: for a normalised ``x`` that is ``x`` itself
  (to float precision). Removing it leaves the model's function unchanged: its oracle accuracy is the full
  model's accuracy;
* three *critical* layers: one layer (default 2) is trained, with the embeddings, pooler and classifier,
  on a task whose label is a keyword anywhere in the sentence, so the [CLS] vector must gather it through
  attention: without that layer the model predicts one class (accuracy 1/3). Two later layers (default 5
  and 9) flip the sign of their input exactly (:func:`make_negation`); together they cancel, but removing
  either one hands the head a negated vector and the accuracy falls to about 0.

A single trained layer is used because a model trained with several free layers spreads the task over
them unevenly: most of them become removable and the oracle is flat again.

Seconds to build on one CPU core and deterministic under ``seed``. The result carries the model, its
tokenizer, a :class:`core.data.task.Task` (train/val/test encoded as a prepared task would be) and the two
groups of layers, so fusion, study and bank tests can check that a strategy ranking by the truth beats one
ranking against it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
import torch
from torch import nn

from core.config import DataConfig, TrainConfig, check_int
from core.data.batches import Batch, encode, make_splits, sort_by_length
from core.models.registry import encoder_layers, get_model_spec, load_classifier, load_tokenizer

#: keyword groups, one per class: the label of a sentence is the group of the one keyword it holds
KEYWORDS: tuple[tuple[str, ...], ...] = (("good", "great", "love"), ("bad", "awful", "hate"),
                                         ("football", "tennis", "match"))
LABEL_NAMES: tuple[str, ...] = ("positive", "negative", "sport")
#: the one layer trained on the task, and the sign-flipping layers (an even number, after it) by default
DEFAULT_TRAINED = 2
DEFAULT_NEGATIONS: tuple[int, ...] = (5, 9)
DATASET_KEY = "contrast-keywords"
_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class ContrastModel:
    """The trained contrast model and what a test needs around it."""

    model: nn.Module = field(repr=False)
    tokenizer: Any = field(repr=False)
    task: Any = field(repr=False)  # core.data.task.Task
    harmless_layers: tuple[int, ...]
    critical_layers: tuple[int, ...]

    @property
    def batches(self) -> dict[str, Batch]:
        """The encoded ``train`` / ``val`` / ``test`` splits."""
        return self.task.encoded

    def __iter__(self) -> Iterator[Any]:  # model, tokenizer, task, harmless, critical = contrast_model()
        return iter((self.model, self.tokenizer, self.task, self.harmless_layers, self.critical_layers))


def keyword_frame(tokenizer: Any, n: int = 600, seed: int = 0) -> pd.DataFrame:
    """``n`` sentences of 4-16 filler words with one class keyword at a random place; label = its group.
    Filler words are the tokenizer's plain words that are not keywords."""
    keywords = {w for group in KEYWORDS for w in group}
    filler = sorted(w for w in tokenizer.get_vocab() if w not in keywords and w not in _SPECIALS)[:80]
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % len(KEYWORDS)
        words = [rng.choice(filler) for _ in range(rng.randint(4, 16))]
        words.insert(rng.randint(0, len(words)), rng.choice(KEYWORDS[label]))
        rows.append((" ".join(words), label))
    return pd.DataFrame(rows, columns=["text", "label"])


def contrast_task(tokenizer: Any, seed: int = 0, rows: int = 600) -> Any:
    """The keyword task as a prepared :class:`core.data.task.Task` for the tiny model (val/test sorted by
    length as :func:`core.data.task.prepare_task` does)."""
    from core.data.task import Task

    cfg = DataConfig(train_cap=rows, val_cap=rows, test_cap=rows, seed=seed)
    splits = make_splits(keyword_frame(tokenizer, rows, seed), LABEL_NAMES, cfg)
    encoded = {name: encode(tokenizer, getattr(splits, name), cfg.max_length) for name in ("train", "val", "test")}
    frames = {}
    for name in ("val", "test"):
        encoded[name], frames[name] = sort_by_length(encoded[name], getattr(splits, name))
    return Task(model=get_model_spec("tiny-bert"), dataset_key=DATASET_KEY, dataset_name="Contrast keywords",
                data_cfg=cfg, splits=replace(splits, **frames), tokenizer=tokenizer, encoded=encoded,
                fingerprint=f"{DATASET_KEY}-seed{seed}-rows{rows}")


def _layer_norms(model: nn.Module) -> list[nn.LayerNorm]:
    return [m for m in model.modules() if isinstance(m, nn.LayerNorm)]


@torch.no_grad()
def make_identity(layer: nn.Module) -> None:
    """Zero the attention-output and FFN-output projections of a BERT layer (weights and biases): with unit
    LayerNorms the layer then maps a normalised input to itself."""
    for linear in (layer.attention.output.dense, layer.output.dense):
        linear.weight.zero_()
        linear.bias.zero_()


@torch.no_grad()
def make_negation(layer: nn.Module) -> None:
    """Make a BERT layer map a normalised input ``x`` to ``-x``: no attention output, and an FFN computing
    ``-2 (gelu(x) - gelu(-x)) = -2x`` (intermediate weights ``[I; -I]``, output weights ``[-2I, 2I]``), so
    the layer returns ``LN(x - 2x) = -x``. Needs GELU and an intermediate size of twice the hidden size."""
    first, second = layer.intermediate.dense, layer.output.dense
    hidden = first.in_features
    if first.out_features != 2 * hidden:
        raise ValueError(f"make_negation needs intermediate_size = 2 * hidden ({2 * hidden}), got "
                         f"{first.out_features}")
    eye = torch.eye(hidden)
    make_identity(layer)
    first.weight.copy_(torch.cat([eye, -eye]))
    first.bias.zero_()
    second.weight.copy_(torch.cat([-2 * eye, 2 * eye], dim=1))


def contrast_model(seed: int = 0, trained: int = DEFAULT_TRAINED,
                   negations: tuple[int, ...] = DEFAULT_NEGATIONS, epochs: float = 6.0,
                   rows: int = 600, precision: str = "fp32") -> ContrastModel:
    """Build and train the contrast model (see the module docstring). Deterministic for a given ``seed``.

    ``trained`` is the position of the one layer trained on the task; ``negations`` are the positions of the
    sign-flipping layers (an even number, all after ``trained``); every other layer is an identity.
    ``precision`` is the training precision, pinned (fp32 by default) so the fixture never follows the machine;
    scripts/archive/contrast_hold_rates.py builds it in both precisions and several seeds.
    """
    check_int("contrast_model", "seed", seed, 0, 2**31 - 1)
    check_int("contrast_model", "trained", trained, 0, 11)
    negations = tuple(sorted({int(i) for i in negations}))
    if len(negations) % 2 or any(not trained < i < 12 for i in negations):
        raise ValueError(f"contrast_model.negations must be an even number of layers after the trained layer "
                         f"{trained} (at most 11), got {list(negations)}")
    from core.train import fine_tune, run_to_end

    tokenizer = load_tokenizer("tiny-bert")
    task = contrast_task(tokenizer, seed, rows)
    model = load_classifier("tiny-bert", num_labels=len(LABEL_NAMES),
                            id2label=dict(enumerate(LABEL_NAMES)), seed=seed)
    layers = encoder_layers(model)
    critical = tuple(sorted((trained, *negations)))
    harmless = tuple(i for i in range(len(layers)) if i not in critical)
    with torch.no_grad():
        for norm in _layer_norms(model):
            norm.weight.fill_(1.0)
            norm.bias.zero_()
    for i in harmless:
        make_identity(layers[i])
    for i in negations:
        make_negation(layers[i])
    frozen = [p for norm in _layer_norms(model) for p in norm.parameters()]
    frozen += [p for i, layer in enumerate(layers) if i != trained for p in layer.parameters()]
    for p in frozen:
        p.requires_grad_(False)
    cfg = TrainConfig(epochs=epochs, lr=3e-3, batch_size=32, head_lr_multiplier=1.0, weight_decay=0.0,
                      freeze_word_embeddings=False, group_by_length=False, seed=seed, precision=precision)
    try:
        run_to_end(fine_tune(model, task.encoded["train"], cfg, device=torch.device("cpu")))
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    model.eval()
    return ContrastModel(model=model, tokenizer=tokenizer, task=task, harmless_layers=harmless,
                         critical_layers=critical)


__all__ = ["ContrastModel", "DATASET_KEY", "DEFAULT_NEGATIONS", "DEFAULT_TRAINED", "KEYWORDS", "LABEL_NAMES",
           "contrast_model", "contrast_task", "keyword_frame", "make_identity", "make_negation"]
