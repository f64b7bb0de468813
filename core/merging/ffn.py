"""The feed-forward sublayers of a BERT-family model: capture, align, merge and tie, save and load.

Layer ``i`` of ``<base>.encoder.layer`` has the first FFN linear + activation in ``intermediate``, the second
FFN linear in ``output.dense``; ``output.LayerNorm`` and the attention sublayer stay per layer.

* **Activations** (:func:`ffn_activations`): each layer's FFN intermediate output (after the activation) over
  calibration tokens, padding masked out, captured by hooks that are always removed.
* **Align** (:func:`align_window`): every layer's neurons are matched to the reference layer's by
  ``scipy.optimize.linear_sum_assignment`` on the cross-layer neuron correlation matrix. Permuting the rows
  (and bias) of the first linear and the columns of the second leaves a layer's function unchanged
  (:func:`permute_ffn`).
* **Merge** (:func:`merge_aligned`): the aligned weights and biases are averaged and *tied*: every layer of the
  window holds the very same ``intermediate`` and ``output.dense`` modules, so the model has fewer unique
  parameters and one ``intermediate_size``.

Saving. transformers 5 ``save_pretrained`` refuses tensors shared at run time that the model class does not
declare as tied. A merged model therefore carries a state-dict hook that writes a copy per layer: any
``save_pretrained`` (:func:`core.models.surgery.save_model`, the run store, the size metric) works, a plain
``AutoModelForSequenceClassification.from_pretrained`` gives identical logits (untied in memory), and
:func:`load_merged` re-ties the layers listed in ``config.merged_ffn_windows`` (original layer indices) after
checking that their copies are equal. ``save_merged(..., compact=True)`` writes one copy per window, a smaller
file that only :func:`load_merged` reads correctly.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from core.config import check_choice
from core.data.batches import Batch, default_device, model_inputs
from core.merging.config import REFERENCES, WINDOWS_ATTR, window_label
from core.models.registry import config_of, encoder_layers, original_layer_indices, pretrained
from core.models.surgery import load_model, save_model


# ---------------------------------------------------------------------------------------- activations
def ffn_linears(layer: nn.Module) -> tuple[nn.Linear, nn.Linear]:
    """The first (``intermediate.dense``) and second (``output.dense``) FFN linears of a BERT-family layer."""
    try:
        first, second = layer.get_submodule("intermediate.dense"), layer.get_submodule("output.dense")
    except AttributeError as exc:
        raise ValueError(f"{type(layer).__name__} has no intermediate.dense / output.dense: not a BERT-family "
                         "layer") from exc
    if not isinstance(first, nn.Linear) or not isinstance(second, nn.Linear):
        raise ValueError(f"{type(layer).__name__}: the FFN's intermediate.dense and output.dense are not linear")
    return first, second


def _positions(model: nn.Module, layers: Iterable[int] | None) -> list[int]:
    n = len(encoder_layers(model))
    chosen = list(range(n)) if layers is None else [int(i) for i in layers]
    bad = [i for i in chosen if not 0 <= i < n]
    if bad:
        raise ValueError(f"Layer position(s) {bad} out of range: the model has {n} layers (0..{n - 1}).")
    return chosen


@contextlib.contextmanager
def capture_ffn(model: nn.Module, layers: Iterable[int] | None = None) -> Iterator[dict[int, list[torch.Tensor]]]:
    """Record each listed layer's FFN intermediate output (batch, tokens, intermediate) on every forward.

    The hook sits on the layer's own ``output`` module (a forward pre-hook: its first input *is* the
    intermediate output), which is never shared, so a merged model's layers are still told apart. The hooks
    are removed when the block exits, also on an exception.
    """
    positions = _positions(model, layers)
    captured: dict[int, list[torch.Tensor]] = {i: [] for i in positions}
    handles = []

    def hook_for(i: int) -> Callable[[nn.Module, tuple], None]:
        def hook(_module: nn.Module, args: tuple) -> None:
            captured[i].append(args[0].detach())
        return hook

    try:
        for i in positions:
            output = encoder_layers(model)[i].get_submodule("output")
            handles.append(output.register_forward_pre_hook(hook_for(i)))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def ffn_activations(model: nn.Module, data: Iterable[Batch], layers: Iterable[int] | None = None,
                    device: torch.device | None = None) -> dict[int, torch.Tensor]:
    """Per layer position: a (tokens, intermediate_size) float32 CPU tensor of FFN intermediate outputs
    over every non-padding token of ``data`` (an iterable of batches), in the same token order for every
    layer."""
    device = device or default_device()
    model.to(device).eval()
    out: dict[int, list[torch.Tensor]] = {}
    with capture_ffn(model, layers) as captured:
        for batch in data:
            batch = {k: v.to(device) for k, v in batch.items()}
            model(**model_inputs(batch))
            keep = batch["attention_mask"].bool()
            for i, chunks in captured.items():
                whole = torch.cat(chunks, dim=1)  # several chunks when chunk_size_feed_forward > 0
                chunks.clear()
                out.setdefault(i, []).append(whole[keep].float().cpu())
    if not out or not any(len(v) for v in out.values()):
        raise ValueError("ffn_activations got no batches")
    return {i: torch.cat(chunks) for i, chunks in out.items()}


# ------------------------------------------------------------------------------------------ alignment
def neuron_correlation(ref: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """(ref neurons x other neurons) Pearson correlation over the same tokens; constant neurons get 0."""
    if ref.shape[0] != other.shape[0]:
        raise ValueError(f"neuron_correlation needs the same tokens: {ref.shape[0]} vs {other.shape[0]}")

    def standardise(x: torch.Tensor) -> torch.Tensor:
        x = x.float() - x.float().mean(dim=0, keepdim=True)
        return x / x.pow(2).mean(dim=0, keepdim=True).sqrt().clamp_min(1e-8)

    return ((standardise(ref).T @ standardise(other)) / ref.shape[0]).clamp_(-1.0, 1.0)


def match_neurons(ref: torch.Tensor, other: torch.Tensor) -> tuple[np.ndarray, dict[str, float]]:
    """The permutation ``perm`` maximising the total correlation between ref neuron ``p`` and other neuron
    ``perm[p]`` (Hungarian assignment), and how much it gains: mean matched correlation before (identity)
    and after alignment, and the fraction of neurons that move."""
    corr = neuron_correlation(ref, other).numpy()
    rows, perm = linear_sum_assignment(corr, maximize=True)
    assert np.array_equal(rows, np.arange(len(rows)))
    stats = {"corr_identity": float(np.mean(np.diag(corr))), "corr_aligned": float(np.mean(corr[rows, perm])),
             "moved": float(np.mean(perm != rows))}
    return perm, stats


def aligned_ffn_state(layer: nn.Module, perm: Sequence[int] | np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
    """The layer's FFN weights with its neurons reordered by ``perm`` (new neuron p = old neuron perm[p]):
    rows of the first linear and its bias, columns of the second. The second bias is unaffected."""
    first, second = ffn_linears(layer)
    index = torch.as_tensor(np.asarray(perm), dtype=torch.long, device=first.weight.device)
    return {"w1": first.weight.detach()[index].clone(), "b1": first.bias.detach()[index].clone(),
            "w2": second.weight.detach()[:, index].clone(), "b2": second.bias.detach().clone()}


def _write_ffn_state(layer: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    first, second = ffn_linears(layer)
    with torch.no_grad():
        first.weight.copy_(state["w1"])
        first.bias.copy_(state["b1"])
        second.weight.copy_(state["w2"])
        second.bias.copy_(state["b2"])


def permute_ffn(layer: nn.Module, perm: Sequence[int] | np.ndarray | torch.Tensor) -> None:
    """Reorder the layer's FFN neurons in place; the layer computes exactly the same function. (On a merged
    model this reorders the shared FFN of every layer of the window.)"""
    _write_ffn_state(layer, aligned_ffn_state(layer, perm))


def _reference(window: Sequence[int], reference: str) -> int:
    check_choice("merge", "reference", reference, REFERENCES)
    return {"first": window[0], "middle": window[len(window) // 2], "last": window[-1]}[reference]


def check_window(model: nn.Module, window: Sequence[int]) -> tuple[int, ...]:
    """Validate a window of layer positions: at least two, consecutive, in range, not already merged."""
    window = tuple(int(i) for i in window)
    n = len(encoder_layers(model))
    if len(window) < 2 or window != tuple(range(window[0], window[0] + len(window))):
        raise ValueError(f"A merge window needs at least two consecutive layers, got {list(window)}")
    if window[0] < 0 or window[-1] >= n:
        raise ValueError(f"Window {window_label(window)} is out of range: the model has {n} layers "
                         f"(0..{n - 1}).")
    taken = {p for w in merged_windows(model) for p in w}
    if taken & set(window):
        raise ValueError(f"Layers {sorted(taken & set(window))} already share a merged FFN.")
    return window


def align_window(model: nn.Module, window: Sequence[int], activations: Mapping[int, torch.Tensor],
                 reference: str = "first") -> tuple[dict[int, np.ndarray], pd.DataFrame]:
    """Permutations aligning every layer of ``window`` (positions) to the reference layer, and a table of
    the alignment (layer, reference, mean correlation before/after, fraction of neurons moved)."""
    window = check_window(model, window)
    ref = _reference(window, reference)
    missing = [p for p in window if p not in activations]
    if missing:
        raise ValueError(f"No activations for layer position(s) {missing}")
    original = original_layer_indices(model)
    size = ffn_linears(encoder_layers(model)[ref])[0].out_features
    perms: dict[int, np.ndarray] = {}
    rows = []
    for p in window:
        if p == ref:
            perms[p] = np.arange(size)
            stats = {"corr_identity": 1.0, "corr_aligned": 1.0, "moved": 0.0}
        else:
            perms[p], stats = match_neurons(activations[ref], activations[p])
        rows.append({"layer": original[p], "position": p, "reference": original[ref], **stats})
    return perms, pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------- merge + tie
def merged_windows(model: nn.Module) -> list[tuple[int, ...]]:
    """The merged windows of ``model`` as layer positions (from ``config.merged_ffn_windows``, which holds
    original indices; layers removed since are left out, windows left with one layer are dropped)."""
    recorded = getattr(model.config, WINDOWS_ATTR, None) or []
    where = {orig: pos for pos, orig in enumerate(original_layer_indices(model))}
    out = []
    for window in recorded:
        present = tuple(where[int(i)] for i in window if int(i) in where)
        if len(present) >= 2:
            out.append(present)
    return out


def _unalias_state_dict(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    """State-dict post-hook of merged models: give every key sharing storage with an earlier key its own
    copy, so ``save_pretrained`` (safetensors, no aliasing) writes each layer's weights in full."""
    seen: set[tuple] = set()
    for key, value in list(state_dict.items()):
        if not isinstance(value, torch.Tensor) or value.device.type == "meta":
            continue
        ident = (value.device, value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape))
        if ident in seen:
            state_dict[key] = value.detach().clone()
        else:
            seen.add(ident)


