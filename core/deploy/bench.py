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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from core.config import Bound, ConfigError, check_bounds, check_int
from core.deploy import onnx_export as ox
from core.metrics import LatencyConfig, latency_batch
from core.models.registry import config_of, encoder_layers
from core.runs import artifacts
from core.runs.record import Run
from core.runs.store import RunStore
from core.stats import LEVEL, Interval, accuracy_of, beyond_noise, paired_accuracy_of, verdict
from core.stats.outcomes import aligned
from core.train import per_example

BENCH_FILE = f"{ox.DEPLOY_DIR}/bench.json"
ENGINES = ("teacher_torch", "compressed_torch", "teacher_ort", "compressed_ort", "compressed_int8")
#: the per-example outcomes kept for each accuracy the check measures (evaluation names, in the run's last step
#: folder); the teacher's accuracy rests on step 0's ``test`` file (:func:`teacher_outcomes`)
OUTCOMES = {"compressed_torch": artifacts.DEPLOY_TORCH_OUTCOMES, "compressed_ort": artifacts.DEPLOY_ORT_OUTCOMES,
            "compressed_int8": artifacts.DEPLOY_INT8_OUTCOMES}
#: the paired comparisons on the same test texts: key -> (engine A, engine B, A's name, B's name); A - B
COMPARISONS = {"ort_vs_torch": ("compressed_ort", "compressed_torch", "ONNX Runtime", "PyTorch"),
               "int8_vs_float32": ("compressed_int8", "compressed_ort", "int8", "float32"),
               "compressed_vs_teacher": ("compressed_torch", "teacher_torch", "compressed", "teacher")}
#: what the brackets mean, said once under the numbers
METHOD_NOTE = (f"{round(LEVEL * 100)} % intervals: an accuracy's is Wilson's over the test texts; a difference is "
               "paired on the same texts (bootstrap over them) and reads within noise when its interval contains 0")


@dataclass(frozen=True)
class DeployBenchConfig:
    """Shapes, repeats (timed rounds per shape), untimed warm-up runs, threads (0: torch's current count)
    and whether to add the int8 column."""

    batch_sizes: tuple[int, ...] = (1, 8, 32)
    seq_lengths: tuple[int, ...] = (32, 128)
    repeats: int = 10
    warmup: int = 2
    threads: int = 0
    int8: bool = False

    BOUNDS: ClassVar[dict[str, Bound]] = {"repeats": Bound("int", 1, 1000), "warmup": Bound("int", 0, 100),
                                          "threads": Bound("int", 0, 1024)}

    def __post_init__(self) -> None:
        o = "DeployBenchConfig"
        for name in ("batch_sizes", "seq_lengths"):
            values = getattr(self, name)
            if not values:
                raise ConfigError(f"{o}.{name} must list at least one size, got {values!r}")
            for v in values:
                check_int(o, name, v, 1, 4096)
        check_bounds(self)

    def shapes(self) -> list[tuple[int, int]]:
        return [(b, s) for b in self.batch_sizes for s in self.seq_lengths]


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
def _teacher(store: RunStore, run: Run, task: Any) -> tuple[nn.Module, Any]:
    from core.config import TrainConfig, from_dict
    from core.teacher import cached_teacher, default_train_config

    cfg = run.config.get("teacher")
    train_cfg = from_dict(TrainConfig, cfg) if cfg else default_train_config(task.model.key, task.num_labels)
    hit = cached_teacher(task, train_cfg)
    if hit is None:
        raise ValueError(f"The teacher of run {run.id} is not in the cache any more: fine-tune it again with "
                         f"`python -m core teach --model {run.model} --dataset {run.dataset}` "
                         "(same data options as the run), then rerun the benchmark.")
    return hit.load().to("cpu").eval(), hit


def _teacher_onnx(teacher: nn.Module, key: str, test: dict[str, torch.Tensor]
                  ) -> tuple[Path, dict[str, Any], np.ndarray]:
    """The teacher's ONNX file (cached per teacher key), its parity on the run's test texts and its PyTorch
    logits on them (in the split's order)."""
    from core.paths import cache_dir

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
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

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
    from core.data.batches import batches

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
                     ) -> tuple[pd.DataFrame, dict[str, Any]]:
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
            return kept, {"step": 0, "evaluation": artifacts.TEST_OUTCOMES, "reused": True,
                          "prediction_mismatches": mismatches}
    store.write_outcomes(run_id, step, artifacts.DEPLOY_TEACHER_OUTCOMES, here)
    return here, {"step": step, "evaluation": artifacts.DEPLOY_TEACHER_OUTCOMES, "reused": False}


