"""The merging run's configuration (:class:`MergeConfig`), window notation ("4-6") and the method's constants."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from core.config import (
    PRECISIONS,
    SEED,
    Bound,
    ConfigError,
    DataConfig,
    TrainConfig,
    check_bounds,
    check_choice,
    from_dict,
    to_dict,
)
from core.models.registry import get_model_spec
from core.precision import check_run_precision
from core.train import DistillConfig

#: how a window is chosen: validation accuracy after merging without tuning (our default), or mean linear CKA
SELECTIONS = ("accuracy", "similarity")
#: the layer of a window the others are aligned to (the paper's default: the first)
REFERENCES = ("first", "middle", "last")
#: window size when neither ``window`` nor ``auto_k`` is given (our default)
DEFAULT_WINDOW_SIZE = 4
#: the config attribute that records merged windows (lists of original layer indices)
WINDOWS_ATTR = "merged_ffn_windows"
#: how the matched pruning side picks its layers
PRUNING_STRATEGY = "oracle (greedy: remove the cheapest layer on validation, re-measure; no tuning between)"


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
    """``(4, 5, 6)`` -> ``"4-6"``."""
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
    #: "merge anyway": go on when the teacher does not beat the majority-class baseline (flagged ``weak_teacher``)
    allow_weak_teacher: bool = False
    #: "auto" (our default: bf16 mixed precision where the hardware has bf16 units), "fp32" or "bf16"
    #: (:mod:`core.precision`)
    precision: str = "auto"

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "auto_k": Bound("int", 2, 48, allow=(None,)), "epochs": Bound("float", 0.0, 50.0),
        "lr": Bound("float", 0.0, 1.0, lo_open=True, allow=(None,)), "calibration_size": Bound("int", 8, 100_000),
        "max_cka_tokens": Bound("int", 16, 100_000), "seed": SEED}

    def __post_init__(self) -> None:
        o = "MergeConfig"
        check_choice(o, "precision", self.precision, PRECISIONS)
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"{o}.model must be a registry key or hub id, got {self.model!r}")
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ConfigError(f"{o}.dataset must be a dataset key, got {self.dataset!r}")
        check_run_precision(o, self.precision, self.model, get_model_spec(self.model).hidden_size)
        if self.window is not None:
            parse_window(self.window, o)
            if self.auto_k is not None:
                raise ConfigError(f"{o}: give window or auto_k, not both (window={self.window!r}, "
                                  f"auto_k={self.auto_k!r})")
        check_choice(o, "selection", self.selection, SELECTIONS)
        check_choice(o, "reference", self.reference, REFERENCES)
        for name in ("distill", "compare_pruning", "allow_weak_teacher"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{o}.{name} must be true or false, got {getattr(self, name)!r}")
        check_bounds(self)

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
    def from_dict(cls, d: Mapping[str, Any]) -> MergeConfig:
        return from_dict(cls, d)