def _ensure_save_hook(model: nn.Module) -> None:
    if not getattr(model, "_merged_ffn_save_hook", False):
        model.register_state_dict_post_hook(_unalias_state_dict)
        # a plain bool attribute (nn.Module types its attributes as tensors or submodules)
        model._merged_ffn_save_hook = True  # type: ignore[assignment]


def _tie(model: nn.Module, window: Sequence[int], source: int) -> None:
    """Make every layer of ``window`` use layer ``source``'s intermediate and output.dense modules."""
    layers = encoder_layers(model)
    intermediate, dense = layers[source].get_submodule("intermediate"), layers[source].get_submodule("output.dense")
    for p in window:
        layers[p].intermediate = intermediate
        layers[p].get_submodule("output").dense = dense


def _record_window(model: nn.Module, window: Sequence[int]) -> None:
    original = original_layer_indices(model)
    recorded = [list(map(int, w)) for w in (getattr(model.config, WINDOWS_ATTR, None) or [])]
    setattr(model.config, WINDOWS_ATTR, recorded + [[original[p] for p in window]])


def merge_aligned(model: nn.Module, window: Sequence[int], perms: Mapping[int, np.ndarray],
                  reference: str = "first") -> nn.Module:
    """A deep copy of ``model`` whose ``window`` layers share one FFN: the mean of their aligned weights and
    biases. The input model is not modified."""
    window = check_window(model, window)
    ref = _reference(window, reference)
    new = copy.deepcopy(model)
    layers = encoder_layers(new)
    states = [aligned_ffn_state(layers[p], perms[p]) for p in window]
    mean = {k: torch.stack([s[k] for s in states]).mean(dim=0) for k in states[0]}
    _write_ffn_state(layers[ref], mean)
    _tie(new, window, ref)
    _record_window(new, window)
    _ensure_save_hook(new)
    return new


