"""Metrics of every model a run produces, and the run-level summaries built from them.

Per model (:class:`ModelMetrics`): accuracy, macro-F1 and loss (``core.train.evaluate``), total and encoder
parameters (unique, tied weights once: ``core.models.registry.count_parameters``), the size of its safetensors file,
the measured CPU latency of one fixed-shape batch (median of repeats after warm-up) and its depth.

Per run: :func:`max_accuracy_over_depth` (the paper's "maximum accuracy over pruning depth") and
:func:`accuracy_to_size_ratio` (ours: the paper's formula is not public; see its docstring).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from core.config import check_float, check_int
from core.data.batches import Batch
from core.models.registry import count_parameters, encoder_layers, original_layer_indices
from core.train import evaluate


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
    """The measured numbers of one model (a teacher, a pruned step, a distilled student)."""

    num_layers: int
    kept_layers: tuple[int, ...]
    accuracy: float
    macro_f1: float
    loss: float
    params_total: int
    params_encoder: int
    safetensors_bytes: int
    latency_ms: float
    latency_batch_size: int
    latency_seq_length: int

    def __post_init__(self) -> None:
        o = "ModelMetrics"
        check_int(o, "num_layers", self.num_layers, 1)
        if len(self.kept_layers) != self.num_layers:
            raise ValueError(f"ModelMetrics.kept_layers has {len(self.kept_layers)} entries for "
                             f"{self.num_layers} layers: {self.kept_layers!r}")
        check_float(o, "accuracy", self.accuracy, 0.0, 1.0)
        check_float(o, "macro_f1", self.macro_f1, 0.0, 1.0)
        check_float(o, "loss", self.loss, 0.0)
        check_int(o, "params_total", self.params_total, 1)
        check_int(o, "params_encoder", self.params_encoder, 0, self.params_total)
        check_int(o, "safetensors_bytes", self.safetensors_bytes, 1)
        check_float(o, "latency_ms", self.latency_ms, 0.0, lo_open=True)
        check_int(o, "latency_batch_size", self.latency_batch_size, 1)
        check_int(o, "latency_seq_length", self.latency_seq_length, 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: plain ints, floats and a list of kept layers."""
        out = asdict(self)
        out["kept_layers"] = list(self.kept_layers)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelMetrics":
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
    from safetensors.torch import save_model as save_safetensors

    with tempfile.TemporaryDirectory(prefix="st-size-") as tmp:
        path = Path(tmp) / "model.safetensors"
        save_safetensors(model, str(path), metadata={"format": "pt"})
        return path.stat().st_size


def latency_batch(model: nn.Module, cfg: LatencyConfig) -> dict[str, torch.Tensor]:
    """A fixed, seeded batch of random token ids (no padding): latency does not depend on the words."""
    vocab = int(model.config.vocab_size)
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


def measure_model(model: nn.Module, data: Batch, *, batch_size: int = 128, device: torch.device | None = None,
                  latency: LatencyConfig | None = None) -> ModelMetrics:
    """All per-model metrics: scores on ``data`` (e.g. the test split), size, parameters, CPU latency."""
    latency = latency or LatencyConfig()
    scores = evaluate(model, data, batch_size, device)
    params = count_parameters(model)
    return ModelMetrics(
        num_layers=len(encoder_layers(model)), kept_layers=tuple(original_layer_indices(model)),
        accuracy=scores["accuracy"], macro_f1=scores["macro_f1"], loss=scores["loss"],
        params_total=params["total"], params_encoder=params["encoder"],
        safetensors_bytes=safetensors_bytes(model), latency_ms=measure_latency(model, latency),
        latency_batch_size=latency.batch_size, latency_seq_length=latency.seq_length)


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


# -------------------------------------------------------------------------------------------- bench
def _non_encoder_ms(model: nn.Module, cfg: LatencyConfig) -> float:
    """Median time of the embeddings plus the classifier head alone (no encoder layer), same batch."""
    from core.pruning.oracle import embed, head_logits

    batch = latency_batch(model, cfg)

    def run() -> torch.Tensor:
        hidden, _ = embed(model, batch)
        return head_logits(model, hidden)

    with torch.inference_mode():
        return median_ms(run, cfg.repeats, cfg.warmup)


def bench_latency_main(argv: list[str] | None = None) -> int:
    """``python -m core bench latency``: CPU latency with k = 0..K layers removed vs the ideal
    encoder-only speedup (latency falling in proportion to the encoder layers while embeddings and head
    stay)."""
    from core.pruning.oracle import load_bench_model
    from core.models.surgery import remove_layers

    parser = argparse.ArgumentParser(prog="python -m core bench latency")
    parser.add_argument("--model", default="e5-small")
    parser.add_argument("--max-removed", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv or [])
    torch.set_num_threads(args.threads)
    cfg = LatencyConfig(batch_size=args.batch_size, seq_length=args.length, repeats=args.repeats)
    model, _, used = load_bench_model(args.model, 2)
    model.eval()
    n = len(encoder_layers(model))
    k_max = min(args.max_removed, n - 1)
    models = [remove_layers(model, range(n - k, n), by="position").eval() if k else model
              for k in range(k_max + 1)]
    batch = latency_batch(model, cfg)
    # interleaved rounds: every depth is timed once per round, so drift on a shared machine (other
    # processes, frequency changes) lands on all of them alike; each depth's figure is its median
    rounds = max(cfg.repeats, 3)
    times: list[list[float]] = [[] for _ in models]
    with torch.inference_mode():
        for m in models:
            for _ in range(cfg.warmup):
                m(**batch)
        for _ in range(rounds):
            for k, m in enumerate(models):
                t = time.perf_counter()
                m(**batch)
                times[k].append((time.perf_counter() - t) * 1000.0)
    ms = [float(statistics.median(t)) for t in times]
    t0 = ms[0]
    t_rest = _non_encoder_ms(model, cfg)
    print(f"model {used}: {n} layers; batch {cfg.batch_size} x {cfg.seq_length} tokens; median of "
          f"{rounds} interleaved rounds; {torch.get_num_threads()} threads")
    print(f"embeddings + head alone: {t_rest:.1f} ms of {t0:.1f} ms ({100 * t_rest / t0:.1f} %)")
    print(f"{'removed':>7} {'layers':>6} {'ms':>9} {'speedup':>8} {'ideal':>7}")
    for k, t_k in enumerate(ms):
        ideal = t0 / (t_rest + (t0 - t_rest) * (n - k) / n)
        print(f"{k:>7} {n - k:>6} {t_k:>9.1f} {t0 / t_k:>8.2f} {ideal:>7.2f}")
    return 0
