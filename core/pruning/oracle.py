"""The oracle: the measured cost of removing each remaining layer, with no fine-tuning.

For every remaining layer i the oracle evaluates the model with layer i removed on the validation split.
It is the truth every pruning strategy tries to predict, the ``oracle`` strategy's choice (remove the
layer whose removal hurts least) and the fusion rankers' training target.

Prefix caching makes it cheap. The model without layer i computes exactly what the full model computes up
to the input of layer i; only the layers after i see different inputs. So each validation batch goes
through the embeddings and the n layers once, keeping every layer's input h_i; "remove layer i" restarts
from h_i and runs layers i+1..n-1 and the classifier head. That is n(n+1)/2 layer passes for the whole
table (and the unpruned baseline for free) instead of n(n-1) + n for n separately built models.

The layers, embeddings, attention-mask helper and classifier head are the model's own transformers
modules, called the way ``BertModel.forward`` calls them (transformers 5); :func:`forward_logits` checks
against the model's own ``forward`` in the tests.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Callable, Sequence

import pandas as pd
import torch
from torch import nn

from core.data.batches import Batch, batches, default_device, num_batches
from core.models.registry import base_model, encoder_layers, original_layer_indices
from core.train import evaluate, scores_from_logits

Progress = Callable[[int, int], None]
"""``progress(done, total)``: called after each unit of work (a validation batch for the cached oracle,
a layer for the naive one)."""

COLUMNS = ("layer", "original_layer", "accuracy", "loss", "macro_f1", "accuracy_drop", "loss_increase")


# ------------------------------------------------------------------------------------- model pieces
def embed(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Embedding output and the attention mask every encoder layer receives, as ``BertModel.forward``
    (and its RoBERTa/ELECTRA siblings) build them: the model's embeddings module (plus ELECTRA's
    ``embeddings_project``) and transformers' ``create_bidirectional_mask`` (eager: an additive mask with
    large negative values at padding; ``None`` when nothing is padded)."""
    from transformers.masking_utils import create_bidirectional_mask

    base = base_model(model)
    if getattr(base.config, "is_decoder", False):
        raise ValueError("The oracle supports encoder (bidirectional) models only; this config is a decoder.")
    hidden = base.embeddings(input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids"))
    if hasattr(base, "embeddings_project"):
        hidden = base.embeddings_project(hidden)
    mask = create_bidirectional_mask(config=base.config, inputs_embeds=hidden,
                                     attention_mask=batch.get("attention_mask"))
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
        return classifier(model.dropout(pooler(sequence_output)))
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


# ------------------------------------------------------------------------------------------ oracle
def _check_prunable(model: nn.Module) -> int:
    n = len(encoder_layers(model))
    if n < 2:
        raise ValueError(f"The model has {n} encoder layer(s): removing one would leave none, so there is "
                         "no oracle to compute.")
    return n


@torch.no_grad()
def _cached_logits(model: nn.Module, data: Batch, batch_size: int, device: torch.device,
                   progress: Progress | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits of the full model and of each single-layer removal, by prefix caching (see module doc)."""
    layers = list(encoder_layers(model))
    n = len(layers)
    full: list[torch.Tensor] = []
    removed: list[list[torch.Tensor]] = [[] for _ in range(n)]
    total = num_batches(data, batch_size)
    for done, batch in enumerate(batches(data, batch_size, device=device), start=1):
        hidden, mask = embed(model, batch)
        inputs = []
        for layer in layers:
            inputs.append(hidden)
            hidden = layer(hidden, mask)
        full.append(head_logits(model, hidden).float().cpu())
        for i in range(n):
            out = run_layers(layers[i + 1:], inputs[i], mask)
            removed[i].append(head_logits(model, out).float().cpu())
        if progress is not None:
            progress(done, total)
    return torch.cat(full), [torch.cat(chunks) for chunks in removed]


def _table(model: nn.Module, baseline: dict[str, float], per_layer: list[dict[str, float]]) -> pd.DataFrame:
    original = original_layer_indices(model)
    rows = [{"layer": i, "original_layer": original[i], "accuracy": s["accuracy"], "loss": s["loss"],
             "macro_f1": s["macro_f1"], "accuracy_drop": baseline["accuracy"] - s["accuracy"],
             "loss_increase": s["loss"] - baseline["loss"]} for i, s in enumerate(per_layer)]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame.attrs["baseline"] = {k: baseline[k] for k in ("accuracy", "loss", "macro_f1", "n")}
    return frame


def compute_oracle(model: nn.Module, data: Batch, *, batch_size: int = 128, device: torch.device | None = None,
                   progress: Progress | None = None) -> pd.DataFrame:
    """One row per remaining layer: the validation scores of the model with that layer removed.

    Columns: ``layer`` (position), ``original_layer``, ``accuracy``, ``loss`` (mean cross-entropy),
    ``macro_f1``, ``accuracy_drop`` (unpruned accuracy minus this one; positive = removal hurts) and
    ``loss_increase``. The unpruned model's scores are in ``frame.attrs["baseline"]``. ``progress(done,
    total)`` is called after each validation batch. The model is moved to ``device`` and put in eval mode.
    """
    _check_prunable(model)
    device = device or default_device()
    model.to(device).eval()
    full, removed = _cached_logits(model, data, batch_size, device, progress)
    labels = data["labels"]
    return _table(model, scores_from_logits(full, labels), [scores_from_logits(lg, labels) for lg in removed])


def naive_oracle(model: nn.Module, data: Batch, *, batch_size: int = 128, device: torch.device | None = None,
                 progress: Progress | None = None) -> pd.DataFrame:
    """The same table as :func:`compute_oracle`, by building each pruned model with
    :func:`core.models.surgery.remove_layers` and evaluating it in full (the reference; slower).
    ``progress(done, total)`` is called after each layer."""
    from core.models.surgery import remove_layers

    n = _check_prunable(model)
    device = device or default_device()
    baseline = evaluate(model, data, batch_size, device)
    per_layer = []
    for i in range(n):
        pruned = remove_layers(model, [i], by="position")
        per_layer.append(evaluate(pruned, data, batch_size, device))
        del pruned
        if progress is not None:
            progress(i + 1, n)
    return _table(model, baseline, per_layer)


# -------------------------------------------------------------------------------------------- bench
def synthetic_texts(n: int, words: int = 48, seed: int = 0) -> list[str]:
    """``n`` seeded random English sentences of ``words`` words (long enough to fill 32 tokens)."""
    from core.models.registry import TINY_WORDS

    rng = random.Random(seed)
    return [" ".join(rng.choice(TINY_WORDS) for _ in range(words)) for _ in range(n)]


def load_bench_model(name: str, num_labels: int) -> tuple[nn.Module, object, str]:
    """Model + tokenizer for a benchmark; falls back to MiniLM-L6 when the requested model is unavailable
    (returns the key actually used)."""
    from core.models.registry import load_classifier, load_tokenizer

    try:
        return load_classifier(name, num_labels), load_tokenizer(name), name
    except Exception as exc:  # converter missing, offline hub id, ...: say so and fall back
        if name == "minilm-l6":
            raise
        print(f"note: {name} unavailable ({type(exc).__name__}: {str(exc)[:160]}); using minilm-l6")
        return load_classifier("minilm-l6", num_labels), load_tokenizer("minilm-l6"), "minilm-l6"


def bench_main(argv: list[str] | None = None) -> int:
    """``python -m core bench oracle``: naive vs prefix-cached oracle time in one process."""
    parser = argparse.ArgumentParser(prog="python -m core bench oracle")
    parser.add_argument("--model", default="e5-small")
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--labels", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv or [])
    torch.set_num_threads(args.threads)
    model, tokenizer, used = load_bench_model(args.model, args.labels)
    enc = tokenizer(synthetic_texts(args.rows), truncation=True, max_length=args.length, padding="longest",
                    return_tensors="pt", return_token_type_ids=False)
    data = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
            "labels": torch.arange(args.rows) % args.labels}
    device = torch.device("cpu")
    n = len(encoder_layers(model))
    print(f"model {used}: {n} layers; {args.rows} rows x {enc['input_ids'].shape[1]} tokens; "
          f"batch {args.batch_size}; {torch.get_num_threads()} threads")
    evaluate(model, {k: v[:args.batch_size] for k, v in data.items()}, args.batch_size, device)  # warm-up
    t0 = time.perf_counter()
    naive = naive_oracle(model, data, batch_size=args.batch_size, device=device)
    t_naive = time.perf_counter() - t0
    t0 = time.perf_counter()
    cached = compute_oracle(model, data, batch_size=args.batch_size, device=device)
    t_cached = time.perf_counter() - t0
    acc_diff = float((naive["accuracy"] - cached["accuracy"]).abs().max())
    loss_diff = float((naive["loss"] - cached["loss"]).abs().max())
    print(f"naive  oracle: {t_naive:8.2f} s")
    print(f"cached oracle: {t_cached:8.2f} s")
    print(f"ratio cached/naive: {t_cached / t_naive:.3f} (goal <= 0.6; ideal n(n+1)/2 / (n(n-1)+n) = "
          f"{(n * (n + 1) / 2) / (n * (n - 1) + n):.3f})")
    print(f"max |accuracy diff| {acc_diff:.2e}, max |loss diff| {loss_diff:.2e}")
    return 0
