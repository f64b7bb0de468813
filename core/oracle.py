"""The oracle: the measured cost of removing each remaining layer, with no fine-tuning.

For every remaining layer i the oracle evaluates the model with layer i removed on the validation split.
It is the truth every pruning strategy tries to predict, the ``oracle`` strategy's choice (remove the
layer whose removal hurts least) and the fusion rankers' training target.

Prefix caching makes it cheap. The model without layer i computes exactly what the full model computes up
to the input of layer i; only the layers after i see different inputs. So each validation batch goes
through the embeddings and the n layers once, keeping every layer's input h_i; "remove layer i" restarts
from h_i and runs layers i+1..n-1 and the classifier head. That is n(n+1)/2 layer passes for the whole
table (and the unpruned baseline for free) instead of n(n-1) + n for n separately built models.

The oracle is a measurement, not a strategy: pruning (the ``oracle`` strategy, the fusion target) and merging
(the matched pruning side) both use it. The pass in pieces is :mod:`core.models.forward`.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import torch
from torch import nn

from core.data.batches import Batch, batches, default_device, num_batches
from core.models.forward import embed, head_logits, run_layers
from core.models.registry import encoder_layers, original_layer_indices
from core.models.surgery import remove_layers
from core.precision import Resolved, autocast
from core.train import predict_logits, scores_from_logits

Progress = Callable[[int, int], None]
"""``progress(done, total)``: called after each unit of work (a validation batch for the cached oracle,
a layer for the naive one)."""

#: KL(the step's current model || the model without this layer): the reference is the model this step starts from
#: (at step k, the model after k - 1 removals and their fine-tuning), not the original teacher; per-example files
#: name the teacher's KL ``kl_to_teacher`` (:func:`core.train.per_example`). Tables stored before the rename call
#: it ``kl`` (:data:`LEGACY_COLUMNS`, read by :func:`upgrade_oracle_table`).
KL_TO_CURRENT = "kl_to_current"
COLUMNS = ("layer", "original_layer", "accuracy", "loss", "macro_f1", "accuracy_drop", "loss_increase", KL_TO_CURRENT)
#: oracle-table column names of older versions -> today's
LEGACY_COLUMNS = {"kl": KL_TO_CURRENT}


def upgrade_oracle_table(oracle: pd.DataFrame) -> pd.DataFrame:
    """An oracle table in today's names (a stored table from before the rename carries ``kl``); idempotent."""
    renames = {old: new for old, new in LEGACY_COLUMNS.items() if old in oracle.columns and new not in oracle.columns}
    return oracle.rename(columns=renames) if renames else oracle


def mean_kl(reference: torch.Tensor, logits: torch.Tensor) -> float:
    """Mean over examples of KL(p_reference || p_logits) of the softmax predictions (temperature 1): how much
    removing a layer changes what the model says, whatever the labels."""
    if reference.shape[0] == 0:
        return float("nan")
    ref = torch.log_softmax(reference.float(), dim=-1)
    out = torch.log_softmax(logits.float(), dim=-1)
    return float(torch.nn.functional.kl_div(out, ref, reduction="none", log_target=True).sum(-1).clamp_min(0).mean())


def _check_prunable(model: nn.Module) -> int:
    n = len(encoder_layers(model))
    if n < 2:
        raise ValueError(f"The model has {n} encoder layer(s): removing one would leave none, so there is "
                         "no oracle to compute.")
    return n


