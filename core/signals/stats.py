"""Running statistics of one instrumented pass: everything the twelve signals read, accumulated per batch.

A batch contributes its hidden states (input and output of every layer), its attention probabilities and,
when a gradient signal is asked for, the gradient of the batch's mean loss w.r.t. each layer's parameters.
Only sums are kept (plus the pooled sentence vectors the MI estimate needs), so memory does not grow with
sequence length and every signal is a cheap function of these sums at the end
(:mod:`core.signals.functions`). Padding is masked out everywhere: only real tokens enter token sums,
Gram matrices and cosines; attention statistics run over real query tokens (padded keys already get
probability 0 from the model's attention mask).

Sums are kept in float64. Input/output covariances for CKA are merged batch by batch with Chan's
parallel update, so centring never subtracts two large nearly equal numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

#: the parts of the pass a signal can read; a pass collects only the parts its signals need
PARTS = ("activation", "pooled", "covariance", "cosine", "attention", "gradient")


@dataclass
class PassStats:
    """Accumulated statistics over the calibration batches for ``n_layers`` layers."""

    layers: list[nn.Module]
    parts: frozenset[str]
    n_examples: int = 0
    n_tokens: int = 0
    # activation: sum of all output entries, of token L2 norms and of squared token norms
    act_sum: torch.Tensor | None = None
    norm_sum: torch.Tensor | None = None
    sq_norm_sum: torch.Tensor | None = None
    hidden_size: int = 0
    # pooled: masked-mean sentence vector of every layer output, (L, N, H) after stacking
    pooled: list[torch.Tensor] = field(default_factory=list)
    labels: list[torch.Tensor] = field(default_factory=list)
    # covariance: means (L+1, H), centred second moments (L+1, H, H), centred cross moments (L, H, H)
    mean: torch.Tensor | None = None
    m2: torch.Tensor | None = None
    cross: torch.Tensor | None = None
    # cosine: sum over real tokens of 1 - cos(layer input, layer output)
    cos_dist_sum: torch.Tensor | None = None
    # attention: sums over heads and real queries of entropy and max probability, and their count
    att_entropy_sum: torch.Tensor | None = None
    att_max_sum: torch.Tensor | None = None
    att_count: torch.Tensor | None = None
    # gradient: sum_b B_b * grad_b (per parameter of each layer) and sum_b B_b^2 ||grad_b||^2
    grad_sum: list[list[torch.Tensor]] | None = None
    fisher_sum: torch.Tensor | None = None

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def params(self) -> list[list[nn.Parameter]]:
        """Each layer's parameters, in ``parameters()`` order (the order gradients come in)."""
        return [list(layer.parameters()) for layer in self.layers]


