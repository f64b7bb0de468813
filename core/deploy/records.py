"""The deploy check's records, typed: the ONNX export's parity record (``deploy/onnx_parity.json``,
:class:`ParityRecord`, here) and the deploy benchmark's result (``deploy/bench.json``,
:class:`core.deploy.bench_result.BenchResult`).

Each record has one ``to_dict`` (the JSON written to the run folder, the keys it has always had) and one
``from_dict`` that reads every file written so far; the readers of stored values below are shared by both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.jsontypes import JSONObject


def stored_float(value: Any) -> float:
    """A stored number; ``None`` (how the store writes NaN and infinities) reads as NaN."""
    return math.nan if value is None else float(value)


def stored_int(value: Any) -> int | None:
    """A stored optional integer."""
    return None if value is None else int(value)


def stored_strings(value: Any) -> dict[str, str]:
    """A stored mapping of names to strings (versions); empty when absent."""
    return {str(k): str(v) for k, v in (value or {}).items()}


# ------------------------------------------------------------------------------------------ parity
@dataclass(frozen=True)
class ExportInfo:
    """How the ONNX file was made: the exporter, seconds taken, file size and duplicate constants merged."""

    exporter: str
    seconds: float
    bytes: int
    duplicate_constants_merged: int

    def to_dict(self) -> JSONObject:
        return {"exporter": self.exporter, "seconds": self.seconds, "bytes": self.bytes,
                "duplicate_constants_merged": self.duplicate_constants_merged}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExportInfo:
        return cls(str(data["exporter"]), stored_float(data["seconds"]), int(data["bytes"]),
                   int(data["duplicate_constants_merged"]))


@dataclass(frozen=True)
class FfnCensus:
    """The FFN weight matrices an ONNX file holds, counted by content: ``expected`` is two per distinct FFN (tied
    FFNs once), ``per_layer`` two per layer (what a file that duplicates tied FFNs holds); ``from_exporter`` is
    how many the exporter itself wrote before duplicate constants were merged (``None`` until the export sets it)."""

    layers: int
    distinct_ffns: int
    ffn_weight_initializers: int
    expected: int
    per_layer: int
    tied_kept_once: bool
    duplicated: bool
    from_exporter: int | None = None

    def to_dict(self) -> JSONObject:
        out: JSONObject = {"layers": self.layers, "distinct_ffns": self.distinct_ffns,
                           "ffn_weight_initializers": self.ffn_weight_initializers, "expected": self.expected,
                           "per_layer": self.per_layer, "tied_kept_once": self.tied_kept_once,
                           "duplicated": self.duplicated}
        if self.from_exporter is not None:
            out["from_exporter"] = self.from_exporter
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FfnCensus:
        return cls(int(data["layers"]), int(data["distinct_ffns"]), int(data["ffn_weight_initializers"]),
                   int(data["expected"]), int(data["per_layer"]), bool(data["tied_kept_once"]),
                   bool(data["duplicated"]), stored_int(data.get("from_exporter")))


@dataclass(frozen=True)
class Parity:
    """ONNX Runtime's logits against PyTorch's on ``texts`` test texts: the largest and mean absolute logit
    difference, the threshold ``atol``, how many predictions differ, both accuracies and whether it passed."""

    texts: int
    max_abs_diff: float
    mean_abs_diff: float
    atol: float
    predictions_identical: bool
    prediction_mismatches: int
    torch_accuracy: float
    onnx_accuracy: float
    passed: bool

    def to_dict(self) -> JSONObject:
        return {"texts": self.texts, "max_abs_diff": self.max_abs_diff, "mean_abs_diff": self.mean_abs_diff,
                "atol": self.atol, "predictions_identical": self.predictions_identical,
                "prediction_mismatches": self.prediction_mismatches, "torch_accuracy": self.torch_accuracy,
                "onnx_accuracy": self.onnx_accuracy, "passed": self.passed}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Parity:
        return cls(int(data["texts"]), stored_float(data["max_abs_diff"]), stored_float(data["mean_abs_diff"]),
                   stored_float(data["atol"]),
                   bool(data["predictions_identical"]), int(data["prediction_mismatches"]),
                   stored_float(data["torch_accuracy"]), stored_float(data["onnx_accuracy"]), bool(data["passed"]))


@dataclass(frozen=True)
class ParityRecord:
    """An ONNX export of a run's model with its parity check (``deploy/onnx_parity.json``). ``file`` is the
    run-folder path of the checked file, ``None`` when parity failed (then no file is kept); ``status`` is
    ``passed`` or ``failed``."""

    run_id: str
    kind: str
    model: str
    dataset: str
    created_at: float
    file: str | None
    status: str
    export: ExportInfo
    parity: Parity
    ffn_weights: FfnCensus
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> JSONObject:
        return {"run_id": self.run_id, "kind": self.kind, "model": self.model, "dataset": self.dataset,
                "created_at": self.created_at, "file": self.file, "status": self.status,
                "export": self.export.to_dict(), "parity": self.parity.to_dict(),
                "ffn_weights": self.ffn_weights.to_dict(), "versions": dict(self.versions)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParityRecord:
        return cls(str(data["run_id"]), str(data["kind"]), str(data["model"]), str(data["dataset"]),
                   stored_float(data["created_at"]), None if data.get("file") is None else str(data["file"]),
                   str(data["status"]), ExportInfo.from_dict(data["export"]), Parity.from_dict(data["parity"]),
                   FfnCensus.from_dict(data["ffn_weights"]), stored_strings(data.get("versions")))
