"""The state of a pruning tree walk (:mod:`core.pruning.tree`), as small records: what the whole walk shares,
fixed once at its entry (:class:`WalkSetup`: the device, the precision resolved for it, the recovery learning rates,
the ratio function), what every step reads once the teacher is known (:class:`WalkContext`), each member's path
(:class:`Member`), a depth (:class:`StepAt`), a state's measurements (:class:`Scan`), whom an event goes to
(:class:`Roster`), and a member's summary built from its step rows (:func:`prune_summary`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import pandas as pd
import torch

from core import metrics
from core.config import Resolved, TrainConfig, as_resolved
from core.data.batches import default_device
from core.models.registry import get_model_spec, recovery_lr
from core.precision import resolve
from core.pruning.config import PruneConfig
from core.runs import artifacts
from core.runs.events import Event, StageClock
from core.runs.results import PruneSummary, RankerMark, StepRow
from core.train import attach_teacher_logits, recovery_config

if TYPE_CHECKING:
    from core.data.batches import Batch
    from core.data.task import Task

#: ``accuracy_to_size_ratio(accuracy, params, teacher_accuracy, teacher_params)`` (:mod:`core.metrics`)
RatioFn: TypeAlias = Callable[[float, int, float, int], float]
#: what the walk yields: the run an event belongs to, and the event
Routed: TypeAlias = tuple[str, Event]



# ------------------------------------------------------------------------------------------ run-level records
@dataclass
class Member:
    """One strategy's run inside the tree: its config, its path so far and the step rows it has recorded."""

    run_id: str
    cfg: PruneConfig
    removed: list[int] = field(default_factory=list)
    history: list[StepRow] = field(default_factory=list)
    own_profiles: list[pd.DataFrame] = field(default_factory=list)
    stopped: bool = False


#: the states of one depth: each path of removed layers, its model and the members that took it
Frontier: TypeAlias = dict[tuple[int, ...], tuple[torch.nn.Module, list[Member]]]


@dataclass
class WalkStats:
    """What the tree shared: distinct states measured and fine-tunes run at each depth."""

    states_per_depth: dict[int, int] = field(default_factory=dict)
    finetunes_per_depth: dict[int, int] = field(default_factory=dict)
    distills: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"states_per_depth": dict(self.states_per_depth), "finetunes_per_depth": dict(self.finetunes_per_depth),
                "distills": self.distills}


@dataclass(frozen=True)
class WalkSetup:
    """What the whole walk shares, fixed once before it starts (:meth:`open`, the walk's entry): the group's
    config, the device, the precision resolved for that device and model (never ``auto``: refused here), the
    learning rates of its recoveries (:func:`core.models.registry.recovery_lr`) and the ratio it reports."""

    cfg: PruneConfig
    device: torch.device
    precision: Resolved
    ratio: RatioFn = metrics.accuracy_to_size_ratio

    def __post_init__(self) -> None:
        as_resolved(self.precision, "WalkSetup.precision")

    @classmethod
    def open(cls, cfg: PruneConfig, device: torch.device | None = None) -> WalkSetup:
        """The setup of a walk of ``cfg``'s group on ``device`` (default: the fastest here): where the device is
        chosen, the precision setting is resolved, once for the whole walk."""
        device = device or default_device()
        return cls(cfg, device, resolve(cfg.precision, device, get_model_spec(cfg.model).hidden_size))

    @property
    def step_lr(self) -> float:
        return recovery_lr(self.cfg.model, self.cfg.step_lr)

    @property
    def kd_lr(self) -> float:
        return recovery_lr(self.cfg.model, self.cfg.kd.lr)

    def recovery(self, teacher_cfg: TrainConfig, epochs: float, lr: float) -> TrainConfig:
        """A recovery's training config (:func:`core.train.recovery_config`)."""
        return recovery_config(teacher_cfg, epochs=epochs, lr=lr, seed=self.cfg.seed, precision=self.cfg.precision)


