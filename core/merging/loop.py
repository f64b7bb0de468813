"""Feed-forward sublayer merging (Verma, Murray, Duh, arXiv 2501.06126) and prune-vs-merge at equal budget.

The method, on any BERT-family classifier (layer ``i`` of ``<base>.encoder.layer`` has the first FFN
linear + activation in ``intermediate``, the second FFN linear in ``output.dense``; ``output.LayerNorm``
and the attention sublayer stay per layer):

1. **Activations** (:func:`ffn_activations`): each layer's FFN intermediate output (after the activation)
   over calibration tokens, padding masked out, captured by hooks that are always removed.
2. **Window** (:func:`score_windows`): ``k`` consecutive layers. Candidates are scored either by
   validation accuracy after merging without tuning (``selection="accuracy"``, *our default*: it measures
   the objective itself, as the pruning oracle does, and costs one deep copy, ``k - 1`` assignments and one
   validation pass per candidate) or by the mean linear CKA between the window's FFN activations
   (``selection="similarity"``: no evaluation at all, a cheap proxy for large models).
3. **Align** (:func:`align_window`): every layer's neurons are matched to the reference layer's (the first
   of the window by default) by ``scipy.optimize.linear_sum_assignment`` on the cross-layer neuron
   correlation matrix. Permuting the rows (and bias) of the first linear and the columns of the second
   leaves a layer's function unchanged (:func:`permute_ffn`).
4. **Merge** (:func:`merge_aligned`): the aligned weights and biases are averaged and *tied*: every layer of
   the window holds the very same ``intermediate`` and ``output.dense`` modules, so the model has fewer
   unique parameters and one ``intermediate_size``.
5. **Recover**: fine-tune with :func:`core.train.fine_tune` (shared parameters stay shared) and optionally
   distil from the teacher.

Saving. transformers 5 ``save_pretrained`` refuses tensors shared at run time that the model class does not
declare as tied. A merged model therefore carries a state-dict hook that writes a copy per layer: any
``save_pretrained`` (:func:`core.models.surgery.save_model`, the run store, the size metric) works, a plain
``AutoModelForSequenceClassification.from_pretrained`` gives identical logits (untied in memory), and
:func:`load_merged` re-ties the layers listed in ``config.merged_ffn_windows`` (original layer indices)
after checking that their copies are equal. ``save_merged(..., compact=True)`` writes one copy per window,
a smaller file that only :func:`load_merged` reads correctly.

Prune vs merge (:func:`matched_pruning_depth`): merging ``k`` FFNs removes ``k - 1`` FFNs' worth of
parameters; the pruning side removes the number of whole layers whose parameter count is closest, chosen by
the greedy oracle (remove the layer whose removal costs least validation accuracy, re-measure, repeat; no
tuning in between: the same "measure, do not predict" rule as the accuracy window selection), then gets the
same fine-tuning and distillation budget.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generator, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from core.config import (ConfigError, DataConfig, TrainConfig, check_choice, check_float, check_int, from_dict,
                     to_dict)
from core.data.batches import Batch, batches, default_device, model_inputs, take
from core.models.registry import count_parameters, encoder_layers, original_layer_indices, per_layer_parameters
from core.runs.events import Event, StageClock, prepare_and_teach
from core.train import DistillConfig, attach_teacher_logits, evaluate, fine_tune

SELECTIONS = ("accuracy", "similarity")
REFERENCES = ("first", "middle", "last")
#: window size when neither ``window`` nor ``auto_k`` is given (our default)
DEFAULT_WINDOW_SIZE = 4
#: the config attribute that records merged windows (lists of original layer indices)
WINDOWS_ATTR = "merged_ffn_windows"
PRUNING_STRATEGY = "oracle (greedy: remove the cheapest layer on validation, re-measure; no tuning between)"


# --------------------------------------------------------------------------------------------- config
def parse_window(text: str, owner: str = "MergeConfig", name: str = "window") -> tuple[int, ...]:
    """``"4-6"`` -> ``(4, 5, 6)``: an inclusive range of at least two consecutive layer positions."""
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(f"{owner}.{name} must look like '4-6' (first-last layer, inclusive), got {text!r}")
    first, last = int(match.group(1)), int(match.group(2))
    if last <= first:
        raise ConfigError(f"{owner}.{name} must span at least two layers (first < last), got {text!r}")
    return tuple(range(first, last + 1))


def window_label(window: Sequence[int]) -> str:
    return f"{window[0]}-{window[-1]}"


@dataclass(frozen=True)
class MergeConfig:
    """One merging run. ``window`` ("4-6", layer positions, inclusive) fixes the layers; otherwise a window
    of ``auto_k`` layers (default :data:`DEFAULT_WINDOW_SIZE`) is chosen by ``selection``. ``lr=None`` is
    our per-model default (1e-3 for tiny-bert, 1e-4 otherwise). ``epochs`` of fine-tuning and ``kd`` are
    the budget both the merged and (``compare_pruning``) the matched pruned model get. Activations come from
    the first ``calibration_size`` training rows; CKA uses at most ``max_cka_tokens`` of their tokens.
    ``reference`` is the layer the others are aligned to (the paper's default: the first)."""

    model: str = "e5-small"
    dataset: str = "trec"
    window: str | None = None
    auto_k: int | None = None
    selection: str = "accuracy"
    reference: str = "first"
    epochs: float = 2.0
    lr: float | None = None
    distill: bool = True
    kd: DistillConfig = field(default_factory=DistillConfig)
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TrainConfig | None = None
    calibration_size: int = 256
    max_cka_tokens: int = 2048
    compare_pruning: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        o = "MergeConfig"
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"{o}.model must be a registry key or hub id, got {self.model!r}")
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ConfigError(f"{o}.dataset must be a dataset key, got {self.dataset!r}")
        if self.window is not None:
            parse_window(self.window, o)
            if self.auto_k is not None:
                raise ConfigError(f"{o}: give window or auto_k, not both (window={self.window!r}, "
                                  f"auto_k={self.auto_k!r})")
        elif self.auto_k is not None:
            check_int(o, "auto_k", self.auto_k, 2, 48)
        check_choice(o, "selection", self.selection, SELECTIONS)
        check_choice(o, "reference", self.reference, REFERENCES)
        check_float(o, "epochs", self.epochs, 0.0, 50.0)
        if self.lr is not None:
            check_float(o, "lr", self.lr, 0.0, 1.0, lo_open=True)
        for name in ("distill", "compare_pruning"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{o}.{name} must be true or false, got {getattr(self, name)!r}")
        check_int(o, "calibration_size", self.calibration_size, 8, 100_000)
        check_int(o, "max_cka_tokens", self.max_cka_tokens, 16, 100_000)
        check_int(o, "seed", self.seed, 0, 2**31 - 1)

    @property
    def strategy(self) -> str:
        """The run store's strategy label: ``merge-fixed``, ``merge-accuracy`` or ``merge-similarity``."""
        return f"merge-{'fixed' if self.window else self.selection}"

    @property
    def window_size(self) -> int:
        return len(parse_window(self.window)) if self.window else (self.auto_k or DEFAULT_WINDOW_SIZE)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MergeConfig":
        return from_dict(cls, d)


# ---------------------------------------------------------------------------------------- activations
def ffn_linears(layer: nn.Module) -> tuple[nn.Linear, nn.Linear]:
    """The first (``intermediate.dense``) and second (``output.dense``) FFN linears of a BERT-family layer."""
    try:
        first, second = layer.intermediate.dense, layer.output.dense
    except AttributeError as exc:
        raise ValueError(f"{type(layer).__name__} has no intermediate.dense / output.dense: not a BERT-family "
                         "layer") from exc
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

    def hook_for(i: int):
        def hook(_module: nn.Module, args: tuple) -> None:
            captured[i].append(args[0].detach())
        return hook

    try:
        for i in positions:
            handles.append(encoder_layers(model)[i].output.register_forward_pre_hook(hook_for(i)))
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


# ----------------------------------------------------------------------------------------- similarity
def _centred(x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    return x - x.mean(dim=0, keepdim=True)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) of two (samples, features) matrices:
    ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``; 1 for representations equal up to rotation and
    scale, 0 for unrelated ones."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"linear_cka needs the same samples: {x.shape[0]} vs {y.shape[0]} rows")
    xc, yc = _centred(x), _centred(y)
    denom = float(torch.linalg.norm(xc.T @ xc) * torch.linalg.norm(yc.T @ yc))
    return float(torch.linalg.norm(yc.T @ xc) ** 2) / denom if denom > 0 else 0.0


def cka_matrix(activations: Mapping[int, torch.Tensor], labels: Sequence[int] | None = None,
               max_tokens: int = 2048, seed: int = 0) -> pd.DataFrame:
    """Layers x layers linear CKA of FFN activations, on at most ``max_tokens`` seeded random tokens (the
    same tokens for every layer). Uses centred Gram matrices (tokens x tokens), cheaper than features x
    features for the wide FFNs; ``labels`` name the rows/columns (default: the activation keys)."""
    keys = list(activations)
    n = activations[keys[0]].shape[0]
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_tokens] if n > max_tokens \
        else torch.arange(n)
    grams = []
    for k in keys:
        x = activations[k][idx].float()
        x = x - x.mean(dim=0, keepdim=True)
        gram = (x @ x.T).double()
        grams.append(gram / torch.linalg.norm(gram).clamp_min(1e-30))
    m = len(keys)
    values = np.ones((m, m))
    for a in range(m):
        for b in range(a + 1, m):
            values[a, b] = values[b, a] = float((grams[a] * grams[b]).sum())
    names = list(labels) if labels is not None else keys
    frame = pd.DataFrame(values, index=pd.Index(names, name="layer"), columns=names)
    return frame


