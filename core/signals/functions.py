"""One small function per signal: ``fn(stats) -> one raw value per remaining layer``.

Each function reads the sums of one instrumented pass (:class:`~core.signals.stats.PassStats`); the
formulas, directions and intuitions are in :mod:`core.signals.registry` under the same key. ``FUNCTIONS``
says which function computes each key and which parts of the pass it reads, so a pass collects only what
its signals need. The estimators (linear CKA, histogram entropy, pooled-representation MI) are separate
functions so they can be tested on hand-built inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.feature_selection import mutual_info_classif
from threadpoolctl import threadpool_limits

from core.signals.stats import PassStats, as_numpy

#: weight entropy: number of equal-width histogram bins over the layer's own weight range
ENTROPY_BINS = 256
#: neighbours of the kNN mutual-information estimator (scikit-learn's default)
MI_NEIGHBORS = 3


# ------------------------------------------------------------------------------------------- estimators
def linear_cka(xx: np.ndarray, yy: np.ndarray, yx: np.ndarray | None = None) -> float:
    """Linear CKA (Kornblith et al. 2019): the one implementation, for the signals and for FFN merging.

    From centred moments ``X^T X``, ``Y^T Y`` and ``Y^T X`` (features x features):
    ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)``. With ``yx=None``, ``xx`` and ``yy`` are the centred Gram
    matrices ``X X^T`` and ``Y Y^T`` (samples x samples) and the numerator is ``<X X^T, Y Y^T>_F``: the same
    number (``||Y^T X||_F^2 = <X X^T, Y Y^T>_F`` and ``||X^T X||_F = ||X X^T||_F``), cheaper when there are
    fewer samples than features. 0 when either side has no variance (nothing to be dependent on).
    """
    denom = np.linalg.norm(xx) * np.linalg.norm(yy)
    if not np.isfinite(denom) or denom <= 0.0:
        return 0.0
    numerator = np.square(yx).sum() if yx is not None else np.vdot(xx, yy)
    return float(numerator / denom)


def histogram_entropy(values: torch.Tensor | list[torch.Tensor], bins: int = ENTROPY_BINS) -> float:
    """Shannon entropy (nats) of a ``bins``-bin histogram spanning the values' own range; 0 if constant.

    ``values`` may be a list of tensors (a layer's matrices), histogrammed together without concatenating.
    """
    parts = [v.detach().float() for v in (values if isinstance(values, (list, tuple)) else [values])]
    parts = [v for v in parts if v.numel()]
    if not parts:
        return 0.0
    ranges = [torch.aminmax(v) for v in parts]
    lo = min(float(r.min) for r in ranges)
    hi = max(float(r.max) for r in ranges)
    if not hi > lo:
        return 0.0
    counts = torch.stack([torch.histc(v, bins=bins, min=lo, max=hi).double() for v in parts]).sum(dim=0)
    p = counts / counts.sum()
    return float(-torch.special.xlogy(p, p).sum())


def principal_components(pooled: np.ndarray, components: int, seed: int) -> np.ndarray:
    """The first ``components`` principal components of ``pooled`` (N, H); no columns if it is constant."""
    x = np.asarray(pooled, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    scale = np.abs(x).max() if x.size else 0.0
    if x.shape[0] < 2 or not scale > 0.0:
        return np.zeros((x.shape[0], 0))
    k = max(1, min(components, x.shape[0] - 1, x.shape[1]))
    with threadpool_limits(limits=1):  # tiny matrices: BLAS threads only add synchronisation
        z = PCA(n_components=k, svd_solver="randomized", random_state=seed).fit_transform(x / scale)
    return z[:, z.std(axis=0) > 1e-9]  # drop numerically empty components


def label_mi(blocks: list[np.ndarray], labels: np.ndarray, seed: int) -> np.ndarray:
    """For each block of features (N, k_b), the sum of per-feature kNN MI with ``labels``.

    One scikit-learn call for all blocks (the estimate is per feature, so stacking changes nothing but
    the overhead). 0 for an empty block, a single class or too few examples.
    """
    labels = np.asarray(labels)
    out = np.zeros(len(blocks))
    if len(np.unique(labels)) < 2 or len(labels) < MI_NEIGHBORS + 2:
        return out
    widths = [b.shape[1] for b in blocks]
    if sum(widths) == 0:
        return out
    with threadpool_limits(limits=1):
        mi = mutual_info_classif(np.concatenate(blocks, axis=1), labels, discrete_features=False,
                                 n_neighbors=MI_NEIGHBORS, random_state=seed)
    bounds = np.cumsum([0] + widths)
    return np.array([mi[a:b].sum() for a, b in zip(bounds[:-1], bounds[1:])])


def pooled_label_mi(pooled: np.ndarray, labels: np.ndarray, components: int, seed: int) -> float:
    """Task-relevance MI of one representation: summed kNN MI of its first principal components."""
    return float(label_mi([principal_components(pooled, components, seed)], labels, seed)[0])


def _weight_matrices(layer: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach() for p in layer.parameters() if p.ndim >= 2]


# ------------------------------------------------------------------------------------------- activation
def inhibition(s: PassStats) -> np.ndarray:
    return as_numpy(s.act_sum, s.n_layers) / (s.n_tokens * max(s.hidden_size, 1))


def intensity(s: PassStats) -> np.ndarray:
    return as_numpy(s.norm_sum, s.n_layers) / s.n_tokens


def energy(s: PassStats) -> np.ndarray:
    return as_numpy(s.sq_norm_sum, s.n_layers) / s.n_examples


# ----------------------------------------------------------------------------------- mutual information
def task_relevance_mi(s: PassStats, components: int = 4, seed: int = 0) -> np.ndarray:
    if not s.labels:
        raise ValueError("task_relevance_mi needs labels: every batch must carry a 'labels' tensor")
    pooled = torch.cat(s.pooled, dim=1).numpy()  # (L, N, H)
    labels = torch.cat(s.labels).numpy()
    blocks = [principal_components(pooled[i], components, seed) for i in range(s.n_layers)]
    return label_mi(blocks, labels, seed)


def redundancy_mi(s: PassStats) -> np.ndarray:
    if s.m2 is None or s.cross is None:  # covariance not collected: NaN, as as_numpy gives for any other part
        return np.full(s.n_layers, np.nan)
    m2 = s.m2.cpu().numpy()
    cross = s.cross.cpu().numpy()
    return np.array([linear_cka(m2[i], m2[i + 1], cross[i]) for i in range(s.n_layers)])


# --------------------------------------------------------------------------------------------- gradient
def _norm64(tensors: list[torch.Tensor]) -> float:
    return float(torch.stack([torch.linalg.vector_norm(t, dtype=torch.float64) for t in tensors]).norm())


def gradient_norm(s: PassStats) -> np.ndarray:
    if s.grad_sum is None:  # gradients not collected
        return np.full(s.n_layers, np.nan)
    return np.array([_norm64(layer) for layer in s.grad_sum]) / s.n_examples


def gradient_fisher(s: PassStats) -> np.ndarray:
    return as_numpy(s.fisher_sum, s.n_layers) / s.n_examples


def taylor(s: PassStats) -> np.ndarray:
    if s.grad_sum is None:  # gradients not collected
        return np.full(s.n_layers, np.nan)
    dots = [sum(float(torch.vdot(g.flatten(), p.detach().flatten().to(g.dtype))) for g, p in zip(layer, params))
            for layer, params in zip(s.grad_sum, s.params)]
    return np.abs(np.array(dots)) / s.n_examples


# ----------------------------------------------------------------------------------------------- weight
def weight_magnitude(s: PassStats) -> np.ndarray:
    out = []
    for layer in s.layers:
        mats = _weight_matrices(layer)
        out.append(_norm64(mats) / np.sqrt(max(sum(m.numel() for m in mats), 1)) if mats else 0.0)
    return np.array(out)


def weight_entropy(s: PassStats) -> np.ndarray:
    return np.array([histogram_entropy(_weight_matrices(layer)) for layer in s.layers])


# -------------------------------------------------------------------------------------------- attention
def attention_entropy(s: PassStats) -> np.ndarray:
    return as_numpy(s.att_entropy_sum, s.n_layers) / as_numpy(s.att_count, s.n_layers)


def attention_weight(s: PassStats) -> np.ndarray:
    return as_numpy(s.att_max_sum, s.n_layers) / as_numpy(s.att_count, s.n_layers)


# -------------------------------------------------------------------------------------------- baselines
def block_influence(s: PassStats) -> np.ndarray:
    return as_numpy(s.cos_dist_sum, s.n_layers) / s.n_tokens


@dataclass(frozen=True)
class SignalFunction:
    """How a registry key is computed: the function and the parts of the pass it reads."""

    fn: Callable[..., np.ndarray]
    parts: frozenset[str]
    takes_mi_options: bool = False


def _f(fn: Callable[..., np.ndarray], *parts: str, mi: bool = False) -> SignalFunction:
    return SignalFunction(fn, frozenset(parts), mi)


#: every signal and the ``block_influence`` baseline; ``random`` and ``top_down`` are rank rules
FUNCTIONS: dict[str, SignalFunction] = {
    "inhibition": _f(inhibition, "activation"),
    "intensity": _f(intensity, "activation"),
    "energy": _f(energy, "activation"),
    "task_relevance_mi": _f(task_relevance_mi, "pooled", mi=True),
    "redundancy_mi": _f(redundancy_mi, "covariance"),
    "gradient_norm": _f(gradient_norm, "gradient"),
    "gradient_fisher": _f(gradient_fisher, "gradient"),
    "taylor": _f(taylor, "gradient"),
    "weight_magnitude": _f(weight_magnitude),
    "weight_entropy": _f(weight_entropy),
    "attention_entropy": _f(attention_entropy, "attention"),
    "attention_weight": _f(attention_weight, "attention"),
    "block_influence": _f(block_influence, "cosine"),
}
