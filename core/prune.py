"""Iterative layer pruning (arXiv 2501.03273), as a generator of events.

Each step: compute the twelve signals (one instrumented pass) and the oracle (prefix-cached) for the
remaining layers, let the strategy pick a layer, remove it, fine-tune, evaluate. After the last step the
pruned model is distilled from the unpruned teacher. :func:`prune_events` yields one :class:`Event` per
sub-stage (and per training batch), so a caller can draw progress and stop between batches; it never
touches the run store. :func:`core.runner.execute_run` records the events in the store.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Generator, Iterator

import numpy as np
import pandas as pd
import torch

from .config import (ConfigError, DataConfig, TrainConfig, check_choice, check_float, check_int, from_dict,
                     to_dict)
from .data import default_device, take, batches
from .train import DistillConfig, attach_teacher_logits, evaluate, fine_tune

FUSION = ("lr_fusion", "rf_fusion")


def strategy_keys() -> tuple[str, ...]:
    from .signals import BASELINES, SIGNAL_KEYS

    return tuple(SIGNAL_KEYS) + tuple(BASELINES) + ("oracle",) + FUSION


@dataclass(frozen=True)
class PruneConfig:
    """One pruning run. Defaults are the CPU-sized version of the paper's protocol."""

    model: str = "e5-small"
    dataset: str = "trec"
    strategy: str = "rf_fusion"
    layers_to_remove: int = 6
    accuracy_floor: float = 0.0
    step_epochs: float = 1.0
    step_lr: float = 5e-5
    calibration_size: int = 256
    distill: bool = True
    kd: DistillConfig = field(default_factory=DistillConfig)
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TrainConfig | None = None
    depth_feature: bool = False
    normalise: str = "rank"
    seed: int = 0

    def __post_init__(self) -> None:
        o = "PruneConfig"
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"{o}.model must be a registry key or hub id, got {self.model!r}")
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ConfigError(f"{o}.dataset must be a dataset key, got {self.dataset!r}")
        check_choice(o, "strategy", self.strategy, strategy_keys())
        check_int(o, "layers_to_remove", self.layers_to_remove, 1, 47)
        check_float(o, "accuracy_floor", self.accuracy_floor, 0.0, 1.0)
        check_float(o, "step_epochs", self.step_epochs, 0.0, 50.0)
        check_float(o, "step_lr", self.step_lr, 0.0, 1.0, lo_open=True)
        check_int(o, "calibration_size", self.calibration_size, 8, 100_000)
        check_choice(o, "normalise", self.normalise, ("rank", "zscore"))
        check_int(o, "seed", self.seed, 0, 2**31 - 1)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PruneConfig":
        return from_dict(cls, d)


@dataclass(frozen=True)
class Event:
    """One thing that happened. ``stage`` is one of: prepare, teacher, signals, oracle, choice, finetune,
    evaluate, step_done, distill, done. ``payload`` holds JSON-ready data; ``tables`` holds DataFrames the
    recorder stores as artifacts; ``model`` carries a model to export (final stage only)."""

    stage: str
    step: int | None = None
    progress: float | None = None
    message: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)


def _step_lr_default(cfg: PruneConfig) -> float:
    return 1e-3 if cfg.model == "tiny-bert" else cfg.step_lr


def model_metrics(model: torch.nn.Module, data_val, data_test, device) -> dict[str, Any]:
    """Test-split metrics of ``model`` (accuracy, F1, size, latency) plus validation accuracy, flat."""
    from .metrics import measure_model

    m = measure_model(model, data_test, device=device).to_dict()
    val = evaluate(model, data_val, device=device)
    out = {f"test_{k}": m.pop(k) for k in ("accuracy", "macro_f1", "loss")}
    out.update(val_accuracy=val["accuracy"], val_macro_f1=val["macro_f1"], val_loss=val["loss"])
    out.update(m)
    return out


def choose_layer(cfg: PruneConfig, step: int, signals: pd.DataFrame, oracle: pd.DataFrame,
                 profiles: pd.DataFrame, run_id: str, dataset_key: str, n_original: int
                 ) -> tuple[int, dict[str, Any]]:
    """Pick the original index of the layer to remove, and explain the choice (JSON-ready)."""
    from .signals import rank_layers

    strategy = cfg.strategy
    info: dict[str, Any] = {"strategy": strategy}
    if strategy == "oracle":
        best = oracle.sort_values(["accuracy", "loss"], ascending=[False, True]).iloc[0]
        return int(best["original_layer"]), info
    if strategy in FUSION:
        return _fusion_choice(cfg, step, signals, oracle, profiles, run_id, dataset_key, info, n_original)
    order = rank_layers(signals, strategy, seed=cfg.seed + step)
    info["order"] = [int(i) for i in order]
    return int(order[0]), info


