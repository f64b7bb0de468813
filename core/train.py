"""Fine-tuning, knowledge distillation and evaluation: one training loop shared by the teacher, every
pruning step and feed-forward merging.

``fine_tune`` is a generator: it yields a :class:`TrainProgress` after every optimiser step, so a caller
can draw a progress bar and stop between batches (``close()`` the generator, or just stop iterating).
With ``teacher_logits`` in the data (see :func:`attach_teacher_logits`) the loss becomes the distillation
loss ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch import nn

from core.config import Bound, TrainConfig, check_bounds
from core.data.batches import Batch, batches, default_device, model_inputs, num_batches
from core.models.registry import num_labels
from core.precision import Resolved, autocast, grad_scaler, hidden_size_of, resolve

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation from the unpruned teacher. T=2, alpha=0.5 are *our defaults*: the paper
    does not publish its values."""

    temperature: float = 2.0
    alpha: float = 0.5
    epochs: float = 2.0
    lr: float = 5e-5

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "temperature": Bound("float", 0.0, 100.0, lo_open=True), "alpha": Bound("float", 0.0, 1.0),
        "epochs": Bound("float", 0.0, 100.0), "lr": Bound("float", 0.0, 1.0, lo_open=True)}

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass(frozen=True)
class TrainProgress:
    step: int
    total_steps: int
    epoch: float
    loss: float

    @property
    def fraction(self) -> float:
        return self.step / max(self.total_steps, 1)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float, alpha: float) -> torch.Tensor:
    """alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * cross-entropy(student, labels)."""
    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits / t, dim=-1), F.log_softmax(teacher_logits / t, dim=-1),
                    reduction="batchmean", log_target=True)
    hard = F.cross_entropy(student_logits, labels)
    return alpha * t * t * soft + (1.0 - alpha) * hard


def _param_groups(model: nn.Module, cfg: TrainConfig, lr: float) -> list[dict]:
    """AdamW groups: no decay on biases/LayerNorm; the (freshly initialised) head learns faster;
    word embeddings are frozen by default (a large share of a small model's parameters, little to gain in few
    epochs)."""
    head_names = ("classifier", "pooler")
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if cfg.freeze_word_embeddings and "word_embeddings" in name:
            p.requires_grad_(False)
            continue
        if not p.requires_grad:
            continue
        is_head = any(h in name for h in head_names)
        no_decay = p.ndim < 2 or "LayerNorm" in name
        groups.setdefault((is_head, no_decay), []).append(p)
    out = []
    seen: set[int] = set()
    for (is_head, no_decay), params in groups.items():
        params = [p for p in params if id(p) not in seen and not seen.add(id(p))]  # type: ignore[func-returns-value]
        out.append({"params": params, "lr": lr * (cfg.head_lr_multiplier if is_head else 1.0),
                    "weight_decay": 0.0 if no_decay else cfg.weight_decay})
    return out


def class_weights(labels: torch.Tensor, num_labels: int, how: str, device: torch.device | None = None
                  ) -> torch.Tensor | None:
    """Cross-entropy weights per class from the training labels (``TrainConfig.class_weights``): None for
    "none"; "balanced" is ``n / (k * count)`` (sklearn's ``class_weight="balanced"``), "sqrt" its square root.
    A class with no training rows gets weight 0."""
    if how == "none":
        return None
    counts = torch.bincount(labels.cpu().long(), minlength=num_labels)[:num_labels].double()
    present = counts > 0
    w = torch.zeros(num_labels, dtype=torch.double)
    w[present] = counts.sum() / (int(present.sum()) * counts[present])
    if how == "sqrt":
        w = w.sqrt()
    return w.float().to(device) if device is not None else w.float()


def recovery_config(teacher_cfg: TrainConfig, *, epochs: float, lr: float, seed: int, precision: str) -> TrainConfig:
    """A recovery's training config (fine-tuning after a removal or a merge, or distillation): the teacher's batch
    size and embedding freeze, no head multiplier, the run's seed and precision setting."""
    return TrainConfig(epochs=epochs, lr=lr, batch_size=teacher_cfg.batch_size,
                       freeze_word_embeddings=teacher_cfg.freeze_word_embeddings, head_lr_multiplier=1.0,
                       seed=seed, precision=precision)


def fine_tune(model: nn.Module, data: Batch, cfg: TrainConfig, *, distill: DistillConfig | None = None,
              device: torch.device | None = None, precision: Resolved | None = None) -> Iterator[TrainProgress]:
    """Train ``model`` in place on ``data``; yields progress after every optimiser step.

    If ``distill`` is given, ``data`` must carry ``teacher_logits`` (see :func:`attach_teacher_logits`).
    ``precision`` is what runs, resolved by the run that calls (:mod:`core.precision`); left out, ``cfg.precision``
    (a setting) is resolved here, for a caller that holds only a config (a benchmark, a test).
    """
    device = device or default_device()
    model.to(device).train()
    epochs = distill.epochs if distill else cfg.epochs
    lr = distill.lr if distill else cfg.lr
    if distill is not None and "teacher_logits" not in data:
        raise ValueError("distillation needs data['teacher_logits']: call attach_teacher_logits first")
    per_epoch = num_batches(data, cfg.batch_size)
    total = max(int(math.ceil(epochs * per_epoch)), 0 if distill else cfg.min_steps)
    if total == 0 or per_epoch == 0:
        model.eval()
        return
    torch.manual_seed(cfg.seed)
    opt = torch.optim.AdamW(_param_groups(model, cfg, lr))
    warmup = int(cfg.warmup_ratio * total)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(total - warmup, 1))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    precision = precision or resolve(cfg.precision, device, hidden_size_of(model))  # else a config's setting
    scaler = grad_scaler(precision, device)
    weight = None if distill or cfg.class_weights == "none" else \
        class_weights(data["labels"], num_labels(model), cfg.class_weights, device)
    step = 0
    try:
        for epoch in range(int(math.ceil(total / per_epoch))):
            for batch in batches(data, cfg.batch_size, shuffle=True, seed=cfg.seed + epoch, device=device,
                                 group_by_length=cfg.group_by_length):
                with autocast(precision, device):  # per step: see core.precision (autocast's weight cache)
                    logits = model(**model_inputs(batch)).logits
                    if distill is not None:
                        loss = distillation_loss(logits.float(), batch["teacher_logits"], batch["labels"],
                                                 distill.temperature, distill.alpha)
                    else:
                        loss = F.cross_entropy(logits.float(), batch["labels"], weight=weight)
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                sched.step()
                step += 1
                yield TrainProgress(step, total, step / per_epoch, float(loss.detach()))
                if step >= total:
                    return
    finally:
        model.eval()