def ffn_similarity(model: nn.Module, data: Iterable[Batch], max_tokens: int = 2048, seed: int = 0,
                   device: torch.device | None = None) -> pd.DataFrame:
    """Layers x layers linear CKA between the FFN activations of every layer (labelled by original layer
    index): the mergeability heatmap."""
    acts = ffn_activations(model, data, device=device)
    return cka_matrix(acts, original_layer_indices(model), max_tokens=max_tokens, seed=seed)


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
        model._merged_ffn_save_hook = True


def _tie(model: nn.Module, window: Sequence[int], source: int) -> None:
    """Make every layer of ``window`` use layer ``source``'s intermediate and output.dense modules."""
    layers = encoder_layers(model)
    intermediate, dense = layers[source].intermediate, layers[source].output.dense
    for p in window:
        layers[p].intermediate = intermediate
        layers[p].output.dense = dense


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
    from core.models.surgery import save_model

    if not compact:
        return save_model(model, tokenizer, folder)
    drop = _compact_drop_keys(model)
    shell = copy.copy(model)  # shallow: same modules, own config and state_dict method
    shell.config = copy.deepcopy(model.config)
    shell.config.merged_ffn_compact = True
    full_state = model.state_dict

    def compact_state(*args: Any, **kwargs: Any) -> dict:
        state = full_state(*args, **kwargs)
        return {k: v for k, v in state.items() if k not in drop}

    shell.state_dict = compact_state  # type: ignore[method-assign]
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
    from core.models.surgery import load_model
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a compact folder lacks the tied copies on purpose
    try:
        model = load_model(folder)
    finally:
        hf_logging.set_verbosity(previous)
    compact = bool(getattr(model.config, "merged_ffn_compact", False))
    if compact:
        del model.config.merged_ffn_compact
    return retie(model, check_equal=not compact)


