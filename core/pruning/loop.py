"""Iterative layer pruning (arXiv 2501.03273), as a generator of events.

Each step: compute the twelve signals (one instrumented pass) and the oracle (prefix-cached) for the
remaining layers, let the strategy pick a layer, remove it, fine-tune, evaluate. After the last step the
pruned model is distilled from the unpruned teacher. :func:`prune_events` yields one :class:`Event` per
sub-stage (and per training batch), so a caller can draw progress and stop between batches; it never
touches the run store. :func:`core.runs.runner.execute_run` records the events in the store.
"""

from __future__ import annotations

import time
from typing import Any, Generator, Iterator

import numpy as np
import pandas as pd
import torch

from core.config import TrainConfig
from core.data.batches import default_device, take, batches
from core.metrics import measure_model
from core.train import DistillConfig, attach_teacher_logits, fine_tune

from core.pruning.config import FUSION, PruneConfig, strategy_keys  # noqa: F401  (re-exported)
from core.fusion import profile_rows
from core.pruning.strategies import choose_layer
from core.runs.events import Event, StageClock, prepare_and_teach

def _step_lr_default(cfg: PruneConfig) -> float:
    return 1e-3 if cfg.model == "tiny-bert" else cfg.step_lr


def prune_events(cfg: PruneConfig, *, run_id: str = "", profiles: pd.DataFrame | None = None,
                 device: torch.device | None = None, dataset: Any = None) -> Iterator[Event]:
    """Run the whole method, yielding events. ``profiles`` are earlier runs' (signals + oracle) rows for
    the fusion rankers; ``dataset`` may be a loaded upload instead of ``cfg.dataset``."""
    from core.metrics import accuracy_to_size_ratio
    from core.models.registry import original_layer_indices
    from core.pruning.oracle import compute_oracle
    from core.signals import compute_signals
    from core.models.surgery import remove_layers

    device = device or default_device()
    torch.manual_seed(cfg.seed)
    profiles = profiles if profiles is not None else pd.DataFrame()
    clock = StageClock()
    task, teacher, teacher_cfg, cached = yield from prepare_and_teach(cfg.model, cfg.dataset, dataset, cfg.data,
                                                                      cfg.teacher, device, clock,
                                                                      allow_weak_teacher=cfg.allow_weak_teacher)
    val, test = task.encoded["val"], task.encoded["test"]
    base_metrics = measure_model(teacher, test, val=val, device=device).to_dict()
    n_original = len(original_layer_indices(teacher))
    step0 = {"n_layers": n_original, "removed": None, "removed_order": [], **base_metrics,
             "teacher_cached": cached}
    yield Event("step_done", step=0, progress=0.0, message=f"Teacher: test accuracy "
                f"{base_metrics['test_accuracy']:.3f}", payload=step0)
    clock.tick("evaluate")

    calib = take(task.encoded["train"], cfg.calibration_size)
    model = teacher
    removed: list[int] = []
    target = min(cfg.layers_to_remove, n_original - 1)
    step_cfg = TrainConfig(epochs=cfg.step_epochs, lr=_step_lr_default(cfg), batch_size=teacher_cfg.batch_size,
                           freeze_word_embeddings=teacher_cfg.freeze_word_embeddings,
                           head_lr_multiplier=1.0, seed=cfg.seed)
    own_profiles: list[pd.DataFrame] = []
    history: list[dict[str, Any]] = [step0]
    for step in range(1, target + 1):
        frac0 = (step - 1) / target
        yield Event("signals", step=step, progress=frac0, message=f"Step {step}: computing the twelve signals "
                    f"on {len(original_layer_indices(model))} layers")
        signals = compute_signals(model, list(batches(calib, 32)), device=device, seed=cfg.seed)
        clock.tick("signals")
        yield Event("oracle", step=step, progress=frac0, message=f"Step {step}: oracle (remove each layer, "
                    "measure validation accuracy)")
        oracle = compute_oracle(model, val, device=device)
        clock.tick("oracle")
        known = pd.concat([profiles, *own_profiles], ignore_index=True) if own_profiles else profiles
        layer, info = choose_layer(cfg, step, signals, oracle, known, run_id, task.dataset_key, n_original)
        clock.tick("choice")
        profile = profile_rows(signals, oracle, run_id=run_id, dataset=task.dataset_key, model=cfg.model,
                               step=step, n_original=n_original)
        own_profiles.append(profile)
        yield Event("choice", step=step, progress=frac0, message=f"Step {step}: {cfg.strategy} removes layer "
                    f"{layer}", payload={"layer": layer, "info": info},
                    tables={"signals": signals, "oracle": oracle, "profile": profile})
        model = remove_layers(model, [layer], by="original")
        removed.append(layer)
        for p in fine_tune(model, task.encoded["train"], step_cfg, device=device):
            yield Event("finetune", step=step, progress=frac0 + p.fraction / target,
                        message=f"Step {step}: fine-tuning {p.step}/{p.total_steps}, loss {p.loss:.3f}",
                        payload={"loss": p.loss, "fraction": p.fraction})
        clock.tick("finetune")
        metrics = measure_model(model, test, val=val, device=device).to_dict()
        clock.tick("evaluate")
        oracle_best = int(oracle.sort_values(["accuracy", "loss"], ascending=[False, True]).iloc[0]["original_layer"])
        row = {"n_layers": n_original - step, "removed": layer, "removed_order": list(removed), **metrics,
               "oracle_best": oracle_best, "oracle_best_accuracy": float(oracle["accuracy"].max()),
               "chosen_oracle_accuracy": float(oracle.loc[oracle["original_layer"] == layer, "accuracy"].iloc[0]),
               "ratio": accuracy_to_size_ratio(metrics["test_accuracy"], metrics["params_total"],
                                               base_metrics["test_accuracy"], base_metrics["params_total"])}
        if "quality" in info:
            row["ranker_spearman"] = info["quality"].get("spearman")
            row["ranker_top1"] = info["quality"].get("top1_hit")
        history.append(row)
        yield Event("step_done", step=step, progress=step / target, message=f"Step {step}: {n_original - step} "
                    f"layers, test accuracy {metrics['test_accuracy']:.3f}", payload=row)
        if cfg.accuracy_floor and metrics["val_accuracy"] < cfg.accuracy_floor:
            yield Event("evaluate", step=step, message=f"Validation accuracy {metrics['val_accuracy']:.3f} fell "
                        f"below the floor {cfg.accuracy_floor:.3f}: stopping")
            break

    summary: dict[str, Any] = {"teacher": base_metrics, "removed_order": removed,
                               "final_layers": n_original - len(removed)}
    pruned_only = [h for h in history[1:]]
    if pruned_only:
        best = max(pruned_only, key=lambda h: h["test_accuracy"])
        summary["max_accuracy_over_depth"] = {"accuracy": best["test_accuracy"], "n_layers": best["n_layers"]}
        summary["before_kd"] = {k: history[-1][k] for k in ("test_accuracy", "test_macro_f1", "val_accuracy")}
    if cfg.distill and removed:
        yield Event("distill", progress=0.0, message="Distilling from the unpruned teacher (caching its logits)")
        train_kd = attach_teacher_logits(task.encoded["train"], teacher, device=device)
        kd_cfg = TrainConfig(epochs=cfg.kd.epochs, lr=cfg.kd.lr if cfg.model != "tiny-bert" else 1e-3,
                             batch_size=step_cfg.batch_size, freeze_word_embeddings=step_cfg.freeze_word_embeddings,
                             head_lr_multiplier=1.0, seed=cfg.seed)
        kd = DistillConfig(temperature=cfg.kd.temperature, alpha=cfg.kd.alpha, epochs=cfg.kd.epochs, lr=kd_cfg.lr)
        for p in fine_tune(model, train_kd, kd_cfg, distill=kd, device=device):
            yield Event("distill", progress=p.fraction, message=f"Distillation {p.step}/{p.total_steps}, "
                        f"loss {p.loss:.3f}", payload={"loss": p.loss})
        clock.tick("distill")
        after = measure_model(model, test, val=val, device=device).to_dict()
        summary["after_kd"] = {k: after[k] for k in ("test_accuracy", "test_macro_f1", "val_accuracy")}
        summary["after_kd_metrics"] = after
        summary["ratio_after_kd"] = accuracy_to_size_ratio(after["test_accuracy"], after["params_total"],
                                                           base_metrics["test_accuracy"], base_metrics["params_total"])
        clock.tick("evaluate")
    if removed:
        final = summary.get("after_kd_metrics") or history[-1]
        summary["ratio"] = accuracy_to_size_ratio(final["test_accuracy"], final["params_total"],
                                                  base_metrics["test_accuracy"], base_metrics["params_total"])
    summary["timings_s"] = clock.summary()
    yield Event("done", progress=1.0, message="Finished", payload=summary,
                artifacts={"model": model, "tokenizer": task.tokenizer})
