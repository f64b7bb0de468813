"""Fine-tuning, knowledge distillation and evaluation: one training loop shared by the teacher, every
pruning step and feed-forward merging.

``fine_tune`` is a generator: it yields a :class:`TrainProgress` after every optimiser step, so a caller
can draw a progress bar and stop between batches (``close()`` the generator, or just stop iterating).
With ``teacher_logits`` in the data (see :func:`attach_teacher_logits`) the loss becomes the distillation
loss ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch import nn

from core.config import TrainConfig, check_float
from core.data.batches import Batch, batches, default_device, model_inputs, num_batches


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation from the unpruned teacher. T=2, alpha=0.5 are *our defaults*: the paper
    does not publish its values."""

    temperature: float = 2.0
    alpha: float = 0.5
    epochs: float = 2.0
    lr: float = 5e-5

    def __post_init__(self) -> None:
        o = "DistillConfig"
        check_float(o, "temperature", self.temperature, 0.0, 100.0, lo_open=True)
        check_float(o, "alpha", self.alpha, 0.0, 1.0)
        check_float(o, "epochs", self.epochs, 0.0, 100.0)
        check_float(o, "lr", self.lr, 0.0, 1.0, lo_open=True)


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
    word embeddings are frozen by default (a large share of a small model's parameters, little to gain in few epochs)."""
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


def fine_tune(model: nn.Module, data: Batch, cfg: TrainConfig, *, distill: DistillConfig | None = None,
              device: torch.device | None = None) -> Iterator[TrainProgress]:
    """Train ``model`` in place on ``data``; yields progress after every optimiser step.

    If ``distill`` is given, ``data`` must carry ``teacher_logits`` (see :func:`attach_teacher_logits`).
    """
    device = device or default_device()
    model.to(device).train()
    epochs = distill.epochs if distill else cfg.epochs
    lr = distill.lr if distill else cfg.lr
    if distill is not None and "teacher_logits" not in data:
        raise ValueError("distillation needs data['teacher_logits']: call attach_teacher_logits first")
    per_epoch = num_batches(data, cfg.batch_size)
    total = max(int(math.ceil(epochs * per_epoch)), 0)
    if total == 0:
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
    step = 0
    try:
        for epoch in range(int(math.ceil(epochs))):
            for batch in batches(data, cfg.batch_size, shuffle=True, seed=cfg.seed + epoch, device=device,
                                 group_by_length=cfg.group_by_length):
                logits = model(**model_inputs(batch)).logits
                if distill is not None:
                    loss = distillation_loss(logits, batch["teacher_logits"], batch["labels"],
                                             distill.temperature, distill.alpha)
                else:
                    loss = F.cross_entropy(logits, batch["labels"])
                opt.zero_grad(set_to_none=True)
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
    last = None
    for last in gen:
        pass
    return last


@torch.no_grad()
def predict_logits(model: nn.Module, data: Batch, batch_size: int = 128,
                   device: torch.device | None = None) -> torch.Tensor:
    device = device or default_device()
    model.to(device).eval()
    out = [model(**model_inputs(b)).logits.float().cpu() for b in batches(data, batch_size, device=device)]
    return torch.cat(out) if out else torch.empty(0)


def attach_teacher_logits(data: Batch, teacher: nn.Module, batch_size: int = 128,
                          device: torch.device | None = None) -> Batch:
    """Compute the teacher's logits once; they then travel with the rows through shuffled batches."""
    return {**data, "teacher_logits": predict_logits(teacher, data, batch_size, device)}


def scores_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    pred = logits.argmax(dim=-1).numpy()
    y = labels.cpu().numpy()
    loss = float(F.cross_entropy(logits, labels.cpu())) if len(y) else float("nan")
    return {"accuracy": float(np.mean(pred == y)) if len(y) else float("nan"),
            "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)) if len(y) else float("nan"),
            "loss": loss, "n": int(len(y))}


def evaluate(model: nn.Module, data: Batch, batch_size: int = 128, device: torch.device | None = None
             ) -> dict[str, float]:
    """Accuracy, macro-F1 and mean cross-entropy of ``model`` on ``data``."""
    return scores_from_logits(predict_logits(model, data, batch_size, device), data["labels"])


# --------------------------------------------------------------------------------------------- bench
def bench_main(argv: list[str] | None = None) -> int:
    """``python -m core bench train``: one epoch of fine-tuning with random batches against length-grouped
    batches (``TrainConfig.group_by_length``), interleaved in one process from the same starting weights;
    prints padded tokens, seconds and the ratio."""
    import argparse
    import copy
    import time
    from dataclasses import replace

    from core.config import DataConfig
    from core.data.batches import lengths, take
    from core.models.registry import load_classifier
    from core.data.task import prepare_task
    from core.teacher import default_train_config

    p = argparse.ArgumentParser(prog="python -m core bench train")
    p.add_argument("--model", default="e5-small")
    p.add_argument("--dataset", default="trec")
    p.add_argument("--rows", type=int, default=640, help="training rows per epoch")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv or [])
    torch.set_num_threads(args.threads)
    task = prepare_task(args.model, args.dataset, DataConfig(train_cap=max(args.rows, 10)))
    base = load_classifier(task.model, task.num_labels).eval()
    data = take(task.encoded["train"], args.rows)
    cfg = default_train_config(task.model.key, task.num_labels)
    configs = {grouped: replace(cfg, epochs=1.0, group_by_length=grouped) for grouped in (False, True)}
    tokens = {grouped: sum(b["input_ids"].numel() for b in batches(data, c.batch_size, shuffle=True, seed=c.seed,
                                                                    group_by_length=grouped))
              for grouped, c in configs.items()}
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for grouped, run_cfg in configs.items():
            model = copy.deepcopy(base)
            start = time.perf_counter()
            run_to_end(fine_tune(model, data, run_cfg, device=torch.device("cpu")))
            seconds[grouped].append(time.perf_counter() - start)
    real = int(lengths(data).sum())
    print(f"{task.model.key} on {task.dataset_key}: {len(data['labels'])} rows, batch {cfg.batch_size}, "
          f"{torch.get_num_threads()} threads; real tokens {real:,}; best of {args.rounds} rounds, interleaved")
    for grouped, label in ((False, "random batches"), (True, "length-grouped batches")):
        print(f"{label:<24} padded tokens {tokens[grouped]:>8,}   epoch {min(seconds[grouped]):7.1f} s")
    print(f"grouped / random: tokens {tokens[True] / tokens[False]:.2f}, time "
          f"{min(seconds[True]) / min(seconds[False]):.2f}")
    return 0