def _add(acc: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
    value = value.detach().to(torch.float64)
    return value.clone() if acc is None else acc.add_(value)


def update_hidden(stats: PassStats, hidden: torch.Tensor, mask: torch.Tensor) -> None:
    """Fold one batch of hidden states ``(L+1, B, T, H)`` (index 0 = embeddings) into ``stats``."""
    hidden = hidden.detach().float()
    real = mask.bool()
    tokens = hidden[:, real]  # (L+1, n, H): real tokens only
    out = tokens[1:]
    if "activation" in stats.parts:
        norms = out.norm(dim=-1)
        stats.act_sum = _add(stats.act_sum, out.sum(dim=(1, 2)))
        stats.norm_sum = _add(stats.norm_sum, norms.sum(dim=1))
        stats.sq_norm_sum = _add(stats.sq_norm_sum, norms.square().sum(dim=1))
        stats.hidden_size = int(hidden.shape[-1])
    if "pooled" in stats.parts:
        weights = mask.to(hidden.dtype)
        pooled = (hidden[1:] * weights[None, :, :, None]).sum(dim=2) / weights.sum(dim=1)[None, :, None]
        stats.pooled.append(pooled.cpu())
    if "cosine" in stats.parts:
        cos = torch.nn.functional.cosine_similarity(tokens[:-1], out, dim=-1, eps=1e-12)
        stats.cos_dist_sum = _add(stats.cos_dist_sum, (1.0 - cos).sum(dim=1))
    if "covariance" in stats.parts:
        _merge_covariance(stats, tokens)


def _merge_covariance(stats: PassStats, tokens: torch.Tensor) -> None:
    """Chan et al.'s parallel update of means, covariances and input/output cross-covariances."""
    m = tokens.shape[1]
    mean_b = tokens.mean(dim=1)  # (L+1, H)
    centred = tokens - mean_b[:, None, :]
    m2_b = torch.bmm(centred.transpose(1, 2), centred).double()  # (L+1, H, H)
    cross_b = torch.bmm(centred[1:].transpose(1, 2), centred[:-1]).double()  # (L, H, H): Y^T X
    mean_b = mean_b.double()
    n = stats.n_tokens
    if stats.mean is None or stats.m2 is None or stats.cross is None:  # the three are set together
        stats.mean, stats.m2, stats.cross = mean_b, m2_b, cross_b
        return
    delta = mean_b - stats.mean
    factor = n * m / (n + m)
    stats.m2 += m2_b + factor * delta[:, :, None] * delta[:, None, :]
    stats.cross += cross_b + factor * delta[1:, :, None] * delta[:-1, None, :]
    stats.mean += delta * (m / (n + m))


def update_attention(stats: PassStats, attention: torch.Tensor, mask: torch.Tensor) -> None:
    """Fold one batch of attention probabilities ``(L, B, K, T, T)`` into ``stats`` (real queries only)."""
    probs = attention.detach().float()
    query = mask.to(probs.dtype)[None, :, None, :]  # (1, B, 1, T)
    entropy = -torch.special.xlogy(probs, probs).sum(dim=-1)  # (L, B, K, T)
    peak = probs.amax(dim=-1)
    stats.att_entropy_sum = _add(stats.att_entropy_sum, (entropy * query).sum(dim=(1, 2, 3)))
    stats.att_max_sum = _add(stats.att_max_sum, (peak * query).sum(dim=(1, 2, 3)))
    count = mask.sum().to(torch.float64) * probs.shape[2]
    stats.att_count = _add(stats.att_count, count.expand(probs.shape[0]))


def update_gradients(stats: PassStats, grads: list[list[torch.Tensor]], batch_size: int) -> None:
    """Fold the per-layer gradients of one batch's mean loss into ``stats``: in-place sums, no copies.

    Taylor needs no per-batch term: ``sum_b B_b <g_b, w> = <sum_b B_b g_b, w>`` is read from ``grad_sum``.
    """
    b = float(batch_size)
    if stats.grad_sum is None:
        stats.grad_sum = [[g.detach().float() * b for g in layer] for layer in grads]
    else:
        for acc, layer in zip(stats.grad_sum, grads):
            for a, g in zip(acc, layer):
                a.add_(g.detach(), alpha=b)
    sq = torch.stack([torch.stack([torch.linalg.vector_norm(g, dtype=torch.float32) for g in layer]).square().sum()
                      for layer in grads])
    stats.fisher_sum = _add(stats.fisher_sum, sq * (b * b))


def update_counts(stats: PassStats, mask: torch.Tensor, labels: torch.Tensor | None) -> None:
    """Count the batch's examples and real tokens (after the covariance merge, which needs the old count)."""
    stats.n_examples += int(mask.shape[0])
    stats.n_tokens += int(mask.sum())
    if labels is not None and "pooled" in stats.parts:
        stats.labels.append(labels.detach().cpu())


def as_numpy(value: torch.Tensor | None, n_layers: int) -> np.ndarray:
    """A per-layer float64 array (NaN where a part was not collected)."""
    if value is None:
        return np.full(n_layers, np.nan)
    return value.detach().cpu().numpy().astype(np.float64)
