"""The contrast model: a tiny fixture whose oracle is NOT flat, so a good pruning choice can be told from a
bad one (issue 15). Harmless layers are exact identities, critical ones carry the task."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.data.batches import batches, take
from core.fusion import ranker_quality
from core.models.registry import encoder_layers
from core.models.surgery import remove_layers
from core.pruning.oracle import compute_oracle
from core.signals import compute_signals, rank_layers
from core.train import evaluate
from tests.contrast import contrast_model

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def oracle(contrast):
    return compute_oracle(contrast.model, contrast.task.encoded["val"], device=CPU, precision="fp32")


def test_groups_partition_the_layers(contrast):
    model, tokenizer, task, harmless, critical = contrast
    assert sorted(harmless + critical) == list(range(len(encoder_layers(model))))
    assert len(critical) == 3 and len(harmless) == 9
    assert task.num_labels == 3 and set(task.encoded) == {"train", "val", "test"}
    assert tokenizer is task.tokenizer


def test_oracle_separates_harmless_from_critical_layers(contrast, oracle):
    base = oracle.attrs["baseline"]["accuracy"]
    # the model learnt the task, far above chance (1/3): every build of seeds 0-4 x fp32/bf16 scored >= 0.667 on
    # validation (>= 0.95 held on 6 of 10 only: a seed may miss one class), scripts/archive/contrast_hold_rates.py
    assert base >= 0.6
    acc = oracle.set_index("original_layer")["accuracy"]
    assert all(acc[i] == pytest.approx(base, abs=1e-9) for i in contrast.harmless_layers)
    assert all(acc[i] <= 0.4 for i in contrast.critical_layers)  # chance is 1/3
    # the oracle is exact, not an estimate: the pruned model itself scores the same
    i, j = contrast.harmless_layers[0], contrast.critical_layers[0]
    val = contrast.task.encoded["val"]
    for layer in (i, j):
        pruned = remove_layers(contrast.model, [layer])
        assert evaluate(pruned, val, device=CPU, precision="fp32")["accuracy"] == pytest.approx(acc[layer])


def test_ranking_by_the_truth_beats_ranking_against_it(contrast, oracle):
    acc = oracle["accuracy"].to_numpy()
    truth, against = acc, -acc  # higher score = better to remove
    good, bad = ranker_quality(truth, acc), ranker_quality(against, acc)
    assert good["top1_hit"] and not bad["top1_hit"]
    regret = {name: acc.max() - acc[q["chosen"]] for name, q in (("truth", good), ("against", bad))}
    assert regret["truth"] == 0.0 and regret["against"] >= 0.5
    assert good["spearman"] > 0.5 and bad["spearman"] < -0.5
    # greedy removal by each ranking: the truth's three first removals keep full accuracy, the other's ruin it
    val = contrast.task.encoded["val"]
    order = oracle["original_layer"].to_numpy()
    kept_good = remove_layers(contrast.model, [int(i) for i in order[np.argsort(-truth, kind="stable")][:3]])
    kept_bad = remove_layers(contrast.model, [int(i) for i in order[np.argsort(-against, kind="stable")][:3]])
    assert evaluate(kept_good, val, device=CPU, precision="fp32")["accuracy"] >= 0.95
    assert evaluate(kept_bad, val, device=CPU, precision="fp32")["accuracy"] <= 0.4


def test_signals_differ_between_the_groups(contrast, oracle):
    calib = list(batches(take(contrast.task.encoded["train"], 64), 32))
    table = compute_signals(contrast.model, calib, device=CPU).set_index("original_layer")
    harmless, critical = list(contrast.harmless_layers), list(contrast.critical_layers)
    # an identity layer does not move its input: zero block influence, a changed layer moves it
    assert table.loc[harmless, "block_influence"].abs().max() < 1e-5
    assert table.loc[critical, "block_influence"].min() > 0.1
    # its weights are the zeroed projections: lower weight magnitude than any layer doing work
    assert table.loc[harmless, "weight_magnitude"].max() < table.loc[critical, "weight_magnitude"].min()
    # so block influence ranks every harmless layer before every critical one, and agrees with the oracle
    order = rank_layers(table.reset_index(), "block_influence")
    assert set(order[:len(harmless)]) == set(harmless)
    acc = oracle.set_index("original_layer")["accuracy"]
    quality = ranker_quality(-table.loc[acc.index, "score__block_influence"].to_numpy(), acc.to_numpy())
    assert quality["top1_hit"] and quality["spearman"] > 0.5  # (ranker_quality: higher = better to remove)

def test_deterministic_under_the_seed():
    a, b = contrast_model(seed=3, epochs=1.0, rows=120), contrast_model(seed=3, epochs=1.0, rows=120)
    assert all(torch.equal(p, q) for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    assert torch.equal(a.task.encoded["val"]["input_ids"], b.task.encoded["val"]["input_ids"])


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="negations"):
        contrast_model(negations=(5,))
    with pytest.raises(ValueError, match="negations"):
        contrast_model(trained=6, negations=(3, 9))
