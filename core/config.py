"""Frozen, validated configuration objects.

Every configuration in ``core`` is a frozen dataclass validated on construction; a bad value raises
:class:`ConfigError` naming the field and the value, so a typo in a CLI flag or a UI widget produces a
message a person can act on. Configs are plain data: ``asdict`` gives JSON that is stored next to results
and ``from_dict`` reads it back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is out of range or of the wrong kind."""


def check_int(owner: str, name: str, value: Any, lo: int | None = None, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{owner}.{name} must be an integer, got {value!r}")
    if lo is not None and value < lo:
        raise ConfigError(f"{owner}.{name} must be >= {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(f"{owner}.{name} must be <= {hi}, got {value!r}")


def check_float(owner: str, name: str, value: Any, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{owner}.{name} must be a number, got {value!r}")
    if value != value:  # NaN
        raise ConfigError(f"{owner}.{name} must be a number, got {value!r}")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise ConfigError(f"{owner}.{name} must be {'>' if lo_open else '>='} {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(f"{owner}.{name} must be <= {hi}, got {value!r}")


def check_choice(owner: str, name: str, value: Any, choices: tuple[str, ...] | list[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{owner}.{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (possibly nested) config dataclass."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build ``cls`` from a dict, ignoring unknown keys (older stored configs stay readable).

    Nested config dataclasses (fields whose default is a dataclass instance or whose annotation names a
    dataclass) are rebuilt recursively, so ``from_dict(PruneConfig, to_dict(cfg)) == cfg``.
    """
    import typing

    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            continue
        value = data[f.name]
        nested = _dataclass_in(hints.get(f.name))
        if nested is not None and isinstance(value, Mapping):
            value = from_dict(nested, value)
        values[f.name] = value
    return cls(**values)


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass type named by a field annotation (``X`` or ``X | None``), if any."""
    import typing

    if dataclasses.is_dataclass(hint):
        return hint  # type: ignore[return-value]
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg  # type: ignore[return-value]
    return None


@dataclass(frozen=True)
class DataConfig:
    """How a dataset becomes splits and token batches.

    Splits are stratified and seeded; each split is capped (CPU-friendly defaults). ``max_length`` 32 is
    the paper's sequence length.
    """

    train_cap: int = 2000
    val_cap: int = 500
    test_cap: int = 1000
    max_length: int = 32
    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15

    def __post_init__(self) -> None:
        o = "DataConfig"
        check_int(o, "train_cap", self.train_cap, 8, 1_000_000)
        check_int(o, "val_cap", self.val_cap, 4, 1_000_000)
        check_int(o, "test_cap", self.test_cap, 4, 1_000_000)
        check_int(o, "max_length", self.max_length, 8, 512)
        check_int(o, "seed", self.seed, 0, 2**31 - 1)
        check_float(o, "val_fraction", self.val_fraction, 0.01, 0.5)
        check_float(o, "test_fraction", self.test_fraction, 0.01, 0.5)


#: the choices of :attr:`TrainConfig.precision` (kept equal to :data:`core.precision.PRECISIONS`, which imports
#: torch; config stays importable without it)
PRECISIONS = ("auto", "fp32", "bf16")

#: the choices of :attr:`TrainConfig.class_weights`
CLASS_WEIGHTS = ("none", "balanced", "sqrt")


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning hyperparameters (AdamW with linear warm-up and decay). ``group_by_length`` batches rows
    of similar length together (shuffled within and across mega-batches, as Hugging Face's
    ``group_by_length``), so a batch of short questions is not padded to its one long row: 1.8x fewer
    tokens per epoch on TREC, none on BBC News whose texts all fill the 32 tokens."""

    epochs: float = 3.0
    lr: float = 1e-4
    batch_size: int = 32
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    head_lr_multiplier: float = 10.0
    freeze_word_embeddings: bool = True
    group_by_length: bool = True
    seed: int = 0
    #: at least this many optimiser steps whatever ``epochs`` says (small datasets get enough optimisation)
    min_steps: int = 0
    #: cross-entropy class weights: "none", "balanced" (n / (k * count), as sklearn) or "sqrt" (its square root)
    class_weights: str = "none"
    #: "auto" (our default: bf16 mixed precision where the hardware has bf16 units, else fp32), "fp32" or
    #: "bf16"; see :mod:`core.precision`
    precision: str = "auto"

    def __post_init__(self) -> None:
        o = "TrainConfig"
        check_choice(o, "precision", self.precision, PRECISIONS)
        check_int(o, "min_steps", self.min_steps, 0, 1_000_000)
        check_choice(o, "class_weights", self.class_weights, CLASS_WEIGHTS)
        for name in ("freeze_word_embeddings", "group_by_length"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{o}.{name} must be true or false, got {getattr(self, name)!r}")
        check_float(o, "epochs", self.epochs, 0.0, 100.0)
        check_float(o, "lr", self.lr, 0.0, 1.0, lo_open=True)
        check_int(o, "batch_size", self.batch_size, 1, 4096)
        check_float(o, "weight_decay", self.weight_decay, 0.0, 1.0)
        check_float(o, "warmup_ratio", self.warmup_ratio, 0.0, 0.9)
        check_float(o, "head_lr_multiplier", self.head_lr_multiplier, 0.0, 1000.0, lo_open=True)
        check_int(o, "seed", self.seed, 0, 2**31 - 1)