@dataclass
class WalkContext:
    """What every step reads, built once after the teacher phase: the setup, the task and the teacher, the
    teacher's scores (``base``, step 0) and logits (every later evaluation's KL), the calibration batches, the
    training config of a step's fine-tune and the clock."""

    setup: WalkSetup
    task: Task
    teacher: torch.nn.Module
    step_cfg: TrainConfig
    clock: StageClock
    weak_teacher: bool = False
    teacher_cached: bool = False
    base: dict[str, Any] = field(default_factory=dict)
    teacher_logits: dict[str, torch.Tensor] = field(default_factory=dict)
    n_original: int = 0
    calib: list[Batch] = field(default_factory=list)
    _train_kd: Batch | None = None

    @property
    def val(self) -> Batch:
        return self.task.encoded["val"]

    @property
    def test(self) -> Batch:
        return self.task.encoded["test"]

    @property
    def target(self) -> int:
        """How many steps the walk takes: the budget, leaving at least one layer."""
        return min(self.setup.cfg.layers_to_remove, self.n_original - 1)

    def measure(self, model: torch.nn.Module, prefix: str = ""
                ) -> tuple[dict[str, Any], dict[str, pd.DataFrame], dict[str, torch.Tensor]]:
        """Test and validation scores, size and latency of ``model`` (:func:`core.metrics.measure_with_outcomes`)
        in the walk's precision, keeping what each example did: the flat metrics, the per-example outcomes as
        ``Event.tables`` (``artifacts.outcomes(prefix + "test")`` and ``... + "val"``, with the KL to the teacher's
        logits once they are known) and the logits per split, all from one forward pass per split."""
        m = metrics.measure_with_outcomes(model, self.test, val=self.val, device=self.setup.device,
                                          precision=self.setup.precision, teacher_logits=self.teacher_logits)
        tables = {artifacts.outcomes(prefix + name): frame for name, frame in m.outcomes.items()}
        return m.metrics.to_dict(), tables, m.logits

    def ratio_of(self, scores: Mapping[str, Any]) -> float:
        """A model's accuracy-to-size ratio against the teacher's."""
        return self.setup.ratio(scores["test_accuracy"], scores["params_total"], self.base["test_accuracy"],
                                self.base["params_total"])

    def distill_data(self) -> Batch:
        """The training rows with the teacher's logits, computed on first use and kept for every member."""
        if self._train_kd is None:
            self._train_kd = attach_teacher_logits(self.task.encoded["train"], self.teacher,
                                                   device=self.setup.device, precision=self.setup.precision)
        return self._train_kd


@dataclass(frozen=True)
class StepAt:
    """One depth of the walk: the step number and how far the walk has come when it starts."""

    step: int
    target: int

    @property
    def start(self) -> float:
        return (self.step - 1) / self.target


@dataclass(frozen=True)
class Scan:
    """What was measured on one state: signals, the oracle (table and per-candidate outcomes) and its best."""

    signals: pd.DataFrame
    oracle: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    best: int

    def accuracy_of(self, layer: int) -> float:
        return float(self.oracle.loc[self.oracle["original_layer"] == layer, "accuracy"].iloc[0])


#: the layers chosen on one state, each with the members that chose it and their explanations
Choices: TypeAlias = dict[int, list[tuple[Member, dict[str, Any]]]]


class Roster:
    """The walk's members and whom an event goes to: a member dropped by the caller hears nothing more; one
    stopped by its accuracy floor still hears its own end (:meth:`kept`)."""

    def __init__(self, members: list[Member]) -> None:
        self.members = members
        self.dropped: set[str] = set()

    def live(self, members: Sequence[Member]) -> list[Member]:
        return [m for m in members if m.run_id not in self.dropped and not m.stopped]

    def to_live(self, members: Sequence[Member], ev: Event) -> Iterator[Routed]:
        """``ev`` for every member still walking."""
        for m in self.live(members):
            yield m.run_id, ev

    def to_kept(self, members: Sequence[Member], ev: Event) -> Iterator[Routed]:
        """``ev`` for every member not dropped (members stopped by the accuracy floor still finish)."""
        for m in members:
            if m.run_id not in self.dropped:
                yield m.run_id, ev


def ranker_mark(info: Any) -> RankerMark | None:
    """A fusion ranker's agreement with the oracle, from its choice's explanation (None for other strategies)."""
    quality = info.get("quality") if isinstance(info, dict) else None
    return RankerMark(quality.get("spearman"), quality.get("top1_hit")) if quality else None


def prune_summary(m: Member, base: Mapping[str, Any], after: Mapping[str, Any] | None, ratio: RatioFn
                  ) -> PruneSummary:
    """The figures of a member's summary, from its step rows (step 0: the teacher) and its scores after
    distillation (None: none ran); the walk adds the timings, precision and what was shared."""
    def vs_teacher(scores: Mapping[str, Any]) -> float:
        return ratio(scores["test_accuracy"], scores["params_total"], base["test_accuracy"], base["params_total"])

    pruned = m.history[1:]
    best = max(pruned, key=lambda h: h.metrics["test_accuracy"]) if pruned else None
    last = m.history[-1].metrics
    final = after or last
    return PruneSummary(
        teacher=dict(base), removed_order=list(m.removed), final_layers=m.history[0].n_layers - len(m.removed),
        max_accuracy_over_depth={"accuracy": best.metrics["test_accuracy"], "n_layers": best.n_layers}
        if best else None,
        before_kd=_headline(last) if pruned else None, after_kd=_headline(after) if after is not None else None,
        after_kd_metrics=dict(after or {}), ratio_after_kd=vs_teacher(after) if after is not None else None,
        ratio=vs_teacher(final) if m.removed else None)


def _headline(scores: Mapping[str, Any]) -> dict[str, Any]:
    """The three scores a summary repeats per stage."""
    return {k: scores[k] for k in ("test_accuracy", "test_macro_f1", "val_accuracy")}
