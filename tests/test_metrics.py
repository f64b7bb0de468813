"""Per-model metrics and run-level summaries on the tiny 12-layer BERT."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from core.config import ConfigError
from core.metrics import (
    BestOverDepth,
    LatencyConfig,
    ModelMetrics,
    accuracy_to_size_ratio,
    max_accuracy_over_depth,
    measure_latency,
    measure_model,
    safetensors_bytes,
)
from core.models.registry import count_parameters
from core.models.surgery import remove_layers, save_model
from core.models.tiny import TINY_WORDS

FAST = LatencyConfig(batch_size=4, seq_length=16, repeats=3, warmup=1)


def tiny_counts(num_layers: int = 12) -> dict[str, int]:
    """Parameter counts of the tiny config by hand: vocab V, hidden H = 32, FFN I = 64, 128 positions,
    2 token types, 2 labels."""
    v, h, i, pos, types, labels = len(TINY_WORDS) + 5, 32, 64, 128, 2, 2
    embeddings = v * h + pos * h + types * h + 2 * h  # word, position, type tables + LayerNorm
    attention = 3 * (h * h + h) + (h * h + h) + 2 * h  # q, k, v, output dense, LayerNorm
    ffn = (h * i + i) + (i * h + h) + 2 * h  # intermediate, output dense, LayerNorm
    encoder = num_layers * (attention + ffn)
    head = (h * h + h) + (h * labels + labels)  # pooler dense + classifier
    return {"total": embeddings + encoder + head, "encoder": encoder, "embeddings": embeddings, "head": head}


def test_parameter_counts_match_hand_arithmetic(tiny_model):
    assert count_parameters(tiny_model) == tiny_counts(12)
    assert count_parameters(remove_layers(tiny_model, [0, 1, 2])) == tiny_counts(9)


def test_safetensors_bytes_match_the_saved_file(tiny_model, tmp_path):
    size = safetensors_bytes(tiny_model)
    folder = save_model(tiny_model, None, tmp_path / "m")
    assert size == (folder / "model.safetensors").stat().st_size
    # fp32 weights stored once each, plus a JSON header (8-byte length + a few KB of names/shapes)
    header = size - 4 * tiny_counts(12)["total"]
    assert 8 < header < 64_000
    pruned = remove_layers(tiny_model, [5])
    per_layer = tiny_counts(12)["encoder"] // 12
    assert 0 < size - safetensors_bytes(pruned) - 4 * per_layer < 2_000  # the layer's bytes and its header lines


def test_safetensors_bytes_store_tied_tensors_once(tiny_model):
    untied = safetensors_bytes(tiny_model)
    # share one weight matrix between two layers: counted once, and stored once in the file
    layers = tiny_model.bert.encoder.layer
    layers[1].intermediate.dense.weight = layers[0].intermediate.dense.weight
    assert count_parameters(tiny_model)["total"] == tiny_counts(12)["total"] - 32 * 64
    assert safetensors_bytes(tiny_model) <= untied - 4 * 32 * 64 + 200


def test_latency_is_positive_and_finite(tiny_model):
    tiny_model.eval()
    ms = measure_latency(tiny_model, FAST)
    assert math.isfinite(ms) and ms > 0
    assert not tiny_model.training
    tiny_model.train()  # measured in eval mode, the caller's mode restored
    assert math.isfinite(measure_latency(tiny_model, FAST))
    assert tiny_model.training


def test_measure_model(tiny_model, keyword_batches):
    from core.train import evaluate

    pruned = remove_layers(tiny_model, [2, 9])
    cpu = torch.device("cpu")
    metrics = measure_model(pruned, keyword_batches["test"], val=keyword_batches["val"], device=cpu, latency=FAST,
                            precision="fp32")
    assert metrics.num_layers == 10
    assert metrics.kept_layers == (0, 1, 3, 4, 5, 6, 7, 8, 10, 11)
    assert metrics.params_total == tiny_counts(10)["total"]
    assert metrics.params_encoder == tiny_counts(10)["encoder"]
    assert metrics.safetensors_bytes == safetensors_bytes(pruned)
    test, val = (evaluate(pruned, keyword_batches[s], precision="fp32") for s in ("test", "val"))
    assert (metrics.test_accuracy, metrics.test_macro_f1, metrics.test_loss) == pytest.approx(
        (test["accuracy"], test["macro_f1"], test["loss"]))
    assert (metrics.val_accuracy, metrics.val_macro_f1, metrics.val_loss) == pytest.approx(
        (val["accuracy"], val["macro_f1"], val["loss"]))
    assert metrics.latency_ms > 0 and (metrics.latency_batch_size, metrics.latency_seq_length) == (4, 16)
    blob = json.loads(json.dumps(metrics.to_dict()))
    assert blob["kept_layers"] == [0, 1, 3, 4, 5, 6, 7, 8, 10, 11]
    # the keys stored runs and pages read
    assert {"test_accuracy", "test_macro_f1", "val_accuracy", "params_total", "latency_ms",
            "safetensors_bytes", "num_layers"} <= set(blob)
    assert ModelMetrics.from_dict({**blob, "removed": 3}) == metrics  # a step row's extra keys are ignored
    with pytest.raises(dataclasses.FrozenInstanceError):
        metrics.test_accuracy = 1.0  # type: ignore[misc]


def test_measure_model_without_latency_or_validation(tiny_model, keyword_batches):
    metrics = measure_model(tiny_model, keyword_batches["test"], device=torch.device("cpu"), latency=None,
                            precision="fp32")
    assert metrics.latency_ms is None and metrics.safetensors_bytes is None and metrics.val_accuracy is None
    blob = metrics.to_dict()
    assert "latency_ms" not in blob and "val_accuracy" not in blob and blob["test_accuracy"] >= 0.0


@pytest.mark.parametrize("field, value, message", [
    ("test_accuracy", 1.5, "ModelMetrics.test_accuracy must be <= 1.0, got 1.5"),
    ("val_macro_f1", -0.1, "ModelMetrics.val_macro_f1 must be >= 0.0, got -0.1"),
    ("params_encoder", 10**9, "ModelMetrics.params_encoder must be <="),
    ("latency_ms", 0.0, "ModelMetrics.latency_ms must be > 0.0"),
    ("kept_layers", (0, 1), "kept_layers has 2 entries for 3 layers"),
])
def test_model_metrics_validation(field, value, message):
    good = dict(num_layers=3, kept_layers=(0, 5, 9), test_accuracy=0.8, test_macro_f1=0.7, test_loss=0.5,
                val_accuracy=0.9, val_macro_f1=0.6, val_loss=0.4, params_total=1000, params_encoder=600,
                safetensors_bytes=4100, latency_ms=2.5, latency_batch_size=32, latency_seq_length=32)
    ModelMetrics(**good)
    with pytest.raises(ValueError, match=message):
        ModelMetrics(**{**good, field: value})


def test_latency_config_validation():
    with pytest.raises(ConfigError, match="LatencyConfig.repeats must be >= 1, got 0"):
        LatencyConfig(repeats=0)


def test_max_accuracy_over_depth():
    curve = {0: 0.95, 1: 0.90, 2: 0.93, 3: 0.93, 4: 0.80}
    assert max_accuracy_over_depth(curve) == BestOverDepth(accuracy=0.93, depth=3)  # tie -> deeper
    assert max_accuracy_over_depth([(1, 0.5), (2, 0.7), (3, 0.6)]) == BestOverDepth(0.7, 2)
    assert max_accuracy_over_depth({0: 0.2, 5: 0.1}).depth == 5  # the unpruned model never counts
    with pytest.raises(ValueError, match="no pruned model"):
        max_accuracy_over_depth({0: 0.9})
    with pytest.raises(ValueError, match="depths must be >= 0"):
        max_accuracy_over_depth({-1: 0.9, 1: 0.5})


def test_accuracy_to_size_ratio():
    assert accuracy_to_size_ratio(0.9, 50, 0.9, 100) == pytest.approx(2.0)
    assert accuracy_to_size_ratio(0.45, 50, 0.9, 100) == pytest.approx(1.0)
    assert accuracy_to_size_ratio(0.8, 100, 0.8, 100) == pytest.approx(1.0)
    assert accuracy_to_size_ratio(0.72, 75, 0.9, 100) == pytest.approx((0.72 / 0.9) / 0.75)
    with pytest.raises(ConfigError, match="teacher_accuracy must be > 0.0"):
        accuracy_to_size_ratio(0.5, 10, 0.0, 100)
    with pytest.raises(ConfigError, match="params must be >= 1"):
        accuracy_to_size_ratio(0.5, 0, 0.9, 100)
