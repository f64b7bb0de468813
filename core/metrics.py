"""Metrics of every model a run produces, and the run-level summaries built from them.

Per model, one function (:func:`measure_model`) and one record (:class:`ModelMetrics`) for every kind of run
(pruning steps, merged models, the matched pruned models, teachers): test and validation accuracy, macro-F1
and loss (``core.train.evaluate``), total and encoder parameters (unique, tied weights once:
``core.models.registry.count_parameters``), the size of its safetensors file, the measured CPU latency of one
fixed-shape batch (median of repeats after warm-up) and its depth. The record's field names are the keys
stored runs carry (``test_accuracy``, ``val_accuracy``, ``params_total``, ``latency_ms``, ...).

Per run: :func:`max_accuracy_over_depth` (the paper's "maximum accuracy over pruning depth") and
:func:`accuracy_to_size_ratio` (ours: the paper's formula is not public; see its docstring).
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_model as save_safetensors
from torch import nn

from core.config import check_float, check_int
from core.data.batches import Batch
from core.models.registry import config_of, count_parameters, encoder_layers, original_layer_indices
from core.precision import Resolved
from core.train import per_example, predict_logits, scores_from_logits


# ------------------------------------------------------------------------------------------ configs
@dataclass(frozen=True)
class LatencyConfig:
    """How CPU latency is measured: one batch of ``batch_size`` x ``seq_length`` tokens (no padding),
    ``warmup`` untimed runs, then the median of ``repeats`` timed runs."""

    batch_size: int = 32
    seq_length: int = 32
    repeats: int = 10
    warmup: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        o = "LatencyConfig"
        check_int(o, "batch_size", self.batch_size, 1, 4096)
        check_int(o, "seq_length", self.seq_length, 1, 512)
        check_int(o, "repeats", self.repeats, 1, 1000)
        check_int(o, "warmup", self.warmup, 0, 100)
        check_int(o, "seed", self.seed, 0, 2**31 - 1)


@dataclass(frozen=True)
class ModelMetrics:
    """The measured numbers of one model (a teacher, a pruned step, a merged or distilled model). Validation
    scores are ``None`` when no validation split was given; size and latency are ``None`` when not measured
    (``measure_model(..., latency=None)``)."""

    num_layers: int
    kept_layers: tuple[int, ...]
    test_accuracy: float
    test_macro_f1: float
    test_loss: float
    params_total: int
    params_encoder: int
    val_accuracy: float | None = None
    val_macro_f1: float | None = None
    val_loss: float | None = None
    safetensors_bytes: int | None = None
    latency_ms: float | None = None
    latency_batch_size: int | None = None
    latency_seq_length: int | None = None

    def __post_init__(self) -> None:
        o = "ModelMetrics"
        check_int(o, "num_layers", self.num_layers, 1)
        if len(self.kept_layers) != self.num_layers:
            raise ValueError(f"ModelMetrics.kept_layers has {len(self.kept_layers)} entries for "
                             f"{self.num_layers} layers: {self.kept_layers!r}")
        splits = ("test", "val") if self.val_accuracy is not None else ("test",)
        for split in splits:
            check_float(o, f"{split}_accuracy", getattr(self, f"{split}_accuracy"), 0.0, 1.0)
            check_float(o, f"{split}_macro_f1", getattr(self, f"{split}_macro_f1"), 0.0, 1.0)
            check_float(o, f"{split}_loss", getattr(self, f"{split}_loss"), 0.0)
        check_int(o, "params_total", self.params_total, 1)
        check_int(o, "params_encoder", self.params_encoder, 0, self.params_total)
        if self.safetensors_bytes is not None:
            check_int(o, "safetensors_bytes", self.safetensors_bytes, 1)
        if self.latency_ms is not None:
            check_float(o, "latency_ms", self.latency_ms, 0.0, lo_open=True)
            check_int(o, "latency_batch_size", self.latency_batch_size, 1)
            check_int(o, "latency_seq_length", self.latency_seq_length, 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: plain ints, floats and a list of kept layers; what was not measured is left out."""
        out = {k: v for k, v in asdict(self).items() if v is not None}
        out["kept_layers"] = list(self.kept_layers)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelMetrics:
        """The record from a stored dict (extra keys, e.g. a step's ``removed``, are ignored)."""
        names = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in names}
        values["kept_layers"] = tuple(int(i) for i in values.get("kept_layers", ()))
        return cls(**values)


