"""Which layers to merge, and what pruning budget matches it.

* **Similarity** (:func:`cka_matrix`, :func:`ffn_similarity`): layers x layers linear CKA of the FFN
  activations, the mergeability heatmap.
* **Window** (:func:`score_windows`): ``k`` consecutive layers. Candidates are scored either by validation
  accuracy after merging without tuning (``selection="accuracy"``, *our default*: it measures the objective
  itself, as the pruning oracle does, and costs one deep copy, ``k - 1`` assignments and one validation pass per
  candidate) or by the mean linear CKA between the window's FFN activations (``selection="similarity"``: no
  evaluation at all, a cheap proxy for large models).
* **Budget** (:func:`matched_pruning_depth`): merging ``k`` FFNs removes ``k - 1`` FFNs' worth of parameters;
  the pruning side removes the number of whole layers whose parameter count is closest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from core.config import Resolved, check_choice
from core.data.batches import Batch
from core.merging.config import SELECTIONS, window_label
from core.merging.ffn import ffn_activations, ffn_linears, merge_ffns, merged_windows
from core.models.registry import encoder_layers, original_layer_indices, per_layer_parameters
from core.signals.functions import linear_cka
from core.train import evaluate


# ----------------------------------------------------------------------------------------- similarity
def cka_matrix(activations: Mapping[int, torch.Tensor], labels: Sequence[int] | None = None,
               max_tokens: int = 2048, seed: int = 0) -> pd.DataFrame:
    """Layers x layers linear CKA of FFN activations, on at most ``max_tokens`` seeded random tokens (the
    same tokens for every layer), by :func:`core.signals.functions.linear_cka` on centred Gram matrices
    (tokens x tokens), cheaper than features x features for the wide FFNs; ``labels`` name the rows/columns
    (default: the activation keys)."""
    keys = list(activations)
    n = activations[keys[0]].shape[0]
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_tokens] if n > max_tokens \
        else torch.arange(n)
    grams = []
    for k in keys:
        x = activations[k][idx].float()
        x = x - x.mean(dim=0, keepdim=True)
        grams.append((x @ x.T).double().numpy())
    m = len(keys)
    values = np.ones((m, m))
    for a in range(m):
        for b in range(a + 1, m):
            values[a, b] = values[b, a] = linear_cka(grams[a], grams[b])
    names = list(labels) if labels is not None else keys
    return pd.DataFrame(values, index=pd.Index(names, name="layer"), columns=names)


def ffn_similarity(model: nn.Module, data: Iterable[Batch], max_tokens: int = 2048, seed: int = 0,
                   device: torch.device | None = None) -> pd.DataFrame:
    """Layers x layers linear CKA between the FFN activations of every layer (labelled by original layer
    index): the mergeability heatmap."""
    acts = ffn_activations(model, data, device=device)
    return cka_matrix(acts, original_layer_indices(model), max_tokens=max_tokens, seed=seed)


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


@dataclass(frozen=True)
class WindowScoring:
    """How candidate windows are scored: the FFN activations and their CKA matrix (by position), the selection
    (``similarity``: mean CKA; ``accuracy``: also the validation scores of the model merged on the window
    without tuning, which needs ``val``), the reference layer, and where and in which (resolved) precision the
    merged models are evaluated."""

    activations: Mapping[int, torch.Tensor]
    similarity: pd.DataFrame
    selection: str
    precision: Resolved
    val: Batch | None = None
    reference: str = "first"
    device: torch.device | None = None

    def __post_init__(self) -> None:
        check_choice("WindowScoring", "selection", self.selection, SELECTIONS)
        if self.selection == "accuracy" and self.val is None:
            raise ValueError("selection='accuracy' needs validation data")


def score_window(model: nn.Module, window: Sequence[int], how: WindowScoring) -> dict[str, Any]:
    """One candidate's row: its layers, mean CKA and, for ``selection="accuracy"``, the validation scores of
    the model merged on it without tuning."""
    original = original_layer_indices(model)
    row: dict[str, Any] = {"window": window_label([original[p] for p in window]), "start": window[0],
                           "end": window[-1], "mean_cka": mean_window_cka(how.similarity, window)}
    if how.selection == "accuracy" and how.val is not None:
        merged, _ = merge_ffns(model, window, how.activations, how.reference)
        scores = evaluate(merged, how.val, device=how.device, precision=how.precision)
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


def score_windows(model: nn.Module, size: int, how: WindowScoring) -> pd.DataFrame:
    """Every free window of ``size`` layers scored (:func:`score_window`) and ranked (:func:`rank_windows`)."""
    return rank_windows([score_window(model, w, how) for w in candidate_windows(model, size)], how.selection)


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
