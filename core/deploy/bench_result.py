"""The deploy benchmark's records (``deploy/bench.json``): its settings (:class:`DeployBenchConfig`) and its
result (:class:`BenchResult`: one :class:`BenchRow` per shape, the engines' accuracies with their intervals and
paired differences, :class:`AccuracyStatistics`).

One ``to_dict`` writes the keys the file has always had; ``from_dict`` reads every file written so far: a
benchmark stored before per-example outcomes were kept (issue 21) has no ``intervals``, ``differences``,
``level``, ``outcomes`` or ``test_texts``; it loads with those empty and writes back without them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from core.config import Bound, ConfigError, check_bounds, check_int
from core.deploy.records import Parity, stored_float, stored_int, stored_strings
from core.jsontypes import JSONObject
from core.stats import LEVEL, Interval

#: the engines the benchmark times, in its column order (int8 only when asked for)
ENGINES = ("teacher_torch", "compressed_torch", "teacher_ort", "compressed_ort", "compressed_int8")
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


@dataclass(frozen=True)
class BenchRow:
    """One input shape (``batch`` x ``seq`` tokens): median milliseconds per engine and the speedups (teacher over
    compressed in the same runtime; int8 against the teacher in ONNX Runtime float32); ``ideal`` is teacher layers
    over compressed layers."""

    batch: int
    seq: int
    teacher_torch_ms: float
    compressed_torch_ms: float
    teacher_ort_ms: float
    compressed_ort_ms: float
    speedup_torch: float
    speedup_ort: float
    ort_vs_teacher_torch: float
    ideal: float
    compressed_int8_ms: float | None = None
    speedup_int8: float | None = None

    @classmethod
    def of(cls, batch: int, seq: int, ms: Mapping[str, float], ideal: float) -> BenchRow:
        """The row of one shape from each engine's median milliseconds (``ENGINES`` keys; int8 optional)."""
        int8 = ms.get("compressed_int8")
        return cls(batch, seq, ms["teacher_torch"], ms["compressed_torch"], ms["teacher_ort"], ms["compressed_ort"],
                   ms["teacher_torch"] / ms["compressed_torch"], ms["teacher_ort"] / ms["compressed_ort"],
                   ms["teacher_torch"] / ms["compressed_ort"], ideal, int8,
                   None if int8 is None else ms["teacher_ort"] / int8)

    def to_dict(self) -> JSONObject:
        out: JSONObject = {"batch": self.batch, "seq": self.seq, "teacher_torch_ms": self.teacher_torch_ms,
                           "compressed_torch_ms": self.compressed_torch_ms, "teacher_ort_ms": self.teacher_ort_ms,
                           "compressed_ort_ms": self.compressed_ort_ms}
        if self.compressed_int8_ms is not None:
            out["compressed_int8_ms"] = self.compressed_int8_ms
        out.update({"speedup_torch": self.speedup_torch, "speedup_ort": self.speedup_ort,
                    "ort_vs_teacher_torch": self.ort_vs_teacher_torch, "ideal": self.ideal})
        if self.speedup_int8 is not None:
            out["speedup_int8"] = self.speedup_int8
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchRow:
        def opt(key: str) -> float | None:
            return None if data.get(key) is None else float(data[key])

        f = stored_float
        return cls(int(data["batch"]), int(data["seq"]), f(data["teacher_torch_ms"]), f(data["compressed_torch_ms"]),
                   f(data["teacher_ort_ms"]), f(data["compressed_ort_ms"]), f(data["speedup_torch"]),
                   f(data["speedup_ort"]), f(data["ort_vs_teacher_torch"]), f(data["ideal"]), opt("compressed_int8_ms"),
                   opt("speedup_int8"))


@dataclass(frozen=True)
class Machine:
    """Where the benchmark ran."""

    cpus: int | None
    platform: str
    processor: str

    def to_dict(self) -> JSONObject:
        return {"cpus": self.cpus, "platform": self.platform, "processor": self.processor}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Machine:
        return cls(stored_int(data.get("cpus")), str(data.get("platform") or ""), str(data.get("processor") or ""))