# ------------------------------------------------------------------------------------ window selection
def candidate_windows(model: nn.Module, size: int) -> list[tuple[int, ...]]:
    """Every window of ``size`` consecutive layer positions that does not touch an already merged layer."""
    n = len(encoder_layers(model))
    if not 2 <= size <= n:
        raise ValueError(f"A window of {size} layers is impossible in a model with {n} layers (2..{n}).")
    taken = {p for w in merged_windows(model) for p in w}
    out = [tuple(range(s, s + size)) for s in range(n - size + 1)]
    return [w for w in out if not taken & set(w)]


def mean_window_cka(similarity: pd.DataFrame, window: Sequence[int]) -> float:
    """Mean off-diagonal CKA among the window's layers (``similarity`` indexed by position order)."""
    block = similarity.to_numpy()[np.ix_(list(window), list(window))]
    m = len(window)
    return float((block.sum() - np.trace(block)) / (m * (m - 1)))


def score_window(model: nn.Module, window: Sequence[int], activations: Mapping[int, torch.Tensor],
                 similarity: pd.DataFrame, selection: str, *, val: Batch | None = None, reference: str = "first",
                 device: torch.device | None = None) -> dict[str, Any]:
    """One candidate's row: its layers, mean CKA and, for ``selection="accuracy"``, the validation scores of
    the model merged on it without tuning."""
    check_choice("score_window", "selection", selection, SELECTIONS)
    original = original_layer_indices(model)
    row: dict[str, Any] = {"window": window_label([original[p] for p in window]), "start": window[0],
                           "end": window[-1], "mean_cka": mean_window_cka(similarity, window)}
    if selection == "accuracy":
        if val is None:
            raise ValueError("selection='accuracy' needs validation data")
        merged, _ = merge_ffns(model, window, activations, reference)
        scores = evaluate(merged, val, device=device)
        row.update(val_accuracy=scores["accuracy"], val_loss=scores["loss"], val_macro_f1=scores["macro_f1"])
    return row


def rank_windows(rows: Sequence[Mapping[str, Any]], selection: str) -> pd.DataFrame:
    """The candidates' table with ``rank`` (1 = chosen): best validation accuracy, then lowest loss
    (``accuracy``), or highest mean CKA (``similarity``)."""
    table = pd.DataFrame(list(rows))
    if table.empty:
        raise ValueError("No candidate windows to rank.")
    if selection == "accuracy":
        order = table.sort_values(["val_accuracy", "val_loss"], ascending=[False, True], kind="stable").index
    else:
        order = table.sort_values("mean_cka", ascending=False, kind="stable").index
    table.loc[order, "rank"] = np.arange(1, len(table) + 1)
    table["rank"] = table["rank"].astype(int)
    return table


def score_windows(model: nn.Module, size: int, activations: Mapping[int, torch.Tensor],
                  similarity: pd.DataFrame, selection: str, *, val: Batch | None = None,
                  reference: str = "first", device: torch.device | None = None) -> pd.DataFrame:
    """Every free window of ``size`` layers scored (:func:`score_window`) and ranked (:func:`rank_windows`)."""
    rows = [score_window(model, w, activations, similarity, selection, val=val, reference=reference,
                         device=device) for w in candidate_windows(model, size)]
    return rank_windows(rows, selection)


def chosen_window(table: pd.DataFrame) -> tuple[int, ...]:
    best = table.loc[table["rank"] == 1].iloc[0]
    return tuple(range(int(best["start"]), int(best["end"]) + 1))


# ------------------------------------------------------------------------------------------- budget
def ffn_parameter_count(model: nn.Module, position: int = 0) -> int:
    """Parameters of one layer's FFN linears (weights and biases of both)."""
    return sum(p.numel() for lin in ffn_linears(encoder_layers(model)[position]) for p in lin.parameters())