def merge_ffns(model: nn.Module, window: Sequence[int], activations: Mapping[int, torch.Tensor],
               reference: str = "first") -> tuple[nn.Module, pd.DataFrame]:
    """Align and merge in one call: the merged deep copy and the alignment table."""
    perms, table = align_window(model, window, activations, reference)
    return merge_aligned(model, window, perms, reference), table


def unique_ffn_count(model: nn.Module) -> int:
    """Distinct FFN sublayers (intermediate modules) among the encoder layers."""
    return len({id(layer.intermediate) for layer in encoder_layers(model)})


def retie(model: nn.Module, check_equal: bool = True) -> nn.Module:
    """Tie the windows recorded in the config (after ``from_pretrained``): every layer of a window gets the
    first layer's FFN modules. With ``check_equal`` the copies must be equal (a portable save); a folder
    whose copies differ was changed after saving and raises ``ValueError``. Returns ``model``."""
    layers = encoder_layers(model)
    for window in merged_windows(model):
        src = ffn_linears(layers[window[0]])
        for p in window[1:]:
            if layers[p].intermediate is layers[window[0]].intermediate:
                continue
            other = ffn_linears(layers[p])
            same = all(torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias) for a, b in zip(src, other))
            if check_equal and not same:
                raise ValueError(f"Layer position {p} does not hold the same FFN as position {window[0]} although "
                                 f"the config lists them as merged ({window_label(window)}).")
        _tie(model, window, window[0])
    if merged_windows(model):
        _ensure_save_hook(model)
    return model


