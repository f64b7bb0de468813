"""What a pruning run is: the strategies it can use and its frozen, validated configuration."""

from __future__ import annotations

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
from core.signals import BASELINES, SIGNAL_KEYS
from core.train import DistillConfig

FUSION = ("lr_fusion", "rf_fusion")


def strategy_keys() -> tuple[str, ...]:
    return tuple(SIGNAL_KEYS) + tuple(BASELINES) + ("oracle",) + FUSION


@dataclass(frozen=True)
class PruneConfig:
    """One pruning run. Defaults are the CPU-sized version of the paper's protocol."""

    model: str = "e5-small"
    dataset: str = "trec"
    strategy: str = "rf_fusion"
    layers_to_remove: int = 6
    accuracy_floor: float = 0.0
    step_epochs: float = 1.0
    step_lr: float = 5e-5
    calibration_size: int = 256
    distill: bool = True
    kd: DistillConfig = field(default_factory=DistillConfig)
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TrainConfig | None = None
    depth_feature: bool = False
    normalise: str = "rank"
    seed: int = 0
    #: "prune anyway": go on when the teacher does not beat the majority-class baseline (the run is flagged
    #: ``weak_teacher``); by default such a run stops before pruning
    allow_weak_teacher: bool = False
    #: "auto" (our default: bf16 mixed precision where the hardware has bf16 units), "fp32" or "bf16": the
    #: teacher, every fine-tune, distillation and every evaluation run in it (:mod:`core.precision`)
    precision: str = "auto"

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "layers_to_remove": Bound("int", 1, 47), "accuracy_floor": Bound("float", 0.0, 1.0),
        "step_epochs": Bound("float", 0.0, 50.0), "step_lr": Bound("float", 0.0, 1.0, lo_open=True),
        "calibration_size": Bound("int", 8, 100_000), "seed": SEED}

    def __post_init__(self) -> None:
        o = "PruneConfig"
        check_choice(o, "precision", self.precision, PRECISIONS)
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"{o}.model must be a registry key or hub id, got {self.model!r}")
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ConfigError(f"{o}.dataset must be a dataset key, got {self.dataset!r}")
        check_run_precision(o, self.precision, self.model, get_model_spec(self.model).hidden_size)
        check_choice(o, "strategy", self.strategy, strategy_keys())
        check_bounds(self)
        check_choice(o, "normalise", self.normalise, ("rank", "zscore"))
        if not isinstance(self.allow_weak_teacher, bool):
            raise ConfigError(f"{o}.allow_weak_teacher must be true or false, got {self.allow_weak_teacher!r}")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PruneConfig:
        return from_dict(cls, d)