def matched_pruning_depth(model: nn.Module, window_size: int) -> dict[str, int]:
    """The layer-pruning depth whose parameter count is closest to merging ``window_size`` FFNs (which
    removes ``window_size - 1`` FFNs' worth). Pruning ``d`` layers is counted as ``d`` times the mean
    per-layer parameter count (BERT's layers are all the same size); depth is at least 1, ties go to the
    shallower depth."""
    per_layer = per_layer_parameters(model)
    n = len(per_layer)
    merge_removed = (window_size - 1) * ffn_parameter_count(model)
    mean_layer = float(np.mean(per_layer))
    depth = min(range(1, n), key=lambda d: (abs(d * mean_layer - merge_removed), d))
    return {"depth": depth, "merge_removed": int(merge_removed), "prune_removed": int(round(depth * mean_layer)),
            "layer_params": int(round(mean_layer)), "ffn_params": ffn_parameter_count(model)}


# -------------------------------------------------------------------------------------------- events
def _lr_default(model_key: str, lr: float | None, fallback: float) -> float:
    if lr is not None:
        return lr
    return 1e-3 if model_key == "tiny-bert" else fallback


def model_scores(model: nn.Module, val: Batch, test: Batch, device: torch.device | None = None
                 ) -> dict[str, Any]:
    """Validation and test scores, unique parameters, layers and distinct FFNs of ``model``."""
    v, t = evaluate(model, val, device=device), evaluate(model, test, device=device)
    params = count_parameters(model)
    return {"n_layers": len(encoder_layers(model)), "unique_ffns": unique_ffn_count(model),
            "val_accuracy": v["accuracy"], "val_macro_f1": v["macro_f1"], "val_loss": v["loss"],
            "test_accuracy": t["accuracy"], "test_macro_f1": t["macro_f1"], "test_loss": t["loss"],
            "params_total": params["total"], "params_encoder": params["encoder"]}


def model_latency(model: nn.Module) -> float:
    """CPU latency in ms of one 32 x 32 batch (merging keeps the compute; pruning removes some)."""
    from core.metrics import LatencyConfig, measure_latency

    return measure_latency(model, LatencyConfig(repeats=5, warmup=1))


@dataclass
class _Recovery:
    """What the merged and the pruned model both get: the same fine-tuning and distillation budget."""

    train: Batch
    train_kd: Batch | None
    train_cfg: TrainConfig
    kd_cfg: TrainConfig | None
    kd: DistillConfig | None
    val: Batch
    test: Batch
    device: torch.device


def _recover(model: nn.Module, rec: _Recovery, clock: StageClock, label: str, stages: tuple[str, str],
             prefix: str = "") -> Generator[Event, None, dict[str, dict[str, Any]]]:
    """Fine-tune then (optionally) distil ``model`` in place, yielding progress (0..1) under ``stages``
    (fine-tuning, distillation); returns the scores after each."""
    out: dict[str, dict[str, Any]] = {}
    half = 0.5 if rec.kd is not None else 1.0
    for p in fine_tune(model, rec.train, rec.train_cfg, device=rec.device):
        yield Event(stages[0], step=1, progress=half * p.fraction, message=f"{label}: fine-tuning "
                    f"{p.step}/{p.total_steps}, loss {p.loss:.3f}", payload={"loss": p.loss, "fraction": p.fraction})
    clock.tick(f"{prefix}finetune")
    out["finetuned"] = model_scores(model, rec.val, rec.test, rec.device)
    clock.tick(f"{prefix}evaluate")
    if rec.kd is not None and rec.train_kd is not None and rec.kd_cfg is not None:
        for p in fine_tune(model, rec.train_kd, rec.kd_cfg, distill=rec.kd, device=rec.device):
            yield Event(stages[1], step=1, progress=0.5 + 0.5 * p.fraction,
                        message=f"{label}: distillation {p.step}/{p.total_steps}, loss {p.loss:.3f}",
                        payload={"loss": p.loss, "fraction": p.fraction})
        clock.tick(f"{prefix}distill")
        out["distilled"] = model_scores(model, rec.val, rec.test, rec.device)
        clock.tick(f"{prefix}evaluate")
    return out


def _prune_side(teacher: nn.Module, depth: int, rec: _Recovery, clock: StageClock
                ) -> Generator[Event, None, dict[str, Any]]:
    """Remove ``depth`` layers by the greedy oracle, then give the pruned model the same recovery budget."""
    from core.pruning.oracle import compute_oracle
    from core.models.surgery import remove_layers

    model, removed = teacher, []
    for d in range(1, depth + 1):
        yield Event("compare", step=1, progress=0.2 * (d - 1) / depth, message=f"Pruning side: oracle {d}/{depth} "
                    f"on {len(encoder_layers(model))} layers")
        oracle = compute_oracle(model, rec.val, device=rec.device)
        best = int(oracle.sort_values(["accuracy", "loss"], ascending=[False, True]).iloc[0]["original_layer"])
        model = remove_layers(model, [best], by="original")
        removed.append(best)
    clock.tick("prune_select")
    scores = {"no_tuning": model_scores(model, rec.val, rec.test, rec.device)}
    clock.tick("prune_evaluate")
    scores.update((yield from _map_progress(_recover(model, rec, clock, f"Pruning side ({depth} layers)",
                                                     ("compare", "compare"), prefix="prune_"), 0.2, 1.0)))
    scores["latency_ms"] = model_latency(model)
    clock.tick("prune_evaluate")
    return {"strategy": PRUNING_STRATEGY, "depth": depth, "removed_layers": removed,
            "kept_layers": original_layer_indices(model), **scores}


