"""All twelve signals from one instrumented pass, and the pruning order each one implies.

Per batch the pass runs ONE forward with ``output_hidden_states`` and ``output_attentions`` (eager
attention) and, when a gradient signal is asked for, ONE backward of the mean cross-entropy, taken with
``torch.autograd.grad`` w.r.t. the encoder layers' parameters only: the model's ``.grad`` fields are never
touched. The model runs in eval mode (no dropout: the signals are deterministic) inside
:func:`instrumented`, a context manager that always restores training flags, ``requires_grad``, device
and attention implementation, even on error. No hooks of our own are needed: transformers already
returns every layer's input/output and attention map, and all statistics are taken on detached tensors.

The result is a tidy table (one row per remaining layer) with the raw value of each signal and a
``score__<key>`` column that is the value when the registry says "lowest pruned first" and its negation
when it says "highest": ranking always prunes the LOWEST score first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from core.config import check_int
from core.data.batches import Batch, model_inputs
from core.models.registry import encoder_layers, original_layer_indices, pretrained
from core.signals.functions import FUNCTIONS
from core.signals.registry import BASELINES, SIGNAL_KEYS, STRATEGIES, get_info
from core.signals.stats import PassStats, update_attention, update_counts, update_gradients, update_hidden

#: what ``compute_signals`` computes by default: the twelve signals and the block-influence baseline
DEFAULT_COLUMNS: tuple[str, ...] = SIGNAL_KEYS + ("block_influence",)


@contextlib.contextmanager
def instrumented(model: nn.Module, device: torch.device | str | None = None,
                 train_layers: bool = False) -> Iterator[nn.Module]:
    """Eval mode, eager attention, on ``device``, layer parameters trainable if ``train_layers``; every
    change is undone on exit (per-module training flags, ``requires_grad``, device, attention)."""
    modes = {m: m.training for m in model.modules()}
    params = [p for layer in encoder_layers(model) for p in layer.parameters()]
    requires = [p.requires_grad for p in params]
    first = next(model.parameters(), None)
    old_device = first.device if first is not None else None
    old_attn = getattr(model.config, "_attn_implementation", "eager")
    try:
        if old_attn != "eager":
            pretrained(model).set_attn_implementation("eager")  # attention maps exist only with eager attention
        if device is not None:
            model.to(device)
        model.eval()
        if train_layers:
            for p in params:
                p.requires_grad_(True)
        yield model
    finally:
        for p, flag in zip(params, requires):
            p.requires_grad_(flag)
        for m, flag in modes.items():
            m.training = flag
        if device is not None and old_device is not None:
            model.to(old_device)
        if old_attn != "eager":
            pretrained(model).set_attn_implementation(old_attn)


def _parts_for(columns: Sequence[str]) -> frozenset[str]:
    return frozenset().union(*(FUNCTIONS[c].parts for c in columns))


def _needs_labels(columns: Sequence[str]) -> bool:
    return any("labels" in get_info(c).needs for c in columns)


def _run_batch(model: nn.Module, batch: Batch, stats: PassStats, device: torch.device) -> None:
    """One forward (+ one backward) on ``batch``, folded into ``stats``."""
    batch = {k: v.to(device) for k, v in batch.items()}
    mask = batch["attention_mask"]
    labels = batch.get("labels")
    parts = stats.parts
    want_hidden = bool(parts & {"activation", "pooled", "covariance", "cosine"})
    want_attn = "attention" in parts
    want_grad = "gradient" in parts
    with torch.set_grad_enabled(want_grad):
        out = model(**model_inputs(batch), output_hidden_states=want_hidden, output_attentions=want_attn)
        grads = _layer_gradients(out.logits, labels, stats) if want_grad else None
    with torch.no_grad():
        if want_hidden:
            hidden = _checked(out.hidden_states, stats.n_layers + 1, "hidden states")
            update_hidden(stats, torch.stack([h.detach() for h in hidden]), mask)
        if want_attn:
            attn = _checked(out.attentions, stats.n_layers, "attention maps")
            update_attention(stats, torch.stack([a.detach() for a in attn]), mask)
        if grads is not None:
            update_gradients(stats, grads, int(mask.shape[0]))
        update_counts(stats, mask, labels)


def _layer_gradients(logits: torch.Tensor, labels: torch.Tensor | None, stats: PassStats
                     ) -> list[list[torch.Tensor]]:
    """Gradient of the batch's mean cross-entropy w.r.t. each layer's parameters (``.grad`` untouched)."""
    if labels is None:
        raise ValueError("gradient signals need labels: every batch must carry a 'labels' tensor")
    loss = F.cross_entropy(logits.float(), labels)
    per_layer = stats.params
    flat = list({id(p): p for layer in per_layer for p in layer}.values())  # tied weights once
    grads = torch.autograd.grad(loss, flat, allow_unused=True)
    by_id = {id(p): (g if g is not None else torch.zeros_like(p)) for p, g in zip(flat, grads)}
    return [[by_id[id(p)] for p in layer] for layer in per_layer]


def _checked(values: Sequence[torch.Tensor] | None, expected: int, what: str) -> Sequence[torch.Tensor]:
    if values is None or len(values) != expected or any(v is None for v in values):
        got = "none" if values is None else str(len(values))
        raise RuntimeError(f"The model returned {got} {what}, expected {expected}: load it with "
                           "attn_implementation='eager' through core.models.registry.")
    return values


def collect(model: nn.Module, batches: Iterable[Batch], columns: Sequence[str] = DEFAULT_COLUMNS,
            device: torch.device | str | None = None) -> PassStats:
    """Run the instrumented pass over ``batches`` and return the accumulated statistics."""
    layers = list(encoder_layers(model))
    parts = _parts_for(columns)
    stats = PassStats(layers=layers, parts=parts)
    if not parts:  # weight signals only: no data needed
        return stats
    with instrumented(model, device, train_layers="gradient" in parts):
        run_device = next(model.parameters()).device
        for batch in batches:
            if _needs_labels(columns) and "labels" not in batch:
                raise ValueError("the batches carry no 'labels', which "
                                 f"{', '.join(c for c in columns if 'labels' in get_info(c).needs)} need")
            _run_batch(model, batch, stats, run_device)
    if stats.n_examples == 0:
        raise ValueError("compute_signals got no batches: pass at least one calibration batch")
    return stats


def compute_signals(model: nn.Module, batches: Iterable[Batch], *, device: torch.device | str | None = None,
                    mi_components: int = 4, seed: int = 0, signals: Sequence[str] | None = None
                    ) -> pd.DataFrame:
    """One row per remaining layer: ``layer``, ``original_layer``, the raw value of each signal in
    ``signals`` (default: the twelve plus ``block_influence``) and its ``score__<key>`` (lower = pruned
    first). ``batches`` are dicts with ``input_ids``, ``attention_mask`` and ``labels`` (see
    :func:`core.data.batches.batches`); they are iterated once. Deterministic for a given ``seed`` (the MI
    estimator's jitter) on a given device.
    """
    check_int("compute_signals", "mi_components", mi_components, 1, 1024)
    check_int("compute_signals", "seed", seed, 0, 2**31 - 1)
    columns = tuple(DEFAULT_COLUMNS if signals is None else signals)
    for key in columns:
        if key not in FUNCTIONS:
            raise KeyError(f"{key!r} is not a computed signal; choose from {', '.join(FUNCTIONS)}")
    stats = collect(model, batches, columns, device)
    table = pd.DataFrame({"layer": np.arange(stats.n_layers), "original_layer": original_layer_indices(model)})
    for key in columns:
        spec = FUNCTIONS[key]
        kwargs = {"components": mi_components, "seed": seed} if spec.takes_mi_options else {}
        table[key] = spec.fn(stats, **kwargs)
    for key in columns:
        sign = 1.0 if get_info(key).direction == "lowest" else -1.0
        table[get_info(key).score_column] = sign * table[key]
    table.attrs.update(n_examples=stats.n_examples, n_tokens=stats.n_tokens, seed=seed,
                       mi_components=mi_components)
    return table


def rank_layers(table: pd.DataFrame, strategy: str, seed: int = 0) -> list[int]:
    """Original layer indices in pruning order (first = pruned first) for a signal key or baseline.

    Signals and ``block_influence`` sort by ``score__<key>`` ascending (ties: the lower position first;
    NaN scores last); ``top_down`` takes the last remaining layer first; ``random`` is a permutation
    seeded by ``seed``.
    """
    if strategy not in STRATEGIES:
        raise KeyError(f"Unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    ordered = table.sort_values("layer")
    original = ordered["original_layer"].to_numpy()
    if strategy == "random":
        return [int(i) for i in np.random.default_rng(seed).permutation(original)]
    if strategy == "top_down":
        return [int(i) for i in original[::-1]]
    column = get_info(strategy).score_column
    if column not in ordered:
        raise KeyError(f"The table has no {column!r}: compute {strategy!r} with compute_signals first")
    order = np.argsort(ordered[column].to_numpy(dtype=np.float64), kind="stable")
    return [int(original[i]) for i in order]


__all__ = ["BASELINES", "DEFAULT_COLUMNS", "collect", "compute_signals", "instrumented", "rank_layers"]
