"""Deploy benchmark: is the compressed model faster where it will run?

Side by side in one process: the run's teacher and its compressed model, each in PyTorch and in ONNX Runtime
(and optionally the compressed model with ONNX Runtime dynamic int8 quantization), at batch 1 / 8 / 32 x
sequence length 32 / 128 (random token ids, no padding: latency does not depend on the words). For each shape
every engine is warmed up, then timed once per *round*, rounds interleaved (the engine order rotates each
round), so drift on a shared machine lands on all of them alike; each figure is the median over rounds.

Speedups compare the teacher and the compressed model in the same runtime (int8: against the teacher in ONNX
Runtime float32). ``ideal`` is the encoder-only speedup: teacher layers / compressed layers. FFN merging
ties weights but keeps every layer's compute, so a merged model's ideal is 1.0 by the same formula (its layer
count is unchanged); embeddings and the head keep their cost, so real speedups stay below the ideal.

The teacher is the run's fine-tuned teacher from the cache (:func:`core.teacher.cached_teacher`); its ONNX
export is cached next to it (``<cache>/onnx/<teacher key>.onnx``, parity checked on the run's test texts).

Accuracies (issue 21): every accuracy the check reports rests on per-example outcomes of the run's test texts,
kept with the run (``artifacts.DEPLOY_*_OUTCOMES`` in its last step folder; the teacher's are step 0's ``test``
file, reused, see :func:`teacher_outcomes`), so each carries its 95 % Wilson interval and each comparison
(ONNX Runtime vs PyTorch, int8 vs float32, compressed vs teacher) is a paired difference on the same texts with
its bootstrap interval and verdict (:data:`COMPARISONS`, :mod:`core.stats`).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from core.config import ConfigError, TrainConfig, from_dict
from core.data.batches import batches
from core.deploy import onnx_export as ox
from core.deploy.bench_result import (
    COMPARISONS,
    ENGINES,
    METHOD_NOTE,
    AccuracyStatistics,
    BenchResult,
    BenchRow,
    DeployBenchConfig,
    EngineDifference,
    Machine,
    OutcomeSource,
)
from core.deploy.records import Parity
from core.metrics import LatencyConfig, latency_batch
from core.models.registry import config_of, encoder_layers
from core.paths import cache_dir
from core.runs import artifacts
from core.runs.record import Run
from core.runs.store import RunStore
from core.stats import LEVEL, accuracy_of, beyond_noise, paired_accuracy_of, verdict
from core.stats.outcomes import aligned
from core.teacher import cached_teacher, default_train_config
from core.train import per_example

if TYPE_CHECKING:
    from core.data.task import Task
    from core.teacher import TeacherResult

BENCH_FILE = f"{ox.DEPLOY_DIR}/bench.json"
#: the per-example outcomes kept for each accuracy the check measures (evaluation names, in the run's last step
#: folder); the teacher's accuracy rests on step 0's ``test`` file (:func:`teacher_outcomes`)
OUTCOMES = {"compressed_torch": artifacts.DEPLOY_TORCH_OUTCOMES, "compressed_ort": artifacts.DEPLOY_ORT_OUTCOMES,
            "compressed_int8": artifacts.DEPLOY_INT8_OUTCOMES}
__all__ = ["BENCH_FILE", "COMPARISONS", "ENGINES", "METHOD_NOTE", "OUTCOMES", "BenchResult", "DeployBenchConfig",
           "accuracy_statistics", "bench_events", "bench_text", "read_bench", "run_bench"]


# --------------------------------------------------------------------------------------- timing
def interleaved_medians(engines: Mapping[str, Callable[[], object]], rounds: int, warmup: int
                        ) -> dict[str, float]:
    """Median milliseconds of each engine over ``rounds`` interleaved rounds (order rotated every round)
    after ``warmup`` untimed calls of each."""
    names = list(engines)
    for name in names:
        for _ in range(warmup):
            engines[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            engines[name]()
            times[name].append((time.perf_counter() - t0) * 1000.0)
    return {n: float(statistics.median(t)) for n, t in times.items()}


def _torch_call(model: nn.Module, batch: dict[str, torch.Tensor]) -> Callable[[], object]:
    def call() -> object:
        with torch.inference_mode():
            return model(**batch)
    return call


def _ort_call(session: Any, feed: dict[str, np.ndarray]) -> Callable[[], object]:
    return lambda: session.run(["logits"], feed)


# --------------------------------------------------------------------------------------- models
def _teacher(store: RunStore, run: Run, task: Task) -> tuple[nn.Module, TeacherResult]:
    cfg = run.config.get("teacher")
    train_cfg = from_dict(TrainConfig, cfg) if cfg else default_train_config(task.model.key, task.num_labels)
    hit = cached_teacher(task, train_cfg)
    if hit is None:
        raise ValueError(f"The teacher of run {run.id} is not in the cache any more: fine-tune it again with "
                         f"`python -m core teach --model {run.model} --dataset {run.dataset}` "
                         "(same data options as the run), then rerun the benchmark.")
    return hit.load().to("cpu").eval(), hit


def _teacher_onnx(teacher: nn.Module, key: str, test: dict[str, torch.Tensor]
                  ) -> tuple[Path, Parity, np.ndarray]:
    """The teacher's ONNX file (cached per teacher key), its parity on the run's test texts and its PyTorch
    logits on them (in the split's order)."""
    path = cache_dir() / "onnx" / f"{key}.onnx"
    if not path.exists():
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            ox.export_onnx(teacher, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    ref, got, labels = ox.parity_logits(teacher, ox.ort_session(path), test)
    return path, ox.parity_of(ref, got, labels), ref


def _int8(src: Path, dest: Path) -> Path:
    """ONNX Runtime dynamic int8 quantization (weights int8, activations quantized at run time) of ``src``.
    The exporter's stored shape annotations (``value_info``) are dropped first: the quantizer's shape
    inference rejects them (``Inferred shape and existing shape differ``) and infers its own."""
    import onnx  # noqa: PLC0415 deferred: cost (onnx)
    from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415 deferred: cost (onnxruntime)

    proto = onnx.load(str(src))
    del proto.graph.value_info[:]
    plain = dest.with_name(f".{dest.name}.plain{os.getpid()}.onnx")
    try:
        onnx.save(proto, str(plain))
        quantize_dynamic(str(plain), str(dest), weight_type=QuantType.QInt8)
    finally:
        plain.unlink(missing_ok=True)
    return dest


def _session_logits(session: Any, data: dict[str, torch.Tensor]) -> np.ndarray:
    """An ONNX Runtime session's logits on every row of ``data``, in its order."""
    return np.concatenate([ox.ort_logits(session, batch) for batch in batches(data, 64)])


# --------------------------------------------------------------------------------------- outcomes
def engine_outcomes(logits: np.ndarray, labels: np.ndarray, teacher_logits: np.ndarray | None,
                    torch_logits: np.ndarray | None = None) -> pd.DataFrame:
    """Per-example outcomes (:func:`core.train.per_example`) of one engine on the test texts: ``kl_to_teacher``
    against ``teacher_logits``; with ``torch_logits`` (the same model in PyTorch float32) an extra ``kl_to_torch``
    column, KL(PyTorch || this engine)."""
    x, y = torch.from_numpy(np.asarray(logits, dtype=np.float32)), torch.from_numpy(np.asarray(labels))
    t = None if teacher_logits is None else torch.from_numpy(np.asarray(teacher_logits, dtype=np.float32))
    frame = per_example(x, y, t)
    if torch_logits is not None:
        ref = torch.from_numpy(np.asarray(torch_logits, dtype=np.float32))
        frame["kl_to_torch"] = per_example(x, y, ref)["kl_to_teacher"].to_numpy()  # KL(ref || x), same formula
    return frame


def deploy_step(store: RunStore, run_id: str) -> int:
    """The step folder the deploy check keeps its outcomes in: the run's last one (its final model's)."""
    folder = store.run_dir(run_id) / artifacts.STEPS_DIR
    steps = [int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()] if folder.is_dir() else []
    return max(steps, default=0)


def teacher_outcomes(store: RunStore, run_id: str, logits: np.ndarray, labels: np.ndarray, step: int
                     ) -> tuple[pd.DataFrame, OutcomeSource]:
    """The teacher's test outcomes the deploy check compares against: step 0's ``test`` file (what the run measured)
    when it covers the same test texts with the same labels; else computed from the teacher's PyTorch ``logits``
    here and kept as ``deploy_teacher`` at ``step``. Returns the frame and where it is (``step``, ``evaluation``,
    ``reused``; when reused, ``prediction_mismatches``: rows where the stored prediction differs from the
    teacher's here)."""
    here = engine_outcomes(logits, labels, None)
    kept = store.read_outcomes(run_id, 0, artifacts.TEST_OUTCOMES)
    stale = store.run_dir(run_id) / artifacts.step_outcomes(step, artifacts.DEPLOY_TEACHER_OUTCOMES)
    if kept is not None:
        try:
            stored, now = aligned(kept, here)
        except ValueError:  # other rows (another split or cap): compute the teacher's own here
            pass
        else:
            stale.unlink(missing_ok=True)
            mismatches = int((stored["pred"].to_numpy() != now["pred"].to_numpy()).sum())
            return kept, OutcomeSource(0, artifacts.TEST_OUTCOMES, reused=True, prediction_mismatches=mismatches)
    store.write_outcomes(run_id, step, artifacts.DEPLOY_TEACHER_OUTCOMES, here)
    return here, OutcomeSource(step, artifacts.DEPLOY_TEACHER_OUTCOMES, reused=False)


def _difference(frames: Mapping[str, pd.DataFrame], a: str, b: str, name_a: str, name_b: str) -> EngineDifference:
    d = paired_accuracy_of(frames[a], frames[b])
    return EngineDifference(a, b, d.interval, d.a_only, d.b_only, d.mcnemar_p, not beyond_noise(d.interval),
                            verdict(d.interval, name_a, name_b))


def accuracy_statistics(frames: Mapping[str, pd.DataFrame]) -> AccuracyStatistics:
    """From each engine's outcomes (keys of :data:`ENGINES`): ``accuracy`` (exactly the outcomes' mean of ``pred ==
    label``), ``intervals`` (Wilson) and ``differences`` (:data:`COMPARISONS` whose engines are both there, paired
    on the same rows: interval, McNemar counts, verdict)."""
    intervals = {k: accuracy_of(f) for k, f in frames.items()}
    return AccuracyStatistics({k: i.estimate for k, i in intervals.items()}, intervals,
                              {key: _difference(frames, a, b, na, nb) for key, (a, b, na, nb) in COMPARISONS.items()
                               if a in frames and b in frames})


# --------------------------------------------------------------------------------------- the bench
def bench_events(store: RunStore, run_id: str, cfg: DeployBenchConfig | None = None
                 ) -> Iterator[tuple[float, str, BenchResult | None]]:
    """Run the benchmark, yielding ``(progress 0..1, message, None)`` and finally ``(1.0, message, result)``;
    the result is also stored with the run (``deploy/bench.json``)."""
    cfg = cfg or DeployBenchConfig()
    run = store.get_run(run_id)
    if run is None:
        raise ValueError(f"no run {run_id!r}")
    threads = cfg.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    start = time.perf_counter()
    busy = [r.id for r in store.list_runs() if r.active and r.id != run_id]
    yield 0.01, "Exporting the compressed model to ONNX (parity check)", None
    record = ox.export_run(store, run_id)
    if not record.passed:
        raise ValueError(f"The ONNX export of run {run_id} failed parity (max |logit diff| "
                         f"{record.parity.max_abs_diff:.2e}): nothing to benchmark in ONNX Runtime.")
    compressed = ox.load_run_model(store, run_id)
    yield 0.2, "Loading the teacher and the run's test texts", None
    task = ox.run_task(store, run)
    test = task.encoded["test"]
    teacher, hit = _teacher(store, run, task)
    yield 0.25, "Exporting the teacher to ONNX (cached after the first time)", None
    t_path, t_parity, t_logits = _teacher_onnx(teacher, hit.key, test)
    c_path = store.run_dir(run_id) / ox.ONNX_FILE
    sessions = {"teacher_ort": ox.ort_session(t_path, threads), "compressed_ort": ox.ort_session(c_path, threads)}
    yield 0.3, "Scoring the compressed model on the test texts (PyTorch, ONNX Runtime)", None
    c_torch, c_ort, labels = ox.parity_logits(compressed, sessions["compressed_ort"], test)
    step = deploy_step(store, run_id)
    frames = {"compressed_torch": engine_outcomes(c_torch, labels, t_logits),
              "compressed_ort": engine_outcomes(c_ort, labels, t_logits, c_torch)}
    if cfg.int8:
        yield 0.35, "Quantizing the compressed model to int8 (ONNX Runtime dynamic)", None
        q_path = _int8(c_path, store.run_dir(run_id) / ox.DEPLOY_DIR / "model.int8.onnx")
        sessions["compressed_int8"] = ox.ort_session(q_path, threads)
        frames["compressed_int8"] = engine_outcomes(_session_logits(sessions["compressed_int8"], test), labels,
                                                    t_logits, c_torch)
    else:  # an int8 file from an earlier check must not pass for this one's
        (store.run_dir(run_id) / artifacts.step_outcomes(step, OUTCOMES["compressed_int8"])).unlink(missing_ok=True)
    where: dict[str, OutcomeSource] = {}
    for engine, frame in frames.items():
        store.write_outcomes(run_id, step, OUTCOMES[engine], frame)
        where[engine] = OutcomeSource(step, OUTCOMES[engine])
    teacher_frame, where["teacher_torch"] = teacher_outcomes(store, run_id, t_logits, labels, step)
    stats = accuracy_statistics({"teacher_torch": teacher_frame, **frames})
    n_teacher, n_compressed = len(encoder_layers(teacher)), len(encoder_layers(compressed))
    ideal = n_teacher / n_compressed
    max_len = min(int(config_of(teacher).max_position_embeddings), int(config_of(compressed).max_position_embeddings))
    rows = []
    shapes = cfg.shapes()
    for i, (b, s) in enumerate(shapes):
        if s > max_len:
            raise ConfigError(f"DeployBenchConfig.seq_lengths holds {s}, longer than the model's "
                              f"{max_len} positions")
        yield 0.4 + 0.6 * i / len(shapes), f"Timing batch {b} x {s} tokens ({i + 1}/{len(shapes)})", None
        batch = latency_batch(compressed, LatencyConfig(batch_size=b, seq_length=s))
        feed = {k: v.numpy().astype(np.int64) for k, v in batch.items()}
        engines = {"teacher_torch": _torch_call(teacher, batch), "compressed_torch": _torch_call(compressed, batch),
                   **{name: _ort_call(sess, feed) for name, sess in sessions.items()}}
        rows.append(BenchRow.of(b, s, interleaved_medians(engines, cfg.repeats, cfg.warmup), ideal))
    result = BenchResult(
        run_id=run_id, kind=run.kind, model=run.model, dataset=run.dataset, created_at=time.time(),
        seconds=round(time.perf_counter() - start, 1), config=replace(cfg, threads=threads),
        machine=Machine(os.cpu_count(), platform.platform(), platform.processor() or platform.machine()),
        other_runs_active=tuple(busy), teacher_layers=n_teacher, compressed_layers=n_compressed,
        distinct_ffns=record.ffn_weights.distinct_ffns, ideal=ideal, stats=stats, compressed_parity=record.parity,
        teacher_parity=t_parity, rows=tuple(rows), versions=record.versions, level=LEVEL, outcomes=where,
        test_texts=int(len(labels)))
    store.write_json(run_id, BENCH_FILE, result.to_dict())
    yield 1.0, "Finished", result


def read_bench(store: RunStore, run_id: str) -> BenchResult | None:
    """The run's stored deploy benchmark (``deploy/bench.json``, any version written so far), ``None`` when it
    has none."""
    data = store.read_json(run_id, BENCH_FILE)
    return BenchResult.from_dict(data) if data else None


def run_bench(store: RunStore, run_id: str, cfg: DeployBenchConfig | None = None,
              on_progress: Callable[[float, str], None] | None = None) -> BenchResult:
    """:func:`bench_events` to the end; returns the result."""
    result = None
    for fraction, message, out in bench_events(store, run_id, cfg):
        if on_progress is not None:
            on_progress(fraction, message)
        result = out if out is not None else result
    assert result is not None
    return result


# --------------------------------------------------------------------------------------- text
#: the table's columns and their headers (the int8 ones only when int8 was measured)
TEXT_COLUMNS = {"batch": "batch", "seq": "seq", "teacher_torch_ms": "teacher pt ms",
                "compressed_torch_ms": "compr. pt ms", "speedup_torch": "pt x", "teacher_ort_ms": "teacher ort ms",
                "compressed_ort_ms": "compr. ort ms", "speedup_ort": "ort x",
                "ort_vs_teacher_torch": "ort vs pt-teacher x", "compressed_int8_ms": "compr. int8 ms",
                "speedup_int8": "int8 x", "ideal": "ideal x"}


def bench_text(result: BenchResult) -> str:
    """The result as a fixed-width table with its context (threads, accuracies, parity, busy machine)."""
    head = (f"deploy bench of run {result.run_id} ({result.kind}, {result.model} on {result.dataset}): "
            f"teacher {result.teacher_layers} layers vs compressed {result.compressed_layers} layers "
            f"({result.distinct_ffns} distinct FFNs); ideal encoder-only speedup {result.ideal:.2f}x\n"
            f"median of {result.config.repeats} interleaved rounds per shape; {result.threads} thread(s); "
            f"{result.machine.cpus} CPUs; random token ids, no padding")
    int8 = result.int8
    cols = [c for c in TEXT_COLUMNS if int8 or c not in ("compressed_int8_ms", "speedup_int8")]
    widths = [max(len(TEXT_COLUMNS[c]), 7) for c in cols]
    lines = [head, "  ".join(TEXT_COLUMNS[c].rjust(w) for c, w in zip(cols, widths))]
    for row in result.rows:
        r = row.to_dict()
        cells = [f"{r[c]:.0f}" if c in ("batch", "seq") else f"{r[c]:.2f}" for c in cols]
        lines.append("  ".join(x.rjust(w) for x, w in zip(cells, widths)))
    lines += result.accuracy_lines()
    cp, tp = result.compressed_parity, result.teacher_parity
    lines.append(f"parity (max |logit diff| ONNX Runtime vs PyTorch): compressed {cp.max_abs_diff:.2e}, "
                 f"teacher {tp.max_abs_diff:.2e}; predictions identical: "
                 f"{'yes' if cp.predictions_identical and tp.predictions_identical else 'NO'}")
    stats = result.stats
    if stats.int8_lost:
        d = stats.differences.get("int8_vs_float32")
        lines.append(f"int8 LOST accuracy: {stats.text('compressed_int8')} vs {stats.text('compressed_ort')} in float32"
                     + (f"; {d.verdict} (paired)" if d else ""))
    if result.other_runs_active:
        lines.append(f"warning: {len(result.other_runs_active)} other run(s) were training during the "
                     "measurement; the machine was busy, timings are noisy")
    return "\n".join(lines)