def _comparison_table(teacher: dict[str, Any], merged: Mapping[str, Any], pruning: Mapping[str, Any] | None
                      ) -> pd.DataFrame:
    """Long table: method x stage -> parameters and accuracy (what the prune-vs-merge chart draws)."""
    rows = [{"method": "teacher", "stage": "teacher", **_row(teacher, teacher)}]
    for method, scores in (("merge", merged), ("prune", pruning or {})):
        for stage in ("no_tuning", "finetuned", "distilled"):
            if stage in scores:
                rows.append({"method": method, "stage": stage, **_row(scores[stage], teacher)})
    return pd.DataFrame(rows)


def _row(scores: Mapping[str, Any], teacher: Mapping[str, Any]) -> dict[str, Any]:
    return {"params_total": scores["params_total"],
            "params_removed": teacher["params_total"] - scores["params_total"],
            "n_layers": scores["n_layers"], "unique_ffns": scores["unique_ffns"],
            "val_accuracy": scores["val_accuracy"], "test_accuracy": scores["test_accuracy"],
            "test_macro_f1": scores["test_macro_f1"]}


def merge_events(cfg: MergeConfig, *, run_id: str = "", dataset: Any = None,
                 device: torch.device | None = None) -> Iterator[Event]:
    """Run the whole method (and the matched pruning side), yielding :class:`core.pruning.loop.Event` objects.

    Stages: prepare, teacher, step_done (step 0: the teacher), similarity (table ``ffn_similarity``),
    select (one per scored candidate), choice (table ``windows``), align (table ``alignment``), merge,
    finetune, distill, step_done (step 1: the merged model), compare (the pruning side), done (summary,
    table ``comparison``, the merged model). ``dataset`` may be a loaded upload instead of ``cfg.dataset``;
    ``run_id`` is unused (the runner passes it to every kind of run).
    """
    del run_id
    device = device or default_device()
    torch.manual_seed(cfg.seed)
    clock = StageClock()
    task, teacher, teacher_cfg, base = yield from _teacher_phase(cfg, dataset, device, clock)
    acts, similarity = yield from _similarity_phase(cfg, task, teacher, device, clock)
    window, choice = yield from _select(cfg, teacher, acts, similarity, task.encoded["val"], device, clock)
    merged, no_tuning = yield from _merge_phase(cfg, teacher, window, acts, base, task, device, clock)
    del acts
    budget = matched_pruning_depth(teacher, len(window))
    rec = _recovery(cfg, task, teacher, teacher_cfg, device)
    clock.tick("distill" if cfg.distill else "finetune")
    hi = 0.6 if cfg.compare_pruning else 0.95
    merged_scores = {"no_tuning": no_tuning}
    merged_scores.update((yield from _map_progress(
        _recover(merged, rec, clock, f"Merged {window_label(window)}", ("finetune", "distill")), 0.2, hi)))
    final = {**(merged_scores.get("distilled") or merged_scores["finetuned"]), "latency_ms": model_latency(merged)}
    clock.tick("evaluate")
    shared = _shared_ok(merged, window)
    row = {**final, "window": window_label(window), "merged_layers": choice["window"],
           "no_tuning_test_accuracy": no_tuning["test_accuracy"],
           "finetuned_test_accuracy": merged_scores["finetuned"]["test_accuracy"], "ffn_still_shared": shared}
    yield Event("step_done", step=1, progress=hi, message=f"Merged model: test accuracy {final['test_accuracy']:.3f}",
                payload=row)
    pruning = None
    if cfg.compare_pruning:
        pruning = yield from _map_progress(_prune_side(teacher, budget["depth"], rec, clock), hi, 0.98)
    summary = _summary(cfg, base, choice, budget, merged_scores, final, pruning, shared, clock)
    yield Event("done", step=1, progress=1.0, message="Finished", payload=summary,
                tables={"comparison": _comparison_table(base, merged_scores, pruning)},
                artifacts={"model": merged, "tokenizer": task.tokenizer})


def _teacher_phase(cfg: MergeConfig, dataset: Any, device: torch.device, clock: StageClock
                   ) -> Generator[Event, None, tuple[Any, nn.Module, TrainConfig, dict[str, Any]]]:
    """Data, the (cached) teacher and its scores (step 0)."""
    task, teacher, teacher_cfg, cached = yield from prepare_and_teach(cfg.model, cfg.dataset, dataset, cfg.data,
                                                                      cfg.teacher, device, clock)
    base = {**model_scores(teacher, task.encoded["val"], task.encoded["test"], device),
            "latency_ms": model_latency(teacher)}
    yield Event("step_done", step=0, progress=0.0, message=f"Teacher: test accuracy {base['test_accuracy']:.3f}",
                payload={**base, "window": None, "teacher_cached": cached})
    clock.tick("evaluate")
    return task, teacher, teacher_cfg, base