def save_merged(model: nn.Module, tokenizer: Any, folder: str | Path, compact: bool = False) -> Path:
    """Save a merged model atomically (:func:`core.models.surgery.save_model`). Portable by default (every layer's
    copy is written: any ``from_pretrained`` gives identical logits); ``compact=True`` writes one copy per
    window and marks the config, so only :func:`load_merged` can read it (a plain load would initialise the
    missing FFNs at random)."""
    if not compact:
        return save_model(model, tokenizer, folder)
    drop = _compact_drop_keys(model)
    shell = copy.copy(pretrained(model))  # shallow: same modules, own config and state_dict method
    shell.config = config = copy.deepcopy(config_of(model))
    config.merged_ffn_compact = True
    full_state = model.state_dict

    def compact_state(*args: Any, **kwargs: Any) -> dict:
        state = full_state(*args, **kwargs)
        return {k: v for k, v in state.items() if k not in drop}

    # an instance attribute replacing the bound method (the save reads it), typed as a method by torch
    shell.state_dict = compact_state  # type: ignore[method-assign, assignment]
    return save_model(shell, tokenizer, folder)


def _compact_drop_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the FFN copies held by every layer of a window but its first."""
    names = {id(module): name for name, module in model.named_modules()}
    layers = encoder_layers(model)
    prefix = names[id(layers)]
    return {f"{prefix}.{p}.{part}.{kind}" for window in merged_windows(model) for p in window[1:]
            for part in ("intermediate.dense", "output.dense") for kind in ("weight", "bias")}


def load_merged(folder: str | Path) -> nn.Module:
    """Load a folder written by :func:`save_merged` (or by the run store) with its merged FFNs tied again."""
    from transformers.utils import logging as hf_logging  # noqa: PLC0415 deferred: cost (transformers)

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a compact folder lacks the tied copies on purpose
    try:
        model = load_model(folder)
    finally:
        hf_logging.set_verbosity(previous)
    compact = bool(getattr(model.config, "merged_ffn_compact", False))
    if compact:
        del config_of(model).merged_ffn_compact
    return retie(model, check_equal=not compact)