@torch.no_grad()
def _cached_logits(model: nn.Module, data: Batch, batch_size: int, device: torch.device,
                   progress: Progress | None, precision: Resolved) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits of the full model and of each single-layer removal, by prefix caching (see module doc)."""
    with autocast(precision, device, inference=True):  # weights cast once for the whole pass
        return _cached_logits_in(model, data, batch_size, device, progress)


def _cached_logits_in(model: nn.Module, data: Batch, batch_size: int, device: torch.device,
                      progress: Progress | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    layers = list(encoder_layers(model))
    n = len(layers)
    full: list[torch.Tensor] = []
    removed: list[list[torch.Tensor]] = [[] for _ in range(n)]
    total = num_batches(data, batch_size)
    for done, batch in enumerate(batches(data, batch_size, device=device), start=1):
        hidden, mask = embed(model, batch)
        inputs = []
        for layer in layers:
            inputs.append(hidden)
            hidden = layer(hidden, mask)
        full.append(head_logits(model, hidden).float().cpu())
        for i in range(n):
            out = run_layers(layers[i + 1:], inputs[i], mask)
            removed[i].append(head_logits(model, out).float().cpu())
        if progress is not None:
            progress(done, total)
    return torch.cat(full), [torch.cat(chunks) for chunks in removed]


def _table(model: nn.Module, baseline: dict[str, float], per_layer: list[dict[str, float]],
           kl: list[float]) -> pd.DataFrame:
    original = original_layer_indices(model)
    rows = [{"layer": i, "original_layer": original[i], "accuracy": s["accuracy"], "loss": s["loss"],
             "macro_f1": s["macro_f1"], "accuracy_drop": baseline["accuracy"] - s["accuracy"],
             "loss_increase": s["loss"] - baseline["loss"], KL_TO_CURRENT: kl[i]} for i, s in enumerate(per_layer)]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame.attrs["baseline"] = {k: baseline[k] for k in ("accuracy", "loss", "macro_f1", "n")}
    return frame


def compute_oracle(model: nn.Module, data: Batch, *, batch_size: int = 128, device: torch.device | None = None,
                   progress: Progress | None = None, precision: Resolved) -> pd.DataFrame:
    """One row per remaining layer: the validation scores of the model with that layer removed.

    Columns: ``layer`` (position), ``original_layer``, ``accuracy``, ``loss`` (mean cross-entropy),
    ``macro_f1``, ``accuracy_drop`` (unpruned accuracy minus this one; positive = removal hurts),
    ``loss_increase`` and ``kl_to_current`` (mean KL divergence from the prediction of ``model`` as given, the
    step's current model, to this one's, :func:`mean_kl`; what :func:`best_layer` minimises). The unpruned
    model's scores are in ``frame.attrs["baseline"]``. ``progress(done, total)`` is called after each validation
    batch. The model is moved to ``device`` and put in eval mode.
    ``precision`` is the resolved precision that runs (:mod:`core.precision`: a run passes its own).
    """
    return oracle_with_logits(model, data, batch_size=batch_size, device=device, progress=progress,
                              precision=precision)[0]


def oracle_with_logits(model: nn.Module, data: Batch, *, batch_size: int = 128, device: torch.device | None = None,
                       progress: Progress | None = None, precision: Resolved
                       ) -> tuple[pd.DataFrame, torch.Tensor, list[torch.Tensor]]:
    """:func:`compute_oracle`'s table, with the logits it was computed from: the unpruned model's and, at
    position ``i`` of the list, those of the model with the layer in row ``i`` removed (fp32, CPU; one row per
    example of ``data``). What the per-example outcomes of each oracle candidate are built from."""
    _check_prunable(model)
    device = device or default_device()
    model.to(device).eval()
    full, removed = _cached_logits(model, data, batch_size, device, progress, precision)
    labels = data["labels"]
    table = _table(model, scores_from_logits(full, labels), [scores_from_logits(lg, labels) for lg in removed],
                   [mean_kl(full, lg) for lg in removed])
    return table, full, removed


def naive_oracle(model: nn.Module, data: Batch, *, batch_size: int = 128, device: torch.device | None = None,
                 progress: Progress | None = None) -> pd.DataFrame:
    """The same table as :func:`compute_oracle`, by building each pruned model with
    :func:`core.models.surgery.remove_layers` and evaluating it in full (the reference; slower).
    ``progress(done, total)`` is called after each layer."""
    n = _check_prunable(model)
    device = device or default_device()
    full = predict_logits(model, data, batch_size, device, precision="fp32")
    baseline = scores_from_logits(full, data["labels"])
    per_layer, kl = [], []
    for i in range(n):
        pruned = remove_layers(model, [i], by="position")
        logits = predict_logits(pruned, data, batch_size, device, precision="fp32")
        per_layer.append(scores_from_logits(logits, data["labels"]))
        kl.append(mean_kl(full, logits))
        del pruned
        if progress is not None:
            progress(i + 1, n)
    return _table(model, baseline, per_layer, kl)


#: what the oracle minimises (our default, chosen by measurement): ``kl`` ranks the removals the same way on two
#: halves of the validation rows far more often than accuracy does (split-half Spearman 0.87 vs 0.51 at 1,000
#: rows; across two seeds 0.70 vs 0.25) and its pick loses no more accuracy on rows it did not see (0.91 vs 0.94
#: points at 1,000 rows, 1.35 vs 1.64 at 500): data/reference/oracle_reliability.csv, README "How much of the
#: oracle is noise". Accuracy stays the number every page reports.
ORACLE_CRITERION = "kl"


def best_layer(oracle: pd.DataFrame) -> int:
    """The original index of the layer whose removal costs least: the lowest KL divergence from the current
    model's prediction (:data:`ORACLE_CRITERION`), then the highest accuracy, then the lowest loss. A table
    without a finite KL column (stored by an older version) is ranked by accuracy, then loss; one that calls it
    ``kl`` (before the rename to ``kl_to_current``) is read as well."""
    oracle = upgrade_oracle_table(oracle)
    if KL_TO_CURRENT in oracle.columns and oracle[KL_TO_CURRENT].notna().all():
        keys, ascending = [KL_TO_CURRENT, "accuracy", "loss"], [True, False, True]
    else:
        keys, ascending = ["accuracy", "loss"], [False, True]
    return int(oracle.sort_values(keys, ascending=ascending, kind="stable").iloc[0]["original_layer"])