def _similarity_phase(cfg: MergeConfig, task: Any, teacher: nn.Module, device: torch.device, clock: StageClock
                      ) -> Generator[Event, None, tuple[dict[int, torch.Tensor], pd.DataFrame]]:
    """FFN activations on the calibration rows and their layers x layers CKA (indexed by position)."""
    n_layers = len(encoder_layers(teacher))
    if cfg.window:
        check_window(teacher, parse_window(cfg.window))
    elif cfg.window_size > n_layers:
        raise ValueError(f"auto_k={cfg.window_size} is larger than the model's {n_layers} layers")
    yield Event("similarity", step=0, progress=0.0, message="Recording FFN activations on calibration tokens")
    calib = list(batches(take(task.encoded["train"], cfg.calibration_size), 32))
    acts = ffn_activations(teacher, calib, device=device)
    clock.tick("activations")
    similarity = cka_matrix(acts, list(range(n_layers)), max_tokens=cfg.max_cka_tokens, seed=cfg.seed)
    labelled = similarity.copy()
    labelled.index = labelled.columns = original_layer_indices(teacher)
    labelled.index.name = "layer"
    yield Event("similarity", step=0, progress=0.05, message=f"FFN similarity (linear CKA) of {n_layers} layers "
                f"on {acts[0].shape[0]} tokens", tables={"ffn_similarity": labelled.reset_index()})
    clock.tick("similarity")
    return acts, similarity


def _select(cfg: MergeConfig, teacher: nn.Module, acts: Mapping[int, torch.Tensor], similarity: pd.DataFrame,
            val: Batch, device: torch.device, clock: StageClock
            ) -> Generator[Event, None, tuple[tuple[int, ...], dict[str, Any]]]:
    """The window (fixed, or the best candidate) and the choice payload, with a progress event per scored
    candidate and the ``choice`` event carrying the table of candidates."""
    if cfg.window:
        rows = [score_window(teacher, parse_window(cfg.window), acts, similarity, "similarity")]
        table = rank_windows(rows, "similarity")
    else:
        windows = candidate_windows(teacher, cfg.window_size)
        rows = []
        for done, window in enumerate(windows, start=1):
            rows.append(score_window(teacher, window, acts, similarity, cfg.selection, val=val,
                                     reference=cfg.reference, device=device))
            score = rows[-1].get("val_accuracy", rows[-1]["mean_cka"])
            yield Event("select", step=1, progress=0.05 + 0.1 * done / len(windows),
                        message=f"Window {done}/{len(windows)} ({rows[-1]['window']}): {cfg.selection} {score:.3f}")
        table = rank_windows(rows, cfg.selection)
    window = chosen_window(table)
    clock.tick("selection")
    choice = {"window": list(window), "label": window_label(window), "size": len(window),
              "selection": "fixed" if cfg.window else cfg.selection, "scores": table.to_dict(orient="records")}
    yield Event("choice", step=1, progress=0.15, message=f"Merging the FFNs of layers {window_label(window)} "
                f"({choice['selection']})", payload=choice, tables={"windows": table})
    return window, choice


def _merge_phase(cfg: MergeConfig, teacher: nn.Module, window: tuple[int, ...], acts: Mapping[int, torch.Tensor],
                 base: dict[str, Any], task: Any, device: torch.device, clock: StageClock
                 ) -> Generator[Event, None, tuple[nn.Module, dict[str, Any]]]:
    """Align, merge and tie; the merged model and its scores without tuning."""
    yield Event("align", step=1, progress=0.15, message=f"Aligning {len(window) - 1} layer(s) to the reference")
    perms, alignment = align_window(teacher, window, acts, cfg.reference)
    clock.tick("align")
    yield Event("align", step=1, progress=0.17, message="Neurons aligned (Hungarian assignment on correlations)",
                payload={"alignment": alignment.to_dict(orient="records")}, tables={"alignment": alignment})
    merged = merge_aligned(teacher, window, perms, cfg.reference)
    clock.tick("merge")
    no_tuning = model_scores(merged, task.encoded["val"], task.encoded["test"], device)
    clock.tick("evaluate")
    yield Event("merge", step=1, progress=0.2, message=f"Merged: {base['params_total'] - no_tuning['params_total']:,}"
                f" parameters removed; validation accuracy without tuning {no_tuning['val_accuracy']:.3f}",
                payload={"no_tuning": no_tuning})
    return merged, no_tuning


def _map_progress(gen: Generator[Event, None, Any], lo: float, hi: float) -> Generator[Event, None, Any]:
    """Re-yield a sub-generator's events with their progress mapped into [lo, hi]; return its value."""
    from dataclasses import replace

    try:
        ev = next(gen)
        while True:
            p = ev.progress
            yield replace(ev, progress=None if p is None else lo + (hi - lo) * p)
            ev = next(gen)
    except StopIteration as stop:
        return stop.value


