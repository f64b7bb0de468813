"""Frozen, validated configuration objects.

Every configuration in ``core`` is a frozen dataclass validated on construction; a bad value raises
:class:`ConfigError` naming the field and the value, so a typo in a CLI flag or a UI widget produces a
message a person can act on. Configs are plain data: ``asdict`` gives JSON that is stored next to results
and ``from_dict`` reads it back.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeAlias, TypeVar

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


@dataclass(frozen=True)
class Bound:
    """The range of one numeric configuration field, declared once in its class's ``BOUNDS`` mapping (as
    scikit-learn declares ``_parameter_constraints``): validation (:func:`check_bounds`) and the UI's number
    widgets (``ui.bounds``) both read it, so no page retypes a range.

    ``kind`` is "int" or "float"; ``lo``/``hi`` are inclusive (``lo_open``: ``lo`` itself is excluded);
    ``allow`` lists other accepted values that are not numbers (``None`` for "not set", ``"auto"``)."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    allow: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        check_choice("Bound", "kind", self.kind, ("int", "float"))

    def allows(self, value: Any) -> bool:
        """Whether ``value`` is one of the non-numeric values the field accepts."""
        return any(value is a or (type(value) is type(a) and value == a) for a in self.allow)

    def check(self, owner: str, name: str, value: Any) -> None:
        """Raise :class:`ConfigError` naming ``owner.name`` and the value when ``value`` is out of bounds."""
        if self.allows(value):
            return
        words = [repr(a) for a in self.allow if a is not None]
        number = (int,) if self.kind == "int" else (int, float)
        if words and (isinstance(value, bool) or not isinstance(value, number)):
            raise ConfigError(f"{owner}.{name} must be {'an integer' if self.kind == 'int' else 'a number'} or "
                              f"{' or '.join(words)}, got {value!r}")
        if self.kind == "int":
            check_int(owner, name, value, None if self.lo is None else int(self.lo),
                      None if self.hi is None else int(self.hi))
        else:
            check_float(owner, name, value, self.lo, self.hi, lo_open=self.lo_open)


def check_bounds(cfg: Any, names: tuple[str, ...] | None = None) -> None:
    """Check each field of ``cfg`` that its class's ``BOUNDS`` declares (or only ``names``)."""
    bounds: Mapping[str, Bound] = getattr(type(cfg), "BOUNDS", {})
    for name in names if names is not None else tuple(bounds):
        bounds[name].check(type(cfg).__name__, name, getattr(cfg, name))


#: the seed range every config accepts
SEED = Bound("int", 0, 2**31 - 1)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (possibly nested) config dataclass."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build ``cls`` from a dict, ignoring unknown keys (older stored configs stay readable).

    Nested config dataclasses (fields whose default is a dataclass instance or whose annotation names a
    dataclass) are rebuilt recursively, so ``from_dict(PruneConfig, to_dict(cfg)) == cfg``.
    """
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
    if dataclasses.is_dataclass(hint):
        return hint  # type: ignore[return-value]
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg  # type: ignore[return-value]
    return None


#: ``DataConfig.max_length`` chosen from the data (:func:`core.data.truncation.choose_length`)
AUTO_LENGTH = "auto"
#: the choices of :attr:`DataConfig.truncation`
TRUNCATIONS = ("head", "head+tail")


@dataclass(frozen=True)
class DataConfig:
    """How a dataset becomes splits and token batches.

    Splits are stratified and seeded; each split is capped (CPU-friendly defaults). ``max_length`` 32 is
    the paper's sequence length (the embedded datasets' measured default); ``"auto"`` chooses it from the data:
    the :data:`core.data.truncation.AUTO_PERCENTILE` th percentile of the training texts' token counts, at most
    ``max_auto_length`` (a cost budget the user can raise). ``truncation`` says what of a longer text is kept:
    ``head`` (its first tokens) or ``head+tail`` (its first and last tokens, Sun et al. 2019); see
    :mod:`core.data.truncation`.
    """

    train_cap: int = 2000
    #: our default, chosen by the oracle reliability study (README, "How much of the oracle is noise"): at 1,000
    #: validation rows the oracle's pick loses 0.9 accuracy points on rows it did not see, at 500 rows 1.3-1.6
    val_cap: int = 1000
    test_cap: int = 1000
    max_length: int | str = 32
    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    #: the longest length ``max_length="auto"`` may choose (tokens; compute per step grows about linearly with it)
    max_auto_length: int = 128
    #: what of a text longer than ``max_length`` is kept: "head" or "head+tail"
    truncation: str = "head"

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "train_cap": Bound("int", 8, 1_000_000), "val_cap": Bound("int", 4, 1_000_000),
        "test_cap": Bound("int", 4, 1_000_000), "max_length": Bound("int", 8, 512, allow=(AUTO_LENGTH,)),
        "max_auto_length": Bound("int", 8, 512), "seed": SEED, "val_fraction": Bound("float", 0.01, 0.5),
        "test_fraction": Bound("float", 0.01, 0.5)}

    def __post_init__(self) -> None:
        check_bounds(self)
        check_choice("DataConfig", "truncation", self.truncation, TRUNCATIONS)


#: the choices of :attr:`TrainConfig.precision` (kept equal to :data:`core.precision.PRECISIONS`, which imports
#: torch; config stays importable without it)
PRECISIONS = ("auto", "fp32", "bf16")

#: A precision *resolved* for a device (:func:`core.precision.resolve`): what actually runs and what every result
#: records, never ``auto`` (``fp16`` only on a CUDA device without bf16). A setting (``auto``/``fp32``/``bf16``, the
#: user's choice kept in the configs) is resolved once where a run starts, where its device is chosen; everything
#: below takes this type, so an unresolved ``auto`` is a type error there (and :func:`as_resolved` refuses it at
#: run time). Here, not in :mod:`core.precision`, so that records and pages name it without importing torch.
Resolved: TypeAlias = Literal["fp32", "bf16", "fp16"]
RESOLVED: tuple[Resolved, ...] = ("fp32", "bf16", "fp16")


def as_resolved(value: object, owner: str = "precision") -> Resolved:
    """``value`` as a :data:`Resolved` precision; ``auto`` (a setting, not yet resolved) or anything else is
    refused with the reason. For a precision read back from a file, and where a run's context is built."""
    for choice in RESOLVED:
        if value == choice:
            return choice
    if value == "auto":
        raise ValueError(f"{owner} must be resolved (fp32, bf16 or fp16) before it gets here, got 'auto': resolve "
                         "the setting once where the run starts (core.precision.resolve)")
    raise ValueError(f"{owner} must be one of {', '.join(RESOLVED)}; got {value!r}")

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

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "epochs": Bound("float", 0.0, 100.0), "lr": Bound("float", 0.0, 1.0, lo_open=True),
        "batch_size": Bound("int", 1, 4096), "weight_decay": Bound("float", 0.0, 1.0),
        "warmup_ratio": Bound("float", 0.0, 0.9), "head_lr_multiplier": Bound("float", 0.0, 1000.0, lo_open=True),
        "seed": SEED, "min_steps": Bound("int", 0, 1_000_000)}

    def __post_init__(self) -> None:
        o = "TrainConfig"
        check_choice(o, "precision", self.precision, PRECISIONS)
        check_choice(o, "class_weights", self.class_weights, CLASS_WEIGHTS)
        for name in ("freeze_word_embeddings", "group_by_length"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{o}.{name} must be true or false, got {getattr(self, name)!r}")
        check_bounds(self)