@dataclass(frozen=True)
class OutcomeSource:
    """Where an engine's per-example test outcomes are kept: the run's ``step`` folder and the ``evaluation``
    name. The teacher's also says whether step 0's were ``reused`` and, when they were, on how many texts the
    stored prediction differs from the teacher's here (``prediction_mismatches``)."""

    step: int
    evaluation: str
    reused: bool | None = None
    prediction_mismatches: int | None = None

    def to_dict(self) -> JSONObject:
        out: JSONObject = {"step": self.step, "evaluation": self.evaluation}
        if self.reused is not None:
            out["reused"] = self.reused
        if self.prediction_mismatches is not None:
            out["prediction_mismatches"] = self.prediction_mismatches
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutcomeSource:
        reused = data.get("reused")
        return cls(int(data["step"]), str(data["evaluation"]), None if reused is None else bool(reused),
                   stored_int(data.get("prediction_mismatches")))


@dataclass(frozen=True)
class EngineDifference:
    """Engine ``a`` minus engine ``b`` on the same test texts (:data:`COMPARISONS`): the paired interval, the
    texts right only in one of them, McNemar's p-value, whether it is within noise and the sentence saying so."""

    a: str
    b: str
    interval: Interval
    a_only: int
    b_only: int
    mcnemar_p: float
    within_noise: bool
    verdict: str

    def to_dict(self) -> JSONObject:
        return {"a": self.a, "b": self.b, "interval": self.interval.to_dict(), "a_only": self.a_only,
                "b_only": self.b_only, "mcnemar_p": self.mcnemar_p, "within_noise": self.within_noise,
                "verdict": self.verdict}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EngineDifference:
        return cls(str(data["a"]), str(data["b"]), Interval(**data["interval"]), int(data["a_only"]),
                   int(data["b_only"]), stored_float(data["mcnemar_p"]), bool(data["within_noise"]),
                   str(data["verdict"]))