def _recovery(cfg: MergeConfig, task: Any, teacher: nn.Module, teacher_cfg: TrainConfig,
              device: torch.device) -> _Recovery:
    lr = _lr_default(task.model.key, cfg.lr, 1e-4)
    train_cfg = TrainConfig(epochs=cfg.epochs, lr=lr, batch_size=teacher_cfg.batch_size,
                            freeze_word_embeddings=teacher_cfg.freeze_word_embeddings, head_lr_multiplier=1.0,
                            seed=cfg.seed)
    kd = kd_cfg = train_kd = None
    if cfg.distill:
        kd_lr = 1e-3 if task.model.key == "tiny-bert" else cfg.kd.lr
        kd = DistillConfig(temperature=cfg.kd.temperature, alpha=cfg.kd.alpha, epochs=cfg.kd.epochs, lr=kd_lr)
        kd_cfg = TrainConfig(epochs=cfg.kd.epochs, lr=kd_lr, batch_size=train_cfg.batch_size,
                             freeze_word_embeddings=train_cfg.freeze_word_embeddings, head_lr_multiplier=1.0,
                             seed=cfg.seed)
        train_kd = attach_teacher_logits(task.encoded["train"], teacher, device=device)
    return _Recovery(task.encoded["train"], train_kd, train_cfg, kd_cfg, kd, task.encoded["val"],
                     task.encoded["test"], device)


def _shared_ok(model: nn.Module, window: Sequence[int]) -> bool:
    """Whether every layer of the window still holds the same FFN parameters (same storage)."""
    layers = encoder_layers(model)
    ptrs = {(ffn_linears(layers[p])[0].weight.data_ptr(), ffn_linears(layers[p])[1].weight.data_ptr())
            for p in window}
    return len(ptrs) == 1


def _summary(cfg: MergeConfig, base: dict[str, Any], choice: dict[str, Any], budget: dict[str, int],
             merged: dict[str, dict[str, Any]], final: dict[str, Any], pruning: dict[str, Any] | None,
             shared: bool, clock: StageClock) -> dict[str, Any]:
    from core.metrics import accuracy_to_size_ratio

    acc = ("test_accuracy", "test_macro_f1", "val_accuracy")
    summary: dict[str, Any] = {
        "teacher": base, "window": choice["window"], "window_label": choice["label"],
        "selection": choice["selection"], "reference": cfg.reference,
        "params": {"before": base["params_total"], "after": final["params_total"],
                   "removed": base["params_total"] - final["params_total"],
                   "removed_fraction": 1 - final["params_total"] / base["params_total"],
                   "ffn_params_per_layer": budget["ffn_params"], "unique_ffns_before": base["unique_ffns"],
                   "unique_ffns_after": final["unique_ffns"]},
        "merged": merged, "final": final, "ffn_still_shared": shared,
        "before_kd": {k: merged["finetuned"][k] for k in acc},
        "budget": budget, "pruning": pruning,
        "ratio": accuracy_to_size_ratio(accuracy=final["test_accuracy"], params=final["params_total"],
                                        teacher_accuracy=base["test_accuracy"], teacher_params=base["params_total"])
        if base["test_accuracy"] > 0 else None,
    }
    if "distilled" in merged:
        summary["after_kd"] = {k: merged["distilled"][k] for k in acc}
    summary["timings_s"] = clock.summary()
    return summary


# ----------------------------------------------------------------------------------------------- CLI
def build_parser(prog: str = "python -m core merge") -> argparse.ArgumentParser:
    d, m = DataConfig(), MergeConfig()
    p = argparse.ArgumentParser(prog=prog, description="Merge the FFN sublayers of a window of consecutive "
                                "layers (arXiv 2501.06126), fine-tune/distil, and compare with layer pruning "
                                "at the same parameter budget.")
    p.add_argument("--model", default=m.model, help=f"registry key or hub id (default: {m.model})")
    p.add_argument("--dataset", default=None, help="dataset key (default: the registry's default)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--layers", default=None, help="window of layer positions, e.g. 4-9 (inclusive)")
    where.add_argument("--auto", type=int, default=None, metavar="K",
                       help=f"choose a window of K consecutive layers (default: K={DEFAULT_WINDOW_SIZE})")
    p.add_argument("--selection", choices=SELECTIONS, default=m.selection,
                   help="how --auto scores windows (default: accuracy after merging, no tuning)")
    p.add_argument("--reference", choices=REFERENCES, default=m.reference)
    p.add_argument("--epochs", type=float, default=m.epochs, help="fine-tuning epochs after merging")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--distill", action=argparse.BooleanOptionalAction, default=m.distill)
    p.add_argument("--kd-epochs", type=float, default=m.kd.epochs)
    p.add_argument("--compare-pruning", action=argparse.BooleanOptionalAction, default=m.compare_pruning)
    p.add_argument("--calibration", type=int, default=m.calibration_size, help="calibration rows")
    p.add_argument("--train-cap", type=int, default=d.train_cap)
    p.add_argument("--val-cap", type=int, default=d.val_cap)
    p.add_argument("--test-cap", type=int, default=d.test_cap)
    p.add_argument("--max-length", type=int, default=d.max_length)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def config_from_args(args: argparse.Namespace) -> MergeConfig:
    if args.dataset is None:
        from core.data.datasets import DEFAULT_DATASET

        args.dataset = DEFAULT_DATASET
    data = DataConfig(train_cap=args.train_cap, val_cap=args.val_cap, test_cap=args.test_cap,
                      max_length=args.max_length, seed=args.seed)
    return MergeConfig(model=args.model, dataset=args.dataset, window=args.layers, auto_k=args.auto,
                       selection=args.selection, reference=args.reference, epochs=args.epochs, lr=args.lr,
                       distill=args.distill, kd=DistillConfig(epochs=args.kd_epochs), data=data,
                       calibration_size=args.calibration, compare_pruning=args.compare_pruning, seed=args.seed)