def _difference(frames: Mapping[str, pd.DataFrame], a: str, b: str, name_a: str, name_b: str) -> dict[str, Any]:
    d = paired_accuracy_of(frames[a], frames[b])
    return {"a": a, "b": b, "interval": d.interval.to_dict(), "a_only": d.a_only, "b_only": d.b_only,
            "mcnemar_p": d.mcnemar_p, "within_noise": not beyond_noise(d.interval),
            "verdict": verdict(d.interval, name_a, name_b)}


def accuracy_statistics(frames: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """From each engine's outcomes (keys of :data:`ENGINES`): ``accuracy`` (exactly the outcomes' mean of ``pred ==
    label``), ``intervals`` (Wilson, as dicts) and ``differences`` (:data:`COMPARISONS` whose engines are both
    there, paired on the same rows: interval, McNemar counts, verdict)."""
    intervals = {k: accuracy_of(f) for k, f in frames.items()}
    return {"accuracy": {k: i.estimate for k, i in intervals.items()},
            "intervals": {k: i.to_dict() for k, i in intervals.items()},
            "differences": {key: _difference(frames, a, b, na, nb) for key, (a, b, na, nb) in COMPARISONS.items()
                            if a in frames and b in frames}}


# --------------------------------------------------------------------------------------- the bench
def bench_events(store: RunStore, run_id: str, cfg: DeployBenchConfig | None = None
                 ) -> Iterator[tuple[float, str, dict[str, Any] | None]]:
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
    if record["status"] != "passed":
        raise ValueError(f"The ONNX export of run {run_id} failed parity (max |logit diff| "
                         f"{record['parity']['max_abs_diff']:.2e}): nothing to benchmark in ONNX Runtime.")
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
    where: dict[str, dict[str, Any]] = {}
    for engine, frame in frames.items():
        store.write_outcomes(run_id, step, OUTCOMES[engine], frame)
        where[engine] = {"step": step, "evaluation": OUTCOMES[engine]}
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
        ms = interleaved_medians(engines, cfg.repeats, cfg.warmup)
        row = {"batch": b, "seq": s, **{f"{k}_ms": v for k, v in ms.items()},
               "speedup_torch": ms["teacher_torch"] / ms["compressed_torch"],
               "speedup_ort": ms["teacher_ort"] / ms["compressed_ort"],
               "ort_vs_teacher_torch": ms["teacher_torch"] / ms["compressed_ort"], "ideal": ideal}
        if "compressed_int8" in ms:
            row["speedup_int8"] = ms["teacher_ort"] / ms["compressed_int8"]
        rows.append(row)
    result = {"run_id": run_id, "kind": run.kind, "model": run.model, "dataset": run.dataset,
              "created_at": time.time(), "seconds": round(time.perf_counter() - start, 1),
              "config": {"batch_sizes": list(cfg.batch_sizes), "seq_lengths": list(cfg.seq_lengths),
                         "repeats": cfg.repeats, "warmup": cfg.warmup, "int8": cfg.int8},
              "threads": threads, "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                              "processor": platform.processor() or platform.machine()},
              "other_runs_active": busy, "teacher_layers": n_teacher, "compressed_layers": n_compressed,
              "distinct_ffns": record["ffn_weights"]["distinct_ffns"], "ideal": ideal, **stats,
              "level": LEVEL, "outcomes": where, "test_texts": int(len(labels)),
              "parity": {"compressed": record["parity"], "teacher": t_parity}, "rows": rows,
              "versions": record["versions"]}
    store.write_json(run_id, BENCH_FILE, result)
    yield 1.0, "Finished", result


def run_bench(store: RunStore, run_id: str, cfg: DeployBenchConfig | None = None,
              on_progress: Callable[[float, str], None] | None = None) -> dict[str, Any]:
    """:func:`bench_events` to the end; returns the result."""
    result = None
    for fraction, message, out in bench_events(store, run_id, cfg):
        if on_progress is not None:
            on_progress(fraction, message)
        result = out if out is not None else result
    assert result is not None
    return result


# --------------------------------------------------------------------------------------- text
def bench_text(result: Mapping[str, Any]) -> str:
    """The result as a fixed-width table with its context (threads, accuracies, parity, busy machine)."""
    rows = result["rows"]
    int8 = any("compressed_int8_ms" in r for r in rows)
    acc = result["accuracy"]
    head = (f"deploy bench of run {result['run_id']} ({result['kind']}, {result['model']} on {result['dataset']}): "
            f"teacher {result['teacher_layers']} layers vs compressed {result['compressed_layers']} layers "
            f"({result['distinct_ffns']} distinct FFNs); ideal encoder-only speedup {result['ideal']:.2f}x\n"
            f"median of {result['config']['repeats']} interleaved rounds per shape; {result['threads']} thread(s); "
            f"{result['machine']['cpus']} CPUs; random token ids, no padding")
    cols = ["batch", "seq", "teacher_torch_ms", "compressed_torch_ms", "speedup_torch", "teacher_ort_ms",
            "compressed_ort_ms", "speedup_ort", "ort_vs_teacher_torch"]
    cols += ["compressed_int8_ms", "speedup_int8"] if int8 else []
    cols += ["ideal"]
    names = {"teacher_torch_ms": "teacher pt ms", "compressed_torch_ms": "compr. pt ms", "speedup_torch": "pt x",
             "teacher_ort_ms": "teacher ort ms", "compressed_ort_ms": "compr. ort ms", "speedup_ort": "ort x",
             "ort_vs_teacher_torch": "ort vs pt-teacher x", "compressed_int8_ms": "compr. int8 ms",
             "speedup_int8": "int8 x", "ideal": "ideal x"}
    widths = [max(len(names.get(c, c)), 7) for c in cols]
    lines = [head, "  ".join(names.get(c, c).rjust(w) for c, w in zip(cols, widths))]
    for r in rows:
        cells = [f"{r[c]:.0f}" if c in ("batch", "seq") else f"{r[c]:.2f}" for c in cols]
        lines.append("  ".join(x.rjust(w) for x, w in zip(cells, widths)))
    lines += accuracy_lines(result)
    cp, tp = result["parity"]["compressed"], result["parity"]["teacher"]
    lines.append(f"parity (max |logit diff| ONNX Runtime vs PyTorch): compressed {cp['max_abs_diff']:.2e}, "
                 f"teacher {tp['max_abs_diff']:.2e}; predictions identical: "
                 f"{'yes' if cp['predictions_identical'] and tp['predictions_identical'] else 'NO'}")
    if "compressed_int8" in acc and acc["compressed_int8"] < acc["compressed_ort"]:
        lines.append(f"int8 LOST accuracy: {accuracy_text(result, 'compressed_int8')} vs "
                     f"{accuracy_text(result, 'compressed_ort')} in float32"
                     + (f"; {d['verdict']} (paired)" if (d := differences(result).get("int8_vs_float32")) else ""))
    if result["other_runs_active"]:
        lines.append(f"warning: {len(result['other_runs_active'])} other run(s) were training during the "
                     "measurement; the machine was busy, timings are noisy")
    return "\n".join(lines)


def intervals(result: Mapping[str, Any]) -> dict[str, Interval]:
    """The result's accuracies with their intervals (empty for a result stored before they were kept)."""
    return {k: Interval(**v) for k, v in (result.get("intervals") or {}).items()}


def differences(result: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The result's paired comparisons (:data:`COMPARISONS` keys; empty for a result stored before them)."""
    return dict(result.get("differences") or {})


def accuracy_text(result: Mapping[str, Any], engine: str, digits: int = 3) -> str:
    """``0.894 [0.882, 0.905]``, or the bare accuracy of a result stored without intervals."""
    i = intervals(result).get(engine)
    return i.format(digits) if i is not None else f"{result['accuracy'][engine]:.{digits + 1}f}"


def accuracy_lines(result: Mapping[str, Any]) -> list[str]:
    """The test accuracies with their intervals and the paired comparisons, method and level said once."""
    acc = result["accuracy"]
    listed = ", ".join(f"{k.replace('_', ' ')} {accuracy_text(result, k)}" for k in acc)
    diffs = differences(result)
    if not intervals(result):
        return [f"test accuracy: {listed}"]
    n = result.get("test_texts")
    lines = [f"test accuracy on {n} test texts ({METHOD_NOTE}): {listed}"]
    for key, d in diffs.items():
        _, _, name_a, name_b = COMPARISONS[key]
        lines.append(f"  {name_a} vs {name_b}: {d['verdict']}; {d['a_only']} text(s) right only in {name_a}, "
                     f"{d['b_only']} only in {name_b}")
    teacher = (result.get("outcomes") or {}).get("teacher_torch") or {}
    if teacher.get("prediction_mismatches"):
        lines.append(f"  note: the teacher's accuracy is the run's own (step 0's test outcomes); the teacher evaluated "
                     f"here predicts {teacher['prediction_mismatches']} text(s) differently")
    return lines
