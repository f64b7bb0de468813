"""The twelve layer-importance signals: hand-built known answers on the tiny BERT, the registry, ranking."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from core.config import ConfigError
from core.data.batches import batches
from core.models.registry import encoder_layers
from core.signals import (
    BASELINES,
    FAMILIES,
    SIGNAL_KEYS,
    SIGNALS,
    STRATEGIES,
    SignalInfo,
    compute_signals,
    rank_layers,
    signals_markdown,
)
from core.signals.functions import FUNCTIONS, histogram_entropy, linear_cka, pooled_label_mi

ACTIVATION = ("inhibition", "intensity", "energy")
GRADIENT = ("gradient_norm", "gradient_fisher", "taylor")
WEIGHT = ("weight_magnitude", "weight_entropy")
ALL_COLUMNS = SIGNAL_KEYS + ("block_influence",)


@pytest.fixture(scope="module")
def calib(keyword_batches):
    """32 calibration examples of the keyword task in two batches of 16 (padding to each batch's longest)."""
    data = {k: v[:32] for k, v in keyword_batches["train"].items()}
    return list(batches(data, 16))


def _real_lengths(calib) -> torch.Tensor:
    return torch.cat([b["attention_mask"].sum(dim=1) for b in calib]).double()


def _patch_output(monkeypatch, layer, transform) -> None:
    """Replace a layer's output by ``transform(layer_input, layer_output)``; the original still runs, so the
    model still records the layer's attention map."""
    original = layer.forward

    def forward(hidden_states, *args, **kwargs):
        return transform(hidden_states, original(hidden_states, *args, **kwargs))

    monkeypatch.setattr(layer, "forward", forward)


def _jitter_(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every bias and LayerNorm a random value (the fresh tiny BERT has all biases 0 and all LayerNorms
    identity), so a zeroed layer's successors see a non-degenerate input."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.2 * torch.randn(p.shape, generator=gen))


def _zero_(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()


# ----------------------------------------------------------------------------------------------- registry
def test_registry_has_the_twelve_signals_in_family_order_with_complete_metadata():
    assert SIGNAL_KEYS == ("inhibition", "intensity", "energy", "task_relevance_mi", "redundancy_mi",
                           "gradient_norm", "gradient_fisher", "taylor", "weight_magnitude", "weight_entropy",
                           "attention_entropy", "attention_weight")
    assert list(FAMILIES) == ["activation", "mutual_information", "gradient", "weight", "attention"]
    assert [SIGNALS[k].family for k in SIGNAL_KEYS] == sorted(
        (SIGNALS[k].family for k in SIGNAL_KEYS), key=list(FAMILIES).index)
    paper_named = {k for k, s in SIGNALS.items() if s.origin == "paper"}
    assert {SIGNALS[k].display_name for k in paper_named} == {
        "Inhibition", "Intensity", "Energy", "Task-Relevance-MI", "Gradient-Fisher", "Weight-Entropy",
        "Attention-Weight"}
    for info in list(SIGNALS.values()) + list(BASELINES.values()):
        assert info.display_name and info.formula_latex and len(info.intuition) > 60, info.key
        assert info.direction in ("lowest", "highest") and info.needs <= {"weights", "forward", "backward",
                                                                          "labels"}
        assert info.score_column == f"score__{info.key}"
    for key in paper_named:  # the paper gives names, not formulas: every one says so
        assert "our definition" in SIGNALS[key].note
    assert SIGNALS["attention_entropy"].direction == "highest" and SIGNALS["redundancy_mi"].direction == "highest"
    assert set(BASELINES) == {"random", "top_down", "block_influence"}
    assert set(FUNCTIONS) == set(SIGNAL_KEYS) | {"block_influence"}
    for key, spec in FUNCTIONS.items():  # the data a signal reads matches what its entry says it needs
        needs = (SIGNALS.get(key) or BASELINES[key]).needs
        assert ("gradient" in spec.parts) == ("backward" in needs), key
        assert bool(spec.parts) == ("forward" in needs), key


def test_signal_info_rejects_bad_metadata_naming_the_field():
    good = dict(key="x", display_name="X", family="weight", formula_latex=r"x^2", direction="lowest",
                intuition="words", needs=frozenset({"weights"}), origin="our definition")
    SignalInfo(**good)
    with pytest.raises(ConfigError, match="direction"):
        SignalInfo(**{**good, "direction": "smallest"})
    with pytest.raises(ConfigError, match="needs"):
        SignalInfo(**{**good, "needs": frozenset({"gpu"})})
    with pytest.raises(ConfigError, match="family"):
        SignalInfo(**{**good, "family": "vibes"})
    with pytest.raises(ConfigError, match="formula_latex"):
        SignalInfo(**{**good, "formula_latex": r"\lvert x | "})


def test_signals_markdown_lists_every_entry_once():
    md = signals_markdown()
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(lines) == 1 + len(SIGNALS) + len(BASELINES)
    for info in list(SIGNALS.values()) + list(BASELINES.values()):
        assert sum(f"`{info.key}`" in line for line in lines) == 1
        assert all(line.count(" | ") == 6 for line in lines)  # no stray pipe splits a row


# ------------------------------------------------------------------------------------- estimators by hand
def test_linear_cka_is_one_for_identity_and_invariant_to_rotation_and_scale():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 6))
    x -= x.mean(0)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    y = 3.0 * x @ q
    assert linear_cka(x.T @ x, y.T @ y, y.T @ x) == pytest.approx(1.0, abs=1e-12)
    z = rng.standard_normal((200, 6))
    z -= z.mean(0)
    assert linear_cka(x.T @ x, z.T @ z, z.T @ x) < 0.1
    assert linear_cka(x.T @ x, np.zeros((6, 6)), np.zeros((6, 6))) == 0.0


def test_histogram_entropy_known_values():
    assert histogram_entropy(torch.zeros(1000)) == 0.0
    uniform = torch.linspace(-1, 1, 256 * 40)  # exactly 40 values per bin
    assert histogram_entropy(uniform) == pytest.approx(math.log(256), rel=1e-3)
    two_values = torch.tensor([-1.0, 1.0]).repeat(500)
    assert histogram_entropy(two_values) == pytest.approx(math.log(2), rel=1e-9)


def test_pooled_mi_separates_an_encoded_label_from_noise():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    noise = rng.standard_normal((300, 16))
    encoded = noise.copy()
    encoded[:, 3] += 6.0 * labels
    mi_encoded = pooled_label_mi(encoded, labels, 4, seed=0)
    mi_noise = pooled_label_mi(noise, labels, 4, seed=0)
    assert mi_encoded > 0.5 and mi_noise < 0.1
    assert pooled_label_mi(noise, np.zeros(300, dtype=int), 4, seed=0) == 0.0  # one class: no information
    assert pooled_label_mi(encoded, labels, 4, seed=0) == mi_encoded  # seeded: reproducible


# ---------------------------------------------------------------------------------- the pass, by hand
def test_zeroed_layer_known_answers(tiny_model, calib):
    k = 5
    _jitter_(tiny_model)
    _zero_(encoder_layers(tiny_model)[k])
    table = compute_signals(tiny_model, calib)
    row = table.loc[k]
    for key in ACTIVATION + WEIGHT + ("taylor", "task_relevance_mi", "redundancy_mi"):
        assert row[key] == 0.0, key  # zero output, zero weights: exactly zero
    assert row["block_influence"] == 1.0  # cosine with a zero vector counts as 0
    for key in ("intensity", "energy", "weight_magnitude", "weight_entropy"):
        assert rank_layers(table, key)[0] == k, key
        assert (table.drop(index=k)[key] > 0).all(), key
    # zero Q and K weights: every real query attends uniformly over its n_i real keys
    n = _real_lengths(calib)
    assert row["attention_entropy"] == pytest.approx(float((n * n.log()).sum() / n.sum()), rel=1e-5)
    assert row["attention_weight"] == pytest.approx(float(len(n) / n.sum()), rel=1e-5)
    # the layer's output is constant, so no gradient reaches any layer below it
    for key in GRADIENT:
        assert (table.loc[:k - 1, key] == 0.0).all(), key
        assert (table.loc[k + 1:, key] > 0).all(), key


def test_uniform_attention_is_pruned_first_by_both_attention_signals(tiny_model, calib):
    j = 7
    attention = encoder_layers(tiny_model)[j].attention.self
    _zero_(attention.query)
    _zero_(attention.key)
    table = compute_signals(tiny_model, calib, signals=("attention_entropy", "attention_weight"))
    n = _real_lengths(calib)
    assert table.loc[j, "attention_entropy"] == pytest.approx(float((n * n.log()).sum() / n.sum()), rel=1e-5)
    assert table.loc[j, "attention_weight"] == pytest.approx(float(len(n) / n.sum()), rel=1e-5)
    assert rank_layers(table, "attention_entropy")[0] == j
    assert rank_layers(table, "attention_weight")[0] == j
    assert table["score__attention_entropy"].equals(-table["attention_entropy"])


def test_identity_layer_is_fully_redundant(tiny_model, calib, monkeypatch):
    j = 4
    _patch_output(monkeypatch, encoder_layers(tiny_model)[j], lambda x, out: x)
    table = compute_signals(tiny_model, calib)
    assert table.loc[j, "redundancy_mi"] == pytest.approx(1.0, abs=1e-6)
    assert table.loc[j, "block_influence"] == pytest.approx(0.0, abs=1e-6)
    assert rank_layers(table, "redundancy_mi")[0] == j
    assert rank_layers(table, "block_influence")[0] == j
    for key in ACTIVATION:  # the output is the input: the same activations as the layer below
        assert table.loc[j, key] == pytest.approx(table.loc[j - 1, key], rel=1e-6), key


def test_constant_output_layer_activation_values(tiny_model, calib):
    j, c = 2, -0.5
    norm = encoder_layers(tiny_model)[j].output.LayerNorm
    with torch.no_grad():
        norm.weight.zero_()
        norm.bias.fill_(c)  # every token's output is the constant vector c
    table = compute_signals(tiny_model, calib, signals=ACTIVATION)
    d = norm.weight.numel()
    n = _real_lengths(calib)
    assert table.loc[j, "inhibition"] == pytest.approx(c, rel=1e-6)
    assert table.loc[j, "intensity"] == pytest.approx(abs(c) * math.sqrt(d), rel=1e-6)
    assert table.loc[j, "energy"] == pytest.approx(d * c * c * float(n.sum()) / len(n), rel=1e-6)
    assert rank_layers(table, "inhibition")[0] == j  # the most inhibited layer goes first


def test_mi_sees_a_label_encoded_in_one_layer_and_not_noise(tiny_model, keyword_batches, monkeypatch):
    j = 6
    data = {k: v[:160] for k, v in keyword_batches["train"].items()}
    data["labels"] = torch.randint(0, 2, (160,), generator=torch.Generator().manual_seed(1))  # pure noise
    calib = list(batches(data, 32))
    current: dict[str, torch.Tensor] = {}
    direction = torch.randn(32, generator=torch.Generator().manual_seed(2))

    def encode_label(x, out):  # layer j writes the (otherwise unpredictable) label into every token
        sign = current["labels"].float().mul(2).sub(1)[:, None, None]
        return out + 3.0 * sign * direction

    def feeding():
        for batch in calib:
            current["labels"] = batch["labels"]
            yield batch

    _patch_output(monkeypatch, encoder_layers(tiny_model)[j], encode_label)
    mi = compute_signals(tiny_model, feeding(), signals=("task_relevance_mi",))["task_relevance_mi"]
    assert mi[j] > 0.5  # ln 2 = 0.69 when perfectly encoded
    assert mi[:j].max() < 0.15  # layers below never see the label


def test_heavy_padding_changes_nothing(tiny_model, calib):
    padded = []
    for b in calib:
        extra = 64 - b["input_ids"].shape[1]
        padded.append({"input_ids": torch.nn.functional.pad(b["input_ids"], (0, extra), value=0),
                       "attention_mask": torch.nn.functional.pad(b["attention_mask"], (0, extra), value=0),
                       "labels": b["labels"]})
    assert float(padded[0]["attention_mask"].float().mean()) < 0.4  # most positions are padding
    tight = compute_signals(tiny_model, calib)
    loose = compute_signals(tiny_model, padded)
    for key in ALL_COLUMNS:
        np.testing.assert_allclose(loose[key], tight[key], rtol=1e-4, atol=1e-7, err_msg=key)


def test_gradient_signals_match_plain_autograd(tiny_model, calib):
    layers = encoder_layers(tiny_model)
    tiny_model.eval()
    n_total = sum(int(b["labels"].shape[0]) for b in calib)
    mean_grad = [[torch.zeros_like(p) for p in layer.parameters()] for layer in layers]
    for b in calib:
        loss = torch.nn.functional.cross_entropy(
            tiny_model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits, b["labels"])
        grads = torch.autograd.grad(loss * len(b["labels"]) / n_total, list(layers.parameters()))
        flat = iter(grads)
        for acc in mean_grad:
            for a in acc:
                a.add_(next(flat))
    table = compute_signals(tiny_model, calib, signals=GRADIENT)
    norm = [math.sqrt(sum(float(g.square().sum()) for g in acc)) for acc in mean_grad]
    dot = [abs(sum(float((g * p.detach()).sum()) for g, p in zip(acc, layer.parameters())))
           for acc, layer in zip(mean_grad, layers)]
    np.testing.assert_allclose(table["gradient_norm"], norm, rtol=1e-4)
    np.testing.assert_allclose(table["taylor"], dot, rtol=1e-3, atol=1e-12)


def test_fisher_with_single_example_batches_is_the_exact_empirical_fisher(tiny_model, calib):
    layers = encoder_layers(tiny_model)
    singles = [{k: v[i:i + 1] for k, v in calib[0].items()} for i in range(4)]
    tiny_model.eval()
    exact = np.zeros(len(layers))
    for b in singles:
        loss = torch.nn.functional.cross_entropy(
            tiny_model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits, b["labels"])
        grads = iter(torch.autograd.grad(loss, list(layers.parameters())))
        for i, layer in enumerate(layers):
            exact[i] += sum(float(next(grads).square().sum()) for _ in layer.parameters())
    table = compute_signals(tiny_model, singles, signals=("gradient_fisher",))
    np.testing.assert_allclose(table["gradient_fisher"], exact / len(singles), rtol=1e-4)


# ------------------------------------------------------------------------------------- model state, sizes
def test_pass_leaves_grads_mode_and_flags_as_found(tiny_model, calib):
    tiny_model.train()
    tiny_model.classifier.eval()
    frozen = encoder_layers(tiny_model)[3].output.dense.weight
    frozen.requires_grad_(False)
    marker = torch.full_like(tiny_model.classifier.weight, 7.0)
    tiny_model.classifier.weight.grad = marker.clone()
    compute_signals(tiny_model, calib)
    assert tiny_model.training and not tiny_model.classifier.training
    assert not frozen.requires_grad
    assert torch.equal(tiny_model.classifier.weight.grad, marker)
    assert all(p.grad is None for n, p in tiny_model.named_parameters() if not n.startswith("classifier"))


def test_sdpa_model_gets_attention_signals_and_is_given_back_as_sdpa(calib):
    from transformers import AutoModelForSequenceClassification

    from core.models.tiny import ensure_tiny_model

    model = AutoModelForSequenceClassification.from_pretrained(str(ensure_tiny_model()), num_labels=2,
                                                               attn_implementation="sdpa")
    table = compute_signals(model, calib, signals=("attention_weight",))
    assert ((table["attention_weight"] > 0) & (table["attention_weight"] <= 1)).all()
    assert model.config._attn_implementation == "sdpa"


def _prune(model, keep: list[int]) -> None:
    """What layer removal does: delete the other layers, record the kept originals in the config."""
    layers = encoder_layers(model)
    for i in sorted(set(range(len(layers))) - set(keep), reverse=True):
        del layers[i]
    model.config.kept_layers = list(keep)
    model.config.num_hidden_layers = len(keep)


@pytest.mark.parametrize("keep", [list(range(12)), [0, 2, 3, 5, 8, 10, 11], [9]])
def test_compute_signals_on_12_7_and_1_layers(tiny_model, calib, keep):
    _prune(tiny_model, keep)
    table = compute_signals(tiny_model, calib)
    assert list(table["layer"]) == list(range(len(keep)))
    assert list(table["original_layer"]) == keep
    values = table[list(ALL_COLUMNS) + [SIGNALS.get(k, BASELINES.get(k)).score_column for k in ALL_COLUMNS]]
    assert np.isfinite(values.to_numpy(dtype=float)).all()
    for strategy in STRATEGIES:
        assert sorted(rank_layers(table, strategy)) == sorted(keep), strategy


def test_weight_signals_of_kept_layers_do_not_change_when_others_are_pruned(calib):
    from core.models.registry import load_classifier

    full = load_classifier("tiny-bert", num_labels=2, seed=0)
    before = compute_signals(full, [], signals=WEIGHT)  # weight signals need no data
    keep = [0, 2, 3, 5, 8, 10, 11]
    _prune(full, keep)
    after = compute_signals(full, calib, signals=WEIGHT + ("energy",))
    for key in WEIGHT:
        assert after[key].tolist() == before.loc[keep, key].tolist(), key


def test_deterministic_under_a_seed_and_rankings(tiny_model, calib):
    first = compute_signals(tiny_model, calib, seed=3)
    second = compute_signals(tiny_model, calib, seed=3)
    pd.testing.assert_frame_equal(first, second)
    assert rank_layers(first, "random", seed=1) == rank_layers(first, "random", seed=1)
    assert rank_layers(first, "random", seed=1) != rank_layers(first, "random", seed=2)
    assert rank_layers(first, "top_down") == list(range(11, -1, -1))
    for key in ALL_COLUMNS:  # lower score first: the first layer has the lowest score
        order = rank_layers(first, key)
        scores = first.set_index("original_layer")[f"score__{key}"]
        assert scores[order[0]] == scores.min() and scores[order[-1]] == scores.max(), key
    with pytest.raises(KeyError, match="choose one of"):
        rank_layers(first, "loudness")


def test_missing_labels_is_a_clear_error(tiny_model, calib):
    unlabeled = [{k: v for k, v in b.items() if k != "labels"} for b in calib]
    with pytest.raises(ValueError, match="labels"):
        compute_signals(tiny_model, unlabeled)
    table = compute_signals(tiny_model, unlabeled, signals=ACTIVATION)  # label-free signals still work
    assert np.isfinite(table[list(ACTIVATION)].to_numpy()).all()


# ------------------------------------------------------------------------------------------ real model
@pytest.mark.integration
def test_all_signals_finite_on_embedded_e5(e5_dir):
    from benchmarks.signals import calibration_frame
    from core.data.batches import encode
    from core.models.registry import load_classifier, load_tokenizer

    model = load_classifier("e5-small", num_labels=2, seed=0)
    data = encode(load_tokenizer("e5-small"), calibration_frame(24, seed=0), 32)
    table = compute_signals(model, batches(data, 12))
    assert len(table) == 12
    assert np.isfinite(table[list(ALL_COLUMNS)].to_numpy(dtype=float)).all()
    assert (table["weight_magnitude"] > 0).all() and (table["attention_entropy"] > 0).all()