def summary_text(summary: Mapping[str, Any], comparison: pd.DataFrame | None) -> str:
    """The printed report of a finished run: window, parameters, the prune-vs-merge table, timings."""
    p = summary["params"]
    lines = [f"window {summary['window_label']} ({summary['selection']}); parameters {p['before']:,} -> "
             f"{p['after']:,} ({p['removed']:,} removed, {100 * p['removed_fraction']:.1f} %); unique FFNs "
             f"{p['unique_ffns_before']} -> {p['unique_ffns_after']}"]
    if summary.get("pruning"):
        pr = summary["pruning"]
        lines.append(f"matched pruning: {pr['depth']} layer(s) {pr['removed_layers']} by {pr['strategy']}")
    if comparison is not None and not comparison.empty:
        lines.append(comparison.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    lines.append("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in summary["timings_s"].items()))
    return "\n".join(lines)


def cli_main(argv: list[str] | None = None) -> int:
    """``python -m core merge``: one merging run recorded in the run store, with a progress bar."""
    import json

    from core.runs.runner import execute_with_bar
    from core.runs.store import RunStore

    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store = RunStore()
    run_id = store.create_run(kind="merge", model=cfg.model, dataset=cfg.dataset,
                              strategy=cfg.strategy,
                              config=cfg.to_dict())
    status = execute_with_bar(store, run_id, quiet=args.json)
    run = store.get_run(run_id) or {}
    summary = store.read_json(run_id, "summary.json") or {}
    comparison = store.read_table(run_id, "steps/1/comparison.csv")
    if args.json:
        print(json.dumps({"run_id": run_id, "status": status, "error": run.get("error"), "summary": summary},
                         indent=2, default=str))
    else:
        print(f"run {run_id}: {status}" + (f" ({run['error']})" if run.get("error") else ""))
        if summary:
            print(summary_text(summary, comparison))
    return 0 if status == "done" else 1


# --------------------------------------------------------------------------------------------- bench
def bench_main(argv: list[str] | None = None) -> int:
    """``python -m core bench merge``: merge 2/4/6 FFNs vs pruning at the matched budget on datasets; prints
    accuracy and parameters of both methods and the time of each stage (no run store)."""
    p = argparse.ArgumentParser(prog="python -m core bench merge")
    p.add_argument("--model", default="e5-small")
    p.add_argument("--datasets", nargs="+", default=["trec", "bbc-news"])
    p.add_argument("--sizes", nargs="+", type=int, default=[2, 4, 6])
    p.add_argument("--selection", choices=SELECTIONS, default="accuracy")
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--kd-epochs", type=float, default=2.0)
    p.add_argument("--train-cap", type=int, default=1000)
    p.add_argument("--val-cap", type=int, default=300)
    p.add_argument("--test-cap", type=int, default=500)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="CSV file for the result rows")
    args = p.parse_args(argv or [])
    torch.set_num_threads(args.threads)
    data = DataConfig(train_cap=args.train_cap, val_cap=args.val_cap, test_cap=args.test_cap)
    rows, timings = [], []
    for dataset in args.datasets:
        for size in args.sizes:
            cfg = MergeConfig(model=args.model, dataset=dataset, auto_k=size, selection=args.selection,
                              epochs=args.epochs, kd=DistillConfig(epochs=args.kd_epochs), data=data)
            summary = None
            for ev in merge_events(cfg, device=torch.device("cpu")):
                if ev.stage == "done":
                    summary = ev.payload
            assert summary is not None
            rows.extend(_bench_rows(dataset, size, summary))
            timings.append({"dataset": dataset, "k": size, **summary["timings_s"]})
            print(pd.DataFrame(rows).tail(2).to_string(index=False, header=len(rows) == 2), flush=True)
    table = pd.DataFrame(rows)
    print("\n" + table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\nstage timings (s)\n" + pd.DataFrame(timings).fillna(0).to_string(index=False))
    if args.out:
        table.to_csv(args.out, index=False)
    return 0


def _bench_rows(dataset: str, size: int, summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    base = summary["teacher"]
    out = []
    for method, scores, what in (("merge", summary["merged"], summary["window_label"]),
                                 ("prune", summary.get("pruning") or {}, None)):
        if not scores:
            continue
        if what is None:
            what = f"{scores['depth']} layers {scores['removed_layers']}"
        last = scores.get("distilled") or scores["finetuned"]
        out.append({"dataset": dataset, "k": size, "method": method, "what": what,
                    "params_removed": base["params_total"] - last["params_total"],
                    "removed_%": 100 * (1 - last["params_total"] / base["params_total"]),
                    "teacher_acc": base["test_accuracy"], "no_tune_acc": scores["no_tuning"]["test_accuracy"],
                    "ft_acc": scores["finetuned"]["test_accuracy"],
                    "kd_acc": scores["distilled"]["test_accuracy"] if "distilled" in scores else float("nan")})
    return out