def _fusion_choice(cfg: PruneConfig, step: int, signals: pd.DataFrame, oracle: pd.DataFrame,
                   profiles: pd.DataFrame, run_id: str, dataset_key: str, info: dict[str, Any],
                   n_original: int) -> tuple[int, dict[str, Any]]:
    from . import fusion

    current = signals.merge(oracle[["original_layer", "accuracy", "loss"]], on="original_layer")
    current = current.rename(columns={"accuracy": "oracle_accuracy", "loss": "oracle_loss"})
    current["oracle_drop"] = current["oracle_accuracy"].max() - current["oracle_accuracy"]
    current = current.assign(run_id=run_id, dataset=dataset_key, model=cfg.model, step=step,
                             n_layers=len(current), n_original=n_original)
    if profiles.empty:
        profiles = current.iloc[0:0]
    rows, protocol = fusion.choose_training_rows(profiles, cfg.model, dataset_key, run_id, step)
    info["protocol"] = protocol
    X_now = fusion.make_features(current, normalise=cfg.normalise, depth_feature=cfg.depth_feature)
    if rows is None or len(rows) == 0:
        scores = fusion.signal_vote(X_now)
        info["ranker"] = None
    else:
        X_train = fusion.make_features(rows, normalise=cfg.normalise, depth_feature=cfg.depth_feature)
        target = fusion.FusionConfig().target  # "gap": the accuracy gap to the step's best removal
        y_train = fusion.make_target(rows, target)
        info["target"] = target  # the pages label predictions by it
        est = (fusion.ForestFusionRanker(random_state=cfg.seed) if cfg.strategy == "rf_fusion"
               else fusion.LinearFusionRanker())
        est.fit(X_train, y_train)
        scores = est.predict(X_now)
        info["ranker"] = fusion.to_json(est)
        info["shap"] = fusion.explain(est, X_train, X_now, row_ids=[int(i) for i in current["original_layer"]],
                                      random_state=cfg.seed)
    scores = np.asarray(scores, dtype=float)
    info["predicted"] = [float(s) for s in scores]
    info["candidates"] = [int(i) for i in current["original_layer"]]
    info["measured"] = [float(a) for a in current["oracle_accuracy"]]
    info["quality"] = fusion.ranker_quality(scores, current["oracle_accuracy"].to_numpy())
    chosen = int(current["original_layer"].iloc[int(np.argmax(scores))])
    return chosen, info


class StageClock:
    """Seconds spent per stage of a run (a stage may be entered several times); ``summary`` adds the total."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def tick(self, stage: str) -> None:
        """Charge the time since the last tick to ``stage``."""
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self.last
        self.last = now

    def summary(self) -> dict[str, float]:
        return {**{k: round(v, 2) for k, v in self.seconds.items()},
                "total": round(time.perf_counter() - self.start, 2)}


def prepare_and_teach(model: str, dataset_key: str, dataset: Any, data: DataConfig, teacher_cfg: TrainConfig | None,
                      device: torch.device, clock: StageClock) -> Generator[Event, None, tuple[Any, Any, TrainConfig, bool]]:
    """The first stages of every kind of run: load and tokenise the data, then fine-tune the teacher (or
    load it from the cache), yielding ``prepare`` and ``teacher`` events. ``dataset`` may be a loaded upload
    (else ``dataset_key`` is loaded); ``teacher_cfg=None`` is the model's default. Returns the task, the
    teacher (eval mode, on ``device``), the teacher's config and whether it came from the cache."""
    from .task import prepare_task
    from .teacher import TeacherResult, default_train_config, train_teacher

    yield Event("prepare", message=f"Loading {dataset_key} and tokenising for {model}")
    task = prepare_task(model, dataset if dataset is not None else dataset_key, data)
    yield Event("prepare", progress=1.0, message="Data ready", payload={"task": task.describe()})
    clock.tick("prepare")
    teacher_cfg = teacher_cfg or default_train_config(task.model.key, task.num_labels)
    result = None
    for ev in train_teacher(task, teacher_cfg, device):
        if isinstance(ev, TeacherResult):
            result = ev
        else:
            yield Event("teacher", progress=ev.fraction, message=f"Fine-tuning the teacher: step {ev.step}/"
                        f"{ev.total_steps}, loss {ev.loss:.3f}", payload={"loss": ev.loss})
    assert result is not None
    teacher = result.load().to(device).eval()
    clock.tick("teacher")
    return task, teacher, teacher_cfg, result.cached


def prune_events(cfg: PruneConfig, *, run_id: str = "", profiles: pd.DataFrame | None = None,
                 device: torch.device | None = None, dataset: Any = None) -> Iterator[Event]:
    """Run the whole method, yielding events. ``profiles`` are earlier runs' (signals + oracle) rows for
    the fusion rankers; ``dataset`` may be a loaded upload instead of ``cfg.dataset``."""
    from .metrics import accuracy_to_size_ratio
    from .models import original_layer_indices
    from .oracle import compute_oracle
    from .signals import compute_signals
    from .surgery import remove_layers

    device = device or default_device()
    torch.manual_seed(cfg.seed)
    profiles = profiles if profiles is not None else pd.DataFrame()
    clock = StageClock()
    task, teacher, teacher_cfg, cached = yield from prepare_and_teach(cfg.model, cfg.dataset, dataset, cfg.data,
                                                                      cfg.teacher, device, clock)
    val, test = task.encoded["val"], task.encoded["test"]
    base_metrics = model_metrics(teacher, val, test, device)
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
        profile = signals.merge(oracle[["original_layer", "accuracy", "loss", "accuracy_drop"]],
                                on="original_layer").rename(columns={"accuracy": "oracle_accuracy",
                                                                     "loss": "oracle_loss",
                                                                     "accuracy_drop": "oracle_drop"})
        profile = profile.assign(n_layers=len(profile), n_original=n_original, run_id=run_id,
                                 dataset=task.dataset_key, model=cfg.model, step=step)
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
        metrics = model_metrics(model, val, test, device)
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
        after = model_metrics(model, val, test, device)
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
