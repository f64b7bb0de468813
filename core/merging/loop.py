"""Merging feed-forward sublayers (Verma, Murray, Duh, arXiv 2501.06126) against pruning at an equal budget:
the run pipeline, as a generator of events (:func:`merge_events`).

The method, on any BERT-family classifier: record the FFN activations on calibration rows, choose a window of
consecutive layers (:mod:`core.merging.windows`), align every layer's neurons to the reference layer, average
and tie the aligned FFNs (:mod:`core.merging.ffn`), then recover: fine-tune with :func:`core.train.fine_tune`
(shared parameters stay shared) and optionally distil from the teacher.

Prune vs merge: merging ``k`` FFNs removes ``k - 1`` FFNs' worth of parameters; the pruning side removes the
number of whole layers whose parameter count is closest (:func:`core.merging.windows.matched_pruning_depth`),
chosen by the greedy oracle (:func:`core.oracle.compute_oracle`: remove the layer whose removal costs least
validation accuracy, re-measure, repeat; no tuning in between: the same "measure, do not predict" rule as the
accuracy window selection), then gets the same fine-tuning and distillation budget. Both sides are measured by
:func:`core.metrics.measure_model`. Merging never imports :mod:`core.pruning`: the oracle is a measurement
(:mod:`core.oracle`) and layer removal is model surgery (:mod:`core.models.surgery`).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
import torch
from torch import nn

from core.config import TrainConfig
from core.data.batches import Batch, batches, default_device, take
from core.merging.config import PRUNING_STRATEGY, MergeConfig, parse_window, window_label
from core.merging.ffn import align_window, check_window, ffn_activations, ffn_linears, merge_aligned, unique_ffn_count
from core.merging.windows import (
    candidate_windows,
    chosen_window,
    cka_matrix,
    matched_pruning_depth,
    rank_windows,
    score_window,
)
from core.metrics import LatencyConfig, accuracy_to_size_ratio, measure_with_outcomes
from core.models.registry import encoder_layers, get_model_spec, original_layer_indices
from core.models.surgery import remove_layers
from core.oracle import best_layer, compute_oracle
from core.precision import resolve
from core.runs import artifacts
from core.runs.events import Event, Stage, StageClock
from core.teacher_phase import prepare_and_teach
from core.train import DistillConfig, attach_teacher_logits, fine_tune

__all__ = ["LATENCY", "MergeConfig", "merge_events", "model_scores"]

#: merging's latency measurement: fewer repeats than a pruning step's (merging keeps the compute; pruning
#: removes some)
LATENCY = LatencyConfig(repeats=5, warmup=1)



def _resolved(cfg: MergeConfig, device: torch.device) -> str:
    """The precision that runs for ``cfg`` on ``device`` (the model's width decides ``auto``)."""
    return resolve(cfg.precision, device, get_model_spec(cfg.model).hidden_size)

def _lr_default(model_key: str, lr: float | None, fallback: float) -> float:
    if lr is not None:
        return lr
    return 1e-3 if model_key == "tiny-bert" else fallback


@dataclass
class _Kept:
    """Per-example outcomes measured and not yet sent (``Event.tables`` under :mod:`core.runs.artifacts` names),
    and the teacher's logits every later evaluation's KL is measured against."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    teacher_logits: dict[str, torch.Tensor] = field(default_factory=dict)

    def take(self) -> dict[str, pd.DataFrame]:
        """The outcomes kept since the last call (for the next event to carry)."""
        out, self.tables = self.tables, {}
        return out


def model_scores(model: nn.Module, val: Batch, test: Batch, device: torch.device | None = None, *,
                 timed: bool = False, precision: str = "fp32", keep: _Kept | None = None,
                 name: str = "", teacher: bool = False) -> dict[str, Any]:
    """:func:`core.metrics.measure_model`'s record of ``model`` plus its distinct FFNs (``unique_ffns``); the
    size and the latency (:data:`LATENCY`) only when ``timed`` (the teacher and each side's final model). With
    ``keep``, the per-example outcomes of test and val go into it as ``<name>_test`` / ``<name>_val`` (``test`` /
    ``val`` without a name), with the KL to ``keep.teacher_logits``; measuring the ``teacher`` sets those."""
    measured = measure_with_outcomes(model, test, val=val, device=device, latency=LATENCY if timed else None,
                                     precision=precision, teacher_logits=keep.teacher_logits if keep else None)
    if keep is not None:
        for split, frame in measured.outcomes.items():
            keep.tables[artifacts.outcomes(f"{name}_{split}" if name else split)] = frame
        if teacher:
            keep.teacher_logits = measured.logits
    return {**measured.metrics.to_dict(), "unique_ffns": unique_ffn_count(model)}


@dataclass
class _Recovery:
    """What the merged and the pruned model both get: the same fine-tuning and distillation budget."""

    train: Batch
    train_kd: Batch | None
    train_cfg: TrainConfig
    kd_cfg: TrainConfig | None
    kd: DistillConfig | None
    val: Batch
    test: Batch
    device: torch.device
    precision: str = "fp32"  # resolved (core.precision)
    keep: _Kept | None = None  # per-example outcomes (model_scores)


def _recover(model: nn.Module, rec: _Recovery, clock: StageClock, label: str, stages: tuple[Stage, Stage],
             prefix: str = "") -> Generator[Event, None, dict[str, dict[str, Any]]]:
    """Fine-tune then (optionally) distil ``model`` in place, yielding progress (0..1) under ``stages``
    (fine-tuning, distillation); returns the scores after each."""
    out: dict[str, dict[str, Any]] = {}
    half = 0.5 if rec.kd is not None else 1.0
    for p in fine_tune(model, rec.train, rec.train_cfg, device=rec.device):
        yield Event(stages[0], step=1, progress=half * p.fraction, message=f"{label}: fine-tuning "
                    f"{p.step}/{p.total_steps}, loss {p.loss:.3f}", payload={"loss": p.loss, "fraction": p.fraction})
    clock.tick(f"{prefix}finetune")
    method = "prune" if prefix else "merge"
    out["finetuned"] = model_scores(model, rec.val, rec.test, rec.device, timed=rec.kd is None,
                                    precision=rec.precision, keep=rec.keep, name=f"{method}_finetuned")
    clock.tick(f"{prefix}evaluate")
    if rec.kd is not None and rec.train_kd is not None and rec.kd_cfg is not None:
        for p in fine_tune(model, rec.train_kd, rec.kd_cfg, distill=rec.kd, device=rec.device):
            yield Event(stages[1], step=1, progress=0.5 + 0.5 * p.fraction,
                        message=f"{label}: distillation {p.step}/{p.total_steps}, loss {p.loss:.3f}",
                        payload={"loss": p.loss, "fraction": p.fraction})
        clock.tick(f"{prefix}distill")
        out["distilled"] = model_scores(model, rec.val, rec.test, rec.device, timed=True, precision=rec.precision,
                                        keep=rec.keep, name=f"{method}_distilled")
        clock.tick(f"{prefix}evaluate")
    return out


def _prune_side(teacher: nn.Module, depth: int, rec: _Recovery, clock: StageClock
                ) -> Generator[Event, None, dict[str, Any]]:
    """Remove ``depth`` layers by the greedy oracle, then give the pruned model the same recovery budget."""
    model, removed = teacher, []
    for d in range(1, depth + 1):
        yield Event(Stage.COMPARE, step=1, progress=0.2 * (d - 1) / depth, message=f"Pruning side: oracle {d}/{depth} "
                    f"on {len(encoder_layers(model))} layers")
        oracle = compute_oracle(model, rec.val, device=rec.device, precision=rec.precision)
        best = best_layer(oracle)
        model = remove_layers(model, [best], by="original")
        removed.append(best)
    clock.tick("prune_select")
    scores = {"no_tuning": model_scores(model, rec.val, rec.test, rec.device, precision=rec.precision, keep=rec.keep,
                                        name="prune_no_tuning")}
    clock.tick("prune_evaluate")
    scores.update((yield from _map_progress(_recover(model, rec, clock, f"Pruning side ({depth} layers)",
                                                     (Stage.COMPARE, Stage.COMPARE), prefix="prune_"), 0.2, 1.0)))
    return {"strategy": PRUNING_STRATEGY, "depth": depth, "removed_layers": removed,
            "kept_layers": original_layer_indices(model), **scores}


def _comparison_table(teacher: dict[str, Any], merged: Mapping[str, Any], pruning: Mapping[str, Any] | None
                      ) -> pd.DataFrame:
    """Long table: method x stage -> parameters and accuracy (what the prune-vs-merge chart draws)."""
    rows = [{"method": "teacher", "stage": "teacher", **_row(teacher, teacher)}]
    for method, scores in (("merge", merged), ("prune", pruning or {})):
        for stage in ("no_tuning", "finetuned", "distilled"):
            if stage in scores:
                rows.append({"method": method, "stage": stage, **_row(scores[stage], teacher)})
    return pd.DataFrame(rows)


def _row(scores: Mapping[str, Any], teacher: Mapping[str, Any]) -> dict[str, Any]:
    return {"params_total": scores["params_total"],
            "params_removed": teacher["params_total"] - scores["params_total"],
            "n_layers": scores["num_layers"], "unique_ffns": scores["unique_ffns"],
            "val_accuracy": scores["val_accuracy"], "test_accuracy": scores["test_accuracy"],
            "test_macro_f1": scores["test_macro_f1"]}


def merge_events(cfg: MergeConfig, *, run_id: str = "", dataset: Any = None,
                 device: torch.device | None = None) -> Iterator[Event]:
    """Run the whole method (and the matched pruning side), yielding :class:`core.runs.events.Event` objects.

    Stages: prepare, teacher, step_done (step 0: the teacher), similarity (table ``ffn_similarity``),
    select (one per scored candidate), choice (table ``windows``), align (table ``alignment``), merge,
    finetune, distill, step_done (step 1: the merged model), compare (the pruning side), done (summary,
    table ``comparison``, the merged model). ``dataset`` may be a loaded upload instead of ``cfg.dataset``;
    ``run_id`` is unused (the runner passes it to every kind of run).
    """
    del run_id
    device = device or default_device()
    torch.manual_seed(cfg.seed)
    clock = StageClock()
    keep = _Kept()
    task, teacher, teacher_cfg, base = yield from _teacher_phase(cfg, dataset, device, clock, keep)
    acts, similarity = yield from _similarity_phase(cfg, task, teacher, device, clock)
    window, choice = yield from _select(cfg, teacher, acts, similarity, task.encoded["val"], device, clock)
    merged, no_tuning = yield from _merge_phase(cfg, teacher, window, acts, base, task, device, clock, keep)
    del acts
    budget = matched_pruning_depth(teacher, len(window))
    rec = replace(_recovery(cfg, task, teacher, teacher_cfg, device), keep=keep)
    clock.tick("distill" if cfg.distill else "finetune")
    hi = 0.6 if cfg.compare_pruning else 0.95
    merged_scores = {"no_tuning": no_tuning}
    merged_scores.update((yield from _map_progress(
        _recover(merged, rec, clock, f"Merged {window_label(window)}", (Stage.FINETUNE, Stage.DISTILL)), 0.2, hi)))
    final = merged_scores.get("distilled") or merged_scores["finetuned"]
    shared = _shared_ok(merged, window)
    row = {**final, "n_layers": final["num_layers"], "window": window_label(window), "merged_layers": choice["window"],
           "no_tuning_test_accuracy": no_tuning["test_accuracy"],
           "finetuned_test_accuracy": merged_scores["finetuned"]["test_accuracy"], "ffn_still_shared": shared}
    yield Event(Stage.STEP_DONE, step=1, progress=hi,
                message=f"Merged model: test accuracy {final['test_accuracy']:.3f}", payload=row, tables=keep.take())
    pruning = None
    if cfg.compare_pruning:
        pruning = yield from _map_progress(_prune_side(teacher, budget["depth"], rec, clock), hi, 0.98)
    summary = _summary(cfg, base, choice, budget, merged_scores, final, pruning, shared, clock)
    summary["precision"] = _resolved(cfg, device)
    yield Event(Stage.DONE, step=1, progress=1.0, message="Finished", payload=summary,
                tables={"comparison": _comparison_table(base, merged_scores, pruning), **keep.take()},
                artifacts={"model": merged, "tokenizer": task.tokenizer})


def _teacher_phase(cfg: MergeConfig, dataset: Any, device: torch.device, clock: StageClock, keep: _Kept | None = None
                   ) -> Generator[Event, None, tuple[Any, nn.Module, TrainConfig, dict[str, Any]]]:
    """Data, the (cached) teacher and its scores (step 0)."""
    task, teacher, teacher_cfg, cached = yield from prepare_and_teach(
        cfg.model, cfg.dataset, dataset, cfg.data, cfg.teacher, device, clock,
        allow_weak_teacher=getattr(cfg, "allow_weak_teacher", False), precision=cfg.precision)
    base = model_scores(teacher, task.encoded["val"], task.encoded["test"], device, timed=True,
                        precision=_resolved(cfg, device), keep=keep, teacher=True)
    yield Event(Stage.STEP_DONE, step=0, progress=0.0, message=f"Teacher: test accuracy {base['test_accuracy']:.3f}",
                payload={**base, "n_layers": base["num_layers"], "window": None, "teacher_cached": cached,
                         "precision": _resolved(cfg, device)}, tables=keep.take() if keep else {})
    clock.tick("evaluate")
    return task, teacher, teacher_cfg, base


def _similarity_phase(cfg: MergeConfig, task: Any, teacher: nn.Module, device: torch.device, clock: StageClock
                      ) -> Generator[Event, None, tuple[dict[int, torch.Tensor], pd.DataFrame]]:
    """FFN activations on the calibration rows and their layers x layers CKA (indexed by position)."""
    n_layers = len(encoder_layers(teacher))
    if cfg.window:
        check_window(teacher, parse_window(cfg.window))
    elif cfg.window_size > n_layers:
        raise ValueError(f"auto_k={cfg.window_size} is larger than the model's {n_layers} layers")
    yield Event(Stage.SIMILARITY, step=0, progress=0.0, message="Recording FFN activations on calibration tokens")
    calib = list(batches(take(task.encoded["train"], cfg.calibration_size), 32))
    acts = ffn_activations(teacher, calib, device=device)
    clock.tick("activations")
    similarity = cka_matrix(acts, list(range(n_layers)), max_tokens=cfg.max_cka_tokens, seed=cfg.seed)
    labelled = similarity.copy()
    labelled.index = labelled.columns = original_layer_indices(teacher)
    labelled.index.name = "layer"
    yield Event(Stage.SIMILARITY, step=0, progress=0.05, message=f"FFN similarity (linear CKA) of {n_layers} layers "
                f"on {acts[0].shape[0]} tokens", tables={"ffn_similarity": labelled.reset_index()})
    clock.tick("similarity")
    return acts, similarity


def _select(cfg: MergeConfig, teacher: nn.Module, acts: Mapping[int, torch.Tensor], similarity: pd.DataFrame,
            val: Batch, device: torch.device, clock: StageClock
            ) -> Generator[Event, None, tuple[tuple[int, ...], dict[str, Any]]]:
    """The window (fixed, or the best candidate) and the choice payload, with a progress event per scored
    candidate and the ``choice`` event carrying the table of candidates."""
    if cfg.window:
        rows = [score_window(teacher, parse_window(cfg.window), acts, similarity, "similarity")]
        table = rank_windows(rows, "similarity")
    else:
        windows = candidate_windows(teacher, cfg.window_size)
        rows = []
        for done, window in enumerate(windows, start=1):
            rows.append(score_window(teacher, window, acts, similarity, cfg.selection, val=val,
                                     reference=cfg.reference, device=device,
                                     precision=_resolved(cfg, device)))
            score = rows[-1].get("val_accuracy", rows[-1]["mean_cka"])
            yield Event(Stage.SELECT, step=1, progress=0.05 + 0.1 * done / len(windows),
                        message=f"Window {done}/{len(windows)} ({rows[-1]['window']}): {cfg.selection} {score:.3f}")
        table = rank_windows(rows, cfg.selection)
    window = chosen_window(table)
    clock.tick("selection")
    choice = {"window": list(window), "label": window_label(window), "size": len(window),
              "selection": "fixed" if cfg.window else cfg.selection, "scores": table.to_dict(orient="records")}
    yield Event(Stage.CHOICE, step=1, progress=0.15, message=f"Merging the FFNs of layers {window_label(window)} "
                f"({choice['selection']})", payload=choice, tables={"windows": table})
    return window, choice


def _merge_phase(cfg: MergeConfig, teacher: nn.Module, window: tuple[int, ...], acts: Mapping[int, torch.Tensor],
                 base: dict[str, Any], task: Any, device: torch.device, clock: StageClock,
                 keep: _Kept | None = None) -> Generator[Event, None, tuple[nn.Module, dict[str, Any]]]:
    """Align, merge and tie; the merged model and its scores without tuning."""
    yield Event(Stage.ALIGN, step=1, progress=0.15, message=f"Aligning {len(window) - 1} layer(s) to the reference")
    perms, alignment = align_window(teacher, window, acts, cfg.reference)
    clock.tick("align")
    yield Event(Stage.ALIGN, step=1, progress=0.17, message="Neurons aligned (Hungarian assignment on correlations)",
                payload={"alignment": alignment.to_dict(orient="records")}, tables={"alignment": alignment})
    merged = merge_aligned(teacher, window, perms, cfg.reference)
    clock.tick("merge")
    no_tuning = model_scores(merged, task.encoded["val"], task.encoded["test"], device,
                             precision=_resolved(cfg, device), keep=keep, name="merge_no_tuning")
    clock.tick("evaluate")
    yield Event(Stage.MERGE, step=1, progress=0.2,
                message=f"Merged: {base['params_total'] - no_tuning['params_total']:,} parameters removed; "
                f"validation accuracy without tuning {no_tuning['val_accuracy']:.3f}",
                payload={"no_tuning": no_tuning}, tables=keep.take() if keep else {})
    return merged, no_tuning


def _map_progress(gen: Generator[Event, None, Any], lo: float, hi: float) -> Generator[Event, None, Any]:
    """Re-yield a sub-generator's events with their progress mapped into [lo, hi]; return its value."""
    try:
        ev = next(gen)
        while True:
            p = ev.progress
            yield replace(ev, progress=None if p is None else lo + (hi - lo) * p)
            ev = next(gen)
    except StopIteration as stop:
        return stop.value


def _recovery(cfg: MergeConfig, task: Any, teacher: nn.Module, teacher_cfg: TrainConfig,
              device: torch.device) -> _Recovery:
    lr = _lr_default(task.model.key, cfg.lr, 1e-4)
    train_cfg = TrainConfig(epochs=cfg.epochs, lr=lr, batch_size=teacher_cfg.batch_size,
                            freeze_word_embeddings=teacher_cfg.freeze_word_embeddings, head_lr_multiplier=1.0,
                            seed=cfg.seed, precision=cfg.precision)
    kd = kd_cfg = train_kd = None
    if cfg.distill:
        kd_lr = 1e-3 if task.model.key == "tiny-bert" else cfg.kd.lr
        kd = DistillConfig(temperature=cfg.kd.temperature, alpha=cfg.kd.alpha, epochs=cfg.kd.epochs, lr=kd_lr)
        kd_cfg = TrainConfig(epochs=cfg.kd.epochs, lr=kd_lr, batch_size=train_cfg.batch_size,
                             freeze_word_embeddings=train_cfg.freeze_word_embeddings, head_lr_multiplier=1.0,
                             seed=cfg.seed, precision=cfg.precision)
        train_kd = attach_teacher_logits(task.encoded["train"], teacher, device=device,
                                         precision=_resolved(cfg, device))
    return _Recovery(task.encoded["train"], train_kd, train_cfg, kd_cfg, kd, task.encoded["val"],
                     task.encoded["test"], device, _resolved(cfg, device))


def _shared_ok(model: nn.Module, window: Sequence[int]) -> bool:
    """Whether every layer of the window still holds the same FFN parameters (same storage)."""
    layers = encoder_layers(model)
    ptrs = {(ffn_linears(layers[p])[0].weight.data_ptr(), ffn_linears(layers[p])[1].weight.data_ptr())
            for p in window}
    return len(ptrs) == 1


def _summary(cfg: MergeConfig, base: dict[str, Any], choice: dict[str, Any], budget: dict[str, int],
             merged: dict[str, dict[str, Any]], final: dict[str, Any], pruning: dict[str, Any] | None,
             shared: bool, clock: StageClock) -> dict[str, Any]:
    acc = ("test_accuracy", "test_macro_f1", "val_accuracy")
    summary: dict[str, Any] = {
        "teacher": base, "window": choice["window"], "window_label": choice["label"],
        "selection": choice["selection"], "reference": cfg.reference,
        "params": {"before": base["params_total"], "after": final["params_total"],
                   "removed": base["params_total"] - final["params_total"],
                   "removed_fraction": 1 - final["params_total"] / base["params_total"],
                   "ffn_params_per_layer": budget["ffn_params"], "unique_ffns_before": base["unique_ffns"],
                   "unique_ffns_after": final["unique_ffns"]},
        "merged": merged, "final": final, "ffn_still_shared": shared,
        "before_kd": {k: merged["finetuned"][k] for k in acc},
        "budget": budget, "pruning": pruning,
        "ratio": accuracy_to_size_ratio(accuracy=final["test_accuracy"], params=final["params_total"],
                                        teacher_accuracy=base["test_accuracy"], teacher_params=base["params_total"])
        if base["test_accuracy"] > 0 else None,
    }
    if "distilled" in merged:
        summary["after_kd"] = {k: merged["distilled"][k] for k in acc}
    summary["timings_s"] = clock.summary()
    return summary
