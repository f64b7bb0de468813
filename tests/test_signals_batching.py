"""The signals do not depend on how the calibration rows are cut into batches (issue 15, bug 1).

Every statistic of the instrumented pass is a sum over real tokens or examples, merged across batches
(covariances by Chan's parallel update), so the same rows give the same signals as one batch or as several
of unequal sizes. The one exception is Gradient-Fisher, the empirical Fisher of *batch* gradients.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from core.data.batches import batches
from core.signals import DEFAULT_COLUMNS, compute_signals

#: signals that are functions of the rows alone, not of their batching
BATCH_INVARIANT = tuple(c for c in DEFAULT_COLUMNS if c != "gradient_fisher")


@pytest.fixture(scope="module")
def model():
    """The tiny random BERT with random biases and LayerNorms (the fresh one has them all 0/identity), so
    every layer's input and output statistics are non-degenerate and differ from batch to batch."""
    from core.models.registry import load_classifier

    model = load_classifier("tiny-bert", num_labels=2, seed=0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return model.eval()


@pytest.fixture(scope="module")
def rows(keyword_batches, tiny_tokenizer):
    """48 rows of two kinds (keyword sentences, then short colour lists), so batches cut from them have very
    different token means: the cross-batch terms of the covariance merge matter."""
    from core.data.batches import encode

    colours = pd.DataFrame({"text": [" ".join(["red", "blue", "green", "red"][: 1 + i % 4]) for i in range(24)],
                            "label": [i % 2 for i in range(24)]})
    other = encode(tiny_tokenizer, colours, 32)
    first = {k: v[:24] for k, v in keyword_batches["train"].items()}
    width = max(first["input_ids"].shape[1], other["input_ids"].shape[1])
    pad = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1])) if t.ndim == 2 else t  # noqa: E731
    data = {k: torch.cat([pad(first[k]), pad(other[k])]) for k in first}
    assert len(set(data["attention_mask"].sum(dim=1).tolist())) > 3  # rows of many lengths: padding differs
    return data


def _cut(data, sizes):
    """``data`` as consecutive batches of the given sizes (each trimmed to its own longest row)."""
    out, start = [], 0
    for size in sizes:
        part = {k: v[start:start + size] for k, v in data.items()}
        out += list(batches(part, size))
        start += size
    assert start == data["input_ids"].shape[0]
    return out


@pytest.mark.parametrize("sizes", [(24, 24), (16, 16, 16), (30, 5, 13), (1, 40, 7)],
                         ids=["by_kind", "equal", "unequal", "tiny_first"])
def test_one_batch_and_several_batches_give_the_same_signals(model, rows, sizes):
    whole = compute_signals(model, _cut(rows, (48,)), device="cpu", seed=0)
    split = compute_signals(model, _cut(rows, sizes), device="cpu", seed=0)
    assert whole.attrs["n_tokens"] == split.attrs["n_tokens"] and whole.attrs["n_examples"] == 48
    for key in BATCH_INVARIANT:
        a, b = whole[key].to_numpy(), split[key].to_numpy()
        assert np.isfinite(a).all(), key
        # float32 forwards of differently padded batches: agreement to ~1e-5 of the column's scale
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=3e-5 * np.abs(a).max() + 1e-12, err_msg=key)


def test_redundancy_is_not_trivially_constant(model, rows):
    """The check above must be able to fail: Redundancy-MI differs between layers and is below 1."""
    table = compute_signals(model, _cut(rows, (48,)), device="cpu", signals=["redundancy_mi"])
    values = table["redundancy_mi"].to_numpy()
    assert np.ptp(values) > 1e-3 and values.max() < 0.999


def test_gradient_fisher_does_depend_on_the_batching(model, rows):
    """The documented exception: the empirical Fisher of batch gradients changes with the batches."""
    whole = compute_signals(model, _cut(rows, (48,)), device="cpu", signals=["gradient_fisher"])
    split = compute_signals(model, _cut(rows, (16, 16, 16)), device="cpu", signals=["gradient_fisher"])
    assert not np.allclose(whole["gradient_fisher"], split["gradient_fisher"], rtol=1e-3)
