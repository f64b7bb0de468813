"""FFN merging ties the window to the CHOSEN reference layer, for every reference (issue 15, bug 4).

The window's layers hold the same FFN up to a permutation of its neurons (and their own output biases), and
their activations are the same permuted columns. Alignment then recovers every permutation exactly, so the
merged FFN must be the reference layer's own weights in the reference layer's neuron order, with the mean
output bias, shared by every layer of the window. Tying to any other layer leaves another neuron order.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.merging.ffn import ffn_linears, merge_ffns
from core.models.registry import encoder_layers, load_classifier

WINDOW = (3, 4, 5)
REFERENCE_POSITION = {"first": 3, "middle": 4, "last": 5}


@pytest.fixture(scope="module")
def permuted():
    """A tiny BERT whose window layers are neuron-permuted copies of one FFN, and matching activations."""
    model = load_classifier("tiny-bert", num_labels=2, seed=0).eval()
    gen = torch.Generator().manual_seed(7)
    first, second = ffn_linears(encoder_layers(model)[WINDOW[0]])
    width, hidden = first.out_features, first.in_features
    w1, b1 = torch.randn(width, hidden, generator=gen), torch.randn(width, generator=gen)
    w2 = torch.randn(hidden, width, generator=gen)
    base_acts = torch.randn(400, width, generator=gen)
    perms, acts, b2 = {}, {}, {}
    for p in WINDOW:
        perm = torch.randperm(width, generator=gen)  # neuron j of layer p is base neuron perm[j]
        lin1, lin2 = ffn_linears(encoder_layers(model)[p])
        b2[p] = torch.randn(hidden, generator=gen)
        with torch.no_grad():
            lin1.weight.copy_(w1[perm])
            lin1.bias.copy_(b1[perm])
            lin2.weight.copy_(w2[:, perm])
            lin2.bias.copy_(b2[p])
        perms[p], acts[p] = perm, base_acts[:, perm]
    assert len({tuple(p.tolist()) for p in perms.values()}) == len(WINDOW)  # the neuron orders all differ
    return model, acts, b2


@pytest.mark.parametrize("reference", ["first", "middle", "last"])
def test_merged_ffn_is_the_reference_layers_in_its_neuron_order(permuted, reference):
    model, acts, b2 = permuted
    ref = REFERENCE_POSITION[reference]
    ref_first, ref_second = ffn_linears(encoder_layers(model)[ref])
    merged, table = merge_ffns(model, WINDOW, acts, reference=reference)
    assert set(table["reference"]) == {ref}
    assert table.set_index("position").loc[ref, "moved"] == 0.0
    assert (table["corr_aligned"] > 0.999).all()  # every permutation recovered
    layers = encoder_layers(merged)
    shared = layers[ref]
    for p in WINDOW:
        first, second = ffn_linears(layers[p])
        assert first is ffn_linears(shared)[0] and second is ffn_linears(shared)[1], p  # tied to the reference
        torch.testing.assert_close(first.weight, ref_first.weight)
        torch.testing.assert_close(first.bias, ref_first.bias)
        torch.testing.assert_close(second.weight, ref_second.weight)
        torch.testing.assert_close(second.bias, torch.stack([b2[q] for q in WINDOW]).mean(dim=0))
    # the layers outside the window are untouched, and the input model too
    for p in set(range(len(layers))) - set(WINDOW):
        torch.testing.assert_close(ffn_linears(layers[p])[0].weight, ffn_linears(encoder_layers(model)[p])[0].weight)
    assert not np.array_equal(ffn_linears(encoder_layers(model)[WINDOW[0]])[0].weight.detach().numpy(),
                              ffn_linears(encoder_layers(model)[WINDOW[-1]])[0].weight.detach().numpy())


def test_merged_model_computes_the_reference_ffn(permuted):
    """End to end: with one output bias for all (the mean), every window layer's FFN is the reference's
    function; for permuted copies that is each original layer's function too (same neurons, new order)."""
    model, acts, _ = permuted
    merged, _ = merge_ffns(model, WINDOW, acts, reference="middle")
    x = torch.randn(5, ffn_linears(encoder_layers(model)[0])[0].in_features, generator=torch.Generator().manual_seed(1))
    mean_b2 = ffn_linears(encoder_layers(merged)[WINDOW[1]])[1].bias
    for p in WINDOW:
        before = encoder_layers(model)[p]
        after = encoder_layers(merged)[p]
        with torch.no_grad():
            want = before.output.dense(before.intermediate(x)) - before.output.dense.bias + mean_b2
            got = after.output.dense(after.intermediate(x))
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