def run_to_end(gen: Iterator[TrainProgress]) -> TrainProgress | None:
    last = deque(gen, maxlen=1)  # runs the generator to its end, keeping its last item
    return last[0] if last else None


@torch.no_grad()
def predict_logits(model: nn.Module, data: Batch, batch_size: int = 128,
                   device: torch.device | None = None, *, precision: Resolved) -> torch.Tensor:
    """The model's logits on every row of ``data`` (fp32, on the CPU), computed in ``precision`` (resolved: a run
    passes its own, see :mod:`core.precision`; an unresolved ``auto`` is refused)."""
    device = device or default_device()
    model.to(device).eval()
    with autocast(precision, device, inference=True):
        out = [model(**model_inputs(b)).logits.float().cpu() for b in batches(data, batch_size, device=device)]
    return torch.cat(out) if out else torch.empty(0)


def attach_teacher_logits(data: Batch, teacher: nn.Module, batch_size: int = 128,
                          device: torch.device | None = None, *, precision: Resolved) -> Batch:
    """Compute the teacher's logits once (in ``precision``, resolved); they then travel with the rows through
    shuffled batches."""
    return {**data, "teacher_logits": predict_logits(teacher, data, batch_size, device, precision=precision)}


def scores_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    pred = logits.argmax(dim=-1).numpy()
    y = labels.cpu().numpy()
    loss = float(F.cross_entropy(logits, labels.cpu())) if len(y) else float("nan")
    return {"accuracy": float(np.mean(pred == y)) if len(y) else float("nan"),
            "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)) if len(y) else float("nan"),
            "loss": loss, "n": int(len(y))}


#: the columns of :func:`per_example`, in order
PER_EXAMPLE_COLUMNS = ("example", "label", "pred", "loss", "kl_to_teacher")


def per_example(logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None = None
                ) -> pd.DataFrame:
    """One row per example of an evaluation, from the same logits :func:`scores_from_logits` turns into its
    aggregate scores: ``example`` (the row's position in the evaluated split, e.g. ``task.splits.test.iloc[i]``,
    the same for every run of one task fingerprint), ``label``, ``pred`` (argmax), ``loss`` (cross-entropy) and
    ``kl_to_teacher`` (KL(teacher || model) of the softmax predictions at temperature 1; NaN without
    ``teacher_logits``). Compact dtypes (int32 ids, int16 classes, float32 values): the mean of ``pred ==
    label`` is the accuracy exactly, macro-F1 over ``label``/``pred`` is the macro-F1 exactly, and the mean loss
    equals the aggregate loss to float32 rounding. Returns a ``pandas.DataFrame``."""
    x = logits.detach().float().cpu().numpy()
    y = labels.detach().cpu().numpy().astype(np.int64)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"per_example: {x.shape[0]} rows of logits for {y.shape[0]} labels")
    n = int(y.shape[0])
    # numpy, in float64: these arrays are small, and torch's threaded kernels cost more in start-up than in work
    logp = _log_softmax(x)
    loss = -logp[np.arange(n), y] if n else np.empty(0)
    if teacher_logits is not None:
        t = teacher_logits.detach().float().cpu().numpy()
        if t.shape != x.shape:
            raise ValueError(f"per_example: teacher logits of shape {tuple(t.shape)} for logits of shape "
                             f"{tuple(x.shape)}")
        logq = _log_softmax(t)
        kl = np.maximum((np.exp(logq) * (logq - logp)).sum(axis=1), 0.0)
    else:
        kl = np.full(n, np.nan)
    pred = x.argmax(axis=1) if n else np.empty(0, dtype=np.int64)
    return pd.DataFrame({"example": np.arange(n, dtype=np.int32), "label": y.astype(np.int16),
                         "pred": pred.astype(np.int16), "loss": loss.astype(np.float32),
                         "kl_to_teacher": kl.astype(np.float32)}, columns=list(PER_EXAMPLE_COLUMNS))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (numerically stable: the row maximum is subtracted first)."""
    z = x.astype(np.float64)
    if z.size:
        z = z - z.max(axis=1, keepdims=True)
        z = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return z


def evaluate(model: nn.Module, data: Batch, batch_size: int = 128, device: torch.device | None = None, *,
             precision: Resolved) -> dict[str, float]:
    """Accuracy, macro-F1 and mean cross-entropy of ``model`` on ``data``, computed in ``precision`` (resolved)."""
    return scores_from_logits(predict_logits(model, data, batch_size, device, precision=precision), data["labels"])