@dataclass(frozen=True)
class AccuracyStatistics:
    """The test accuracies of the engines measured (keys of :data:`ENGINES`): ``accuracy`` (the outcomes' mean of
    ``pred == label``), ``intervals`` (Wilson; empty for a benchmark stored before outcomes were kept) and
    ``differences`` (:data:`COMPARISONS` whose engines were both measured)."""

    accuracy: dict[str, float]
    intervals: dict[str, Interval] = field(default_factory=dict)
    differences: dict[str, EngineDifference] = field(default_factory=dict)

    def text(self, engine: str, digits: int = 3) -> str:
        """``0.894 [0.882, 0.905]``, or the bare accuracy of a result stored without intervals."""
        i = self.intervals.get(engine)
        return i.format(digits) if i is not None else f"{self.accuracy[engine]:.{digits + 1}f}"

    @property
    def int8_lost(self) -> bool:
        """int8 was measured and is less accurate than float32 ONNX Runtime on the same texts."""
        return "compressed_int8" in self.accuracy and self.accuracy["compressed_int8"] < self.accuracy["compressed_ort"]

    def lines(self, test_texts: int | None = None, teacher: OutcomeSource | None = None) -> list[str]:
        """The accuracies with their intervals and the paired comparisons, method and level said once."""
        listed = ", ".join(f"{k.replace('_', ' ')} {self.text(k)}" for k in self.accuracy)
        if not self.intervals:
            return [f"test accuracy: {listed}"]
        lines = [f"test accuracy on {test_texts} test texts ({METHOD_NOTE}): {listed}"]
        for key, d in self.differences.items():
            _, _, name_a, name_b = COMPARISONS[key]
            lines.append(f"  {name_a} vs {name_b}: {d.verdict}; {d.a_only} text(s) right only in {name_a}, "
                         f"{d.b_only} only in {name_b}")
        if teacher is not None and teacher.prediction_mismatches:
            lines.append(f"  note: the teacher's accuracy is the run's own (step 0's test outcomes); the teacher "
                         f"evaluated here predicts {teacher.prediction_mismatches} text(s) differently")
        return lines

    def to_dict(self) -> JSONObject:
        """``accuracy``, and ``intervals`` and ``differences`` when kept (a result stored before them had none)."""
        out: JSONObject = {"accuracy": {k: float(v) for k, v in self.accuracy.items()}}
        if self.intervals:
            out["intervals"] = {k: i.to_dict() for k, i in self.intervals.items()}
            out["differences"] = {k: d.to_dict() for k, d in self.differences.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AccuracyStatistics:
        return cls({str(k): stored_float(v) for k, v in (data.get("accuracy") or {}).items()},
                   {str(k): Interval(**v) for k, v in (data.get("intervals") or {}).items()},
                   {str(k): EngineDifference.from_dict(v) for k, v in (data.get("differences") or {}).items()})


@dataclass(frozen=True)
class BenchResult:
    """The deploy benchmark of a run (``deploy/bench.json``): the settings it ran with (``config.threads`` is the
    thread count used), where, what else was training meanwhile, the layer counts and the ideal speedup, the
    engines' test accuracies (:class:`AccuracyStatistics`), where their outcomes are kept, the parity of the
    compressed model's and the teacher's ONNX files, and one :class:`BenchRow` per shape."""

    run_id: str
    kind: str
    model: str
    dataset: str
    created_at: float
    seconds: float
    config: DeployBenchConfig
    machine: Machine
    other_runs_active: tuple[str, ...]
    teacher_layers: int
    compressed_layers: int
    distinct_ffns: int
    ideal: float
    stats: AccuracyStatistics
    compressed_parity: Parity
    teacher_parity: Parity
    rows: tuple[BenchRow, ...]
    versions: dict[str, str] = field(default_factory=dict)
    level: float | None = None
    outcomes: dict[str, OutcomeSource] = field(default_factory=dict)
    test_texts: int | None = None

    @property
    def threads(self) -> int:
        return self.config.threads

    @property
    def texts(self) -> int | None:
        """How many test texts the accuracies rest on (the parity check's count for an older result)."""
        return self.test_texts or self.compressed_parity.texts or None

    @property
    def int8(self) -> bool:
        return any(r.compressed_int8_ms is not None for r in self.rows)

    def table(self) -> pd.DataFrame:
        """The rows as a frame (the int8 columns only when int8 was measured)."""
        return pd.DataFrame([r.to_dict() for r in self.rows])

    def accuracy_lines(self) -> list[str]:
        return self.stats.lines(self.test_texts, self.outcomes.get("teacher_torch"))

    def to_dict(self) -> JSONObject:
        c = self.config
        out: JSONObject = {
            "run_id": self.run_id, "kind": self.kind, "model": self.model, "dataset": self.dataset,
            "created_at": self.created_at, "seconds": self.seconds,
            "config": {"batch_sizes": list(c.batch_sizes), "seq_lengths": list(c.seq_lengths), "repeats": c.repeats,
                       "warmup": c.warmup, "int8": c.int8},
            "threads": c.threads, "machine": self.machine.to_dict(), "other_runs_active": list(self.other_runs_active),
            "teacher_layers": self.teacher_layers, "compressed_layers": self.compressed_layers,
            "distinct_ffns": self.distinct_ffns, "ideal": self.ideal, **self.stats.to_dict()}
        if self.level is not None:
            out["level"] = self.level
        if self.outcomes:
            out["outcomes"] = {k: o.to_dict() for k, o in self.outcomes.items()}
        if self.test_texts is not None:
            out["test_texts"] = self.test_texts
        out["parity"] = {"compressed": self.compressed_parity.to_dict(), "teacher": self.teacher_parity.to_dict()}
        out["rows"] = [r.to_dict() for r in self.rows]
        out["versions"] = dict(self.versions)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchResult:
        c = data.get("config") or {}
        threads = int(data.get("threads") or 0)
        config = DeployBenchConfig(batch_sizes=tuple(int(b) for b in c["batch_sizes"]),
                                   seq_lengths=tuple(int(s) for s in c["seq_lengths"]), repeats=int(c["repeats"]),
                                   warmup=int(c["warmup"]), threads=threads, int8=bool(c.get("int8")))
        parity = data["parity"]
        level = data.get("level")
        return cls(str(data["run_id"]), str(data["kind"]), str(data["model"]), str(data["dataset"]),
                   stored_float(data["created_at"]), stored_float(data.get("seconds")), config,
                   Machine.from_dict(data["machine"]),
                   tuple(str(r) for r in data.get("other_runs_active") or ()), int(data["teacher_layers"]),
                   int(data["compressed_layers"]), int(data["distinct_ffns"]), stored_float(data["ideal"]),
                   AccuracyStatistics.from_dict(data), Parity.from_dict(parity["compressed"]),
                   Parity.from_dict(parity["teacher"]), tuple(BenchRow.from_dict(r) for r in data["rows"]),
                   stored_strings(data.get("versions")), None if level is None else float(level),
                   {str(k): OutcomeSource.from_dict(v) for k, v in (data.get("outcomes") or {}).items()},
                   stored_int(data.get("test_texts")))
