"""Layer removal: delete encoder layers from a BERT-family classifier and keep a valid Hugging Face model.

transformers 5 has no ``head_mask`` or ``prune_heads``, so a layer is dropped the direct way: it is deleted
from ``model.<base>.encoder.layer``, every kept layer's ``layer_idx`` (the layer itself and any submodule
carrying one, e.g. ``attention.self``) is renumbered 0..n-1, ``config.num_hidden_layers`` is set to n, and
the original index of each kept layer is recorded as ``config.kept_layers``. That list is a plain config
attribute, so it survives ``save_pretrained`` / ``from_pretrained``, and a model pruned in several steps
always knows which of the unpruned layers it still has (``core.models.registry.original_layer_indices``).

Every function returns a new model; the input is never modified.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from torch import nn

from core.models.registry import (
    base_model,
    config_of,
    encoder_layers,
    load_pretrained,
    original_layer_indices,
    pretrained,
)
from core.paths import atomic_dir

IndexKind = Literal["original", "position"]


@contextlib.contextmanager
def quiet_hf() -> Iterator[None]:
    """Silence transformers' per-shard progress bars while saving/loading (restored afterwards)."""
    from transformers.utils import logging as hf_logging  # noqa: PLC0415 deferred: cost (transformers)

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _positions_to_remove(model: nn.Module, layers: Iterable[int], by: IndexKind) -> list[int]:
    """Validate ``layers`` and turn them into sorted positions in the current ModuleList."""
    if by not in ("original", "position"):
        raise ValueError(f"by must be 'original' or 'position', got {by!r}")
    requested = [int(i) for i in layers]
    if not requested:
        raise ValueError("No layers given to remove.")
    duplicates = sorted({i for i in requested if requested.count(i) > 1})
    if duplicates:
        raise ValueError(f"Duplicate layer indices {duplicates}: each layer can be removed once.")
    kept = original_layer_indices(model)
    if by == "original":
        unknown = sorted(set(requested) - set(kept))
        if unknown:
            raise ValueError(f"Original layer(s) {unknown} are not in the model; it has original layers {kept}.")
        positions = [kept.index(i) for i in requested]
    else:
        unknown = sorted(i for i in requested if not 0 <= i < len(kept))
        if unknown:
            raise ValueError(f"Layer position(s) {unknown} out of range: the model has {len(kept)} layers "
                             f"(positions 0..{len(kept) - 1}).")
        positions = requested
    if len(positions) >= len(kept):
        raise ValueError(f"Cannot remove all {len(kept)} layers: at least one encoder layer must remain.")
    return sorted(positions)


def _renumber(layer: nn.Module, index: int) -> None:
    """Set ``layer_idx`` on the layer and every submodule that carries one (self-attention, cross-attention)."""
    for module in layer.modules():
        if hasattr(module, "layer_idx"):
            # nn.Module types its attributes as tensors or submodules; layer_idx is an int attribute
            module.layer_idx = index  # type: ignore[assignment]


def remove_layers(model: nn.Module, layers: Iterable[int], *, by: IndexKind = "original") -> nn.Module:
    """A deep copy of ``model`` without the given encoder layers.

    ``by="original"``: ``layers`` are original (unpruned) indices, as in ``config.kept_layers``;
    ``by="position"``: positions in the current ModuleList. Raises ``ValueError`` for unknown or duplicate
    indices and for removing every layer.
    """
    drop = set(_positions_to_remove(model, layers, by))
    kept_original = original_layer_indices(model)
    new = copy.deepcopy(model)
    modules = encoder_layers(new)
    keep_positions = [p for p in range(len(modules)) if p not in drop]
    kept_modules = [modules[p] for p in keep_positions]
    for new_index, layer in enumerate(kept_modules):
        _renumber(layer, new_index)
    base_model(new).get_submodule("encoder").layer = nn.ModuleList(kept_modules)
    config = config_of(new)
    config.num_hidden_layers = len(kept_modules)
    config.kept_layers = [kept_original[p] for p in keep_positions]
    return new


def keep_layers(model: nn.Module, kept_original: Iterable[int]) -> nn.Module:
    """A deep copy of ``model`` keeping exactly the given original layers, in the model's order (all others
    removed)."""
    keep = [int(i) for i in kept_original]
    current = original_layer_indices(model)
    if not keep:
        raise ValueError("keep_layers needs at least one layer to keep.")
    duplicates = sorted({i for i in keep if keep.count(i) > 1})
    if duplicates:
        raise ValueError(f"Duplicate layer indices {duplicates} in the layers to keep.")
    unknown = sorted(set(keep) - set(current))
    if unknown:
        raise ValueError(f"Original layer(s) {unknown} are not in the model; it has original layers {current}.")
    drop = [i for i in current if i not in set(keep)]
    if not drop:
        return copy.deepcopy(model)
    return remove_layers(model, drop, by="original")


def save_model(model: nn.Module, tokenizer: Any, folder: str | Path) -> Path:
    """Save ``model`` (safetensors) and ``tokenizer`` (may be ``None``) as a plain HF folder, atomically.

    Everything is written to a temporary sibling folder that is renamed into place only when complete
    (:func:`core.paths.atomic_dir`), so a reader never sees a half-written model; an existing folder is
    replaced.
    """
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        with quiet_hf():
            pretrained(model).save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return folder


def load_model(folder: str | Path) -> nn.Module:
    """Load a folder written by :func:`save_model` (eager attention, safetensors only, no remote code).

    The tokenizer, when saved, loads with ``AutoTokenizer.from_pretrained(folder)``.
    """
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder} is not a saved model folder (no config.json).")
    with quiet_hf():
        model = load_pretrained(folder)
    original_layer_indices(model)  # raises if kept_layers and the layer count disagree
    return model.eval()