# --------------------------------------------------------------------------------- per-model pieces
def safetensors_bytes(model: nn.Module) -> int:
    """Size in bytes of the model's weights as one safetensors file, header included, every tied or shared
    tensor stored once. Written to a temporary file by ``safetensors.torch.save_model`` (which drops
    duplicate names itself, so models with weights shared by hand, e.g. merged feed-forward sublayers,
    work too) and measured. For an untied model this equals the ``model.safetensors`` of
    ``save_pretrained``."""
    with tempfile.TemporaryDirectory(prefix="st-size-") as tmp:
        path = Path(tmp) / "model.safetensors"
        save_safetensors(model, str(path), metadata={"format": "pt"})
        return path.stat().st_size


def latency_batch(model: nn.Module, cfg: LatencyConfig) -> dict[str, torch.Tensor]:
    """A fixed, seeded batch of random token ids (no padding): latency does not depend on the words."""
    vocab = int(config_of(model).vocab_size)
    gen = torch.Generator().manual_seed(cfg.seed)
    ids = torch.randint(min(5, vocab - 1), vocab, (cfg.batch_size, cfg.seq_length), generator=gen)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def median_ms(fn: Callable[[], object], repeats: int, warmup: int) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` runs after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return float(statistics.median(times))


def _on_cpu(model: nn.Module) -> nn.Module:
    """The model itself when it already lives on the CPU, else a CPU copy (the caller's stays put)."""
    if all(p.device.type == "cpu" for p in model.parameters()):
        return model
    return copy.deepcopy(model).to("cpu")


def measure_latency(model: nn.Module, cfg: LatencyConfig | None = None) -> float:
    """Median CPU latency in ms of one forward pass over a fixed ``cfg.batch_size`` x ``cfg.seq_length``
    batch (eval mode, no gradients). Uses the current ``torch.get_num_threads()``."""
    cfg = cfg or LatencyConfig()
    cpu_model = _on_cpu(model)
    was_training = cpu_model.training
    cpu_model.eval()
    batch = latency_batch(cpu_model, cfg)
    try:
        with torch.inference_mode():
            return median_ms(lambda: cpu_model(**batch), cfg.repeats, cfg.warmup)
    finally:
        cpu_model.train(was_training)


#: the latency measurement :func:`measure_model` makes unless told otherwise
DEFAULT_LATENCY = LatencyConfig()


def measure_model(model: nn.Module, test: Batch, *, val: Batch | None = None, batch_size: int = 128,
                  device: torch.device | None = None, latency: LatencyConfig | None = DEFAULT_LATENCY,
                  precision: Resolved) -> ModelMetrics:
    """Everything measured about one model: scores on ``test`` (and on ``val`` when given), parameters, the
    safetensors size and the CPU latency under ``latency``. ``latency=None`` skips the size and the latency
    (scores and parameter counts only: what a model that is tuned further needs). Scores are computed in
    ``precision`` (:mod:`core.precision`); the latency is always the fp32 model's."""
    return measure_with_outcomes(model, test, val=val, batch_size=batch_size, device=device, latency=latency,
                                 precision=precision).metrics


@dataclass(frozen=True)
class Measured:
    """:func:`measure_with_outcomes`'s result: the model's :class:`ModelMetrics`, its per-example outcomes
    (``"test"``, and ``"val"`` when measured: :func:`core.train.per_example` frames) and the logits they came
    from (fp32, CPU)."""

    metrics: ModelMetrics
    outcomes: dict[str, Any]
    logits: dict[str, torch.Tensor]


def measure_with_outcomes(model: nn.Module, test: Batch, *, val: Batch | None = None, batch_size: int = 128,
                          device: torch.device | None = None, latency: LatencyConfig | None = DEFAULT_LATENCY,
                          precision: Resolved, teacher_logits: Mapping[str, torch.Tensor] | None = None
                          ) -> Measured:
    """:func:`measure_model`, keeping what each example did: the aggregate scores and the per-example frames come
    from one forward pass per split, so they agree exactly. ``teacher_logits`` (``"test"``/``"val"``) fill the
    frames' ``kl_to_teacher``."""
    splits = {"test": test, **({"val": val} if val is not None else {})}
    logits = {name: predict_logits(model, data, batch_size, device, precision=precision)
              for name, data in splits.items()}
    scores = {name: scores_from_logits(logits[name], data["labels"]) for name, data in splits.items()}
    teacher = teacher_logits or {}
    outcomes = {name: per_example(logits[name], data["labels"], teacher.get(name)) for name, data in splits.items()}
    val_scores = scores.get("val")
    params = count_parameters(model)
    metrics = ModelMetrics(
        num_layers=len(encoder_layers(model)), kept_layers=tuple(original_layer_indices(model)),
        test_accuracy=scores["test"]["accuracy"], test_macro_f1=scores["test"]["macro_f1"],
        test_loss=scores["test"]["loss"],
        val_accuracy=val_scores["accuracy"] if val_scores else None,
        val_macro_f1=val_scores["macro_f1"] if val_scores else None,
        val_loss=val_scores["loss"] if val_scores else None,
        params_total=params["total"], params_encoder=params["encoder"],
        safetensors_bytes=safetensors_bytes(model) if latency is not None else None,
        latency_ms=measure_latency(model, latency) if latency is not None else None,
        latency_batch_size=latency.batch_size if latency is not None else None,
        latency_seq_length=latency.seq_length if latency is not None else None)
    return Measured(metrics, outcomes, logits)


# ------------------------------------------------------------------------------------- run-level
@dataclass(frozen=True)
class BestOverDepth:
    """The best accuracy among a run's pruned models and the pruning depth (layers removed) reaching it."""

    accuracy: float
    depth: int


def max_accuracy_over_depth(curve: Mapping[int, float] | Iterable[tuple[int, float]]) -> BestOverDepth:
    """The paper's "maximum accuracy over pruning depth": the highest accuracy among the pruned models of
    a run, with the depth where it is reached.

    ``curve`` maps pruning depth (number of layers removed) to accuracy, as a dict or (depth, accuracy)
    pairs. Depth 0 (the unpruned model) is not a pruned model and is ignored. On a tie the deeper (smaller)
    model wins: the same accuracy for fewer layers is the better result.
    """
    pairs = list(curve.items()) if isinstance(curve, Mapping) else [tuple(p) for p in curve]
    pruned = [(int(d), float(a)) for d, a in pairs if int(d) > 0]
    if any(d < 0 for d, _ in pairs):
        raise ValueError(f"Pruning depths must be >= 0, got {sorted(d for d, _ in pairs)}")
    if not pruned:
        raise ValueError("The curve has no pruned model (depth >= 1): nothing to take the maximum over.")
    depth, accuracy = max(pruned, key=lambda p: (p[1], p[0]))
    return BestOverDepth(accuracy=accuracy, depth=depth)


def accuracy_to_size_ratio(accuracy: float, params: int, teacher_accuracy: float, teacher_params: int) -> float:
    """Accuracy-to-size ratio: relative accuracy over relative size (our definition; the paper's formula
    is not public).

        ratio = (accuracy / teacher_accuracy) / (params / teacher_params)

    ``params`` are unique parameters (``ModelMetrics.params_total``). The unpruned teacher scores 1.0; a
    model half the teacher's size that keeps 90 % of its accuracy scores 0.9 / 0.5 = 1.8. Above 1 the
    model gives up relatively less accuracy than size.
    """
    o = "accuracy_to_size_ratio"
    check_float(o, "accuracy", accuracy, 0.0, 1.0)
    check_float(o, "teacher_accuracy", teacher_accuracy, 0.0, 1.0, lo_open=True)
    check_int(o, "params", params, 1)
    check_int(o, "teacher_params", teacher_params, 1)
    return (accuracy / teacher_accuracy) / (params / teacher_params)
