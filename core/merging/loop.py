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

How it is built: :func:`merge_events` is the entry. It resolves the device and the precision once
(:class:`MergeSetup`); the teacher phase gives the context every later phase reads (:class:`MergeContext`: the
task, the teacher and its scores); each phase is a small generator over that context, and the run's summary is a
:class:`core.runs.record.MergeSummary` built from what the phases measured (:class:`MergeOutcome`).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
import torch
from torch import nn

from core.config import Resolved, TrainConfig, as_resolved
from core.data.batches import Batch, batches, default_device, take
from core.merging.config import PRUNING_STRATEGY, MergeConfig, parse_window, window_label
from core.merging.ffn import align_window, check_window, ffn_activations, ffn_linears, merge_aligned, unique_ffn_count
from core.merging.windows import (
    WindowScoring,
    candidate_windows,
    chosen_window,
    cka_matrix,
    matched_pruning_depth,
    rank_windows,
    score_window,
)
from core.metrics import LatencyConfig, accuracy_to_size_ratio, measure_with_outcomes
from core.models.registry import encoder_layers, get_model_spec, original_layer_indices, recovery_lr
from core.models.surgery import remove_layers
from core.oracle import best_layer, compute_oracle
from core.precision import resolve
from core.runs import artifacts
from core.runs.events import Event, Stage, StageClock
from core.runs.record import MergeSummary, PruningSide
from core.teacher_phase import TeacherSpec, prepare_and_teach
from core.train import DistillConfig, attach_teacher_logits, fine_tune, recovery_config

__all__ = ["LATENCY", "MergeConfig", "MergeContext", "MergeSetup", "merge_events", "merge_summary"]

#: merging's latency measurement: fewer repeats than a pruning step's (merging keeps the compute; pruning
#: removes some)
LATENCY = LatencyConfig(repeats=5, warmup=1)
#: the fine-tuning learning rate of a merge run that does not set one (the tiny model has its own:
#: :func:`core.models.registry.recovery_lr`)
DEFAULT_LR = 1e-4

#: a model's scores (:meth:`core.metrics.ModelMetrics.to_dict` plus ``unique_ffns``)
Scores = dict[str, Any]


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


@dataclass(frozen=True)
class MergeSetup:
    """What the whole run shares, fixed once at its entry (:meth:`open`): the config, the device, the precision
    resolved for that device and model (never ``auto``: refused here), the clock and the outcomes kept for the
    next event."""

    cfg: MergeConfig
    device: torch.device
    precision: Resolved
    clock: StageClock = field(default_factory=StageClock)
    keep: _Kept = field(default_factory=_Kept)

    def __post_init__(self) -> None:
        as_resolved(self.precision, "MergeSetup.precision")

    @classmethod
    def open(cls, cfg: MergeConfig, device: torch.device | None = None) -> MergeSetup:
        """Where the device is chosen, the precision setting is resolved, once for the whole run."""
        device = device or default_device()
        return cls(cfg, device, resolve(cfg.precision, device, get_model_spec(cfg.model).hidden_size))

    @property
    def lr(self) -> float:
        """The recovery's learning rate: the run's own when set, else the model's default."""
        return self.cfg.lr if self.cfg.lr is not None else recovery_lr(self.cfg.model, DEFAULT_LR)

    @property
    def kd_lr(self) -> float:
        return recovery_lr(self.cfg.model, self.cfg.kd.lr)

    def recovery(self, teacher_cfg: TrainConfig, epochs: float, lr: float) -> TrainConfig:
        """A recovery's training config (:func:`core.train.recovery_config`)."""
        return recovery_config(teacher_cfg, epochs=epochs, lr=lr, seed=self.cfg.seed, precision=self.cfg.precision)


@dataclass(frozen=True)
class MergeContext:
    """What every phase after the teacher reads: the setup, the task, the teacher and its config and scores."""

    setup: MergeSetup
    task: Any
    teacher: nn.Module
    teacher_cfg: TrainConfig
    base: Scores = field(default_factory=dict)

    @property
    def cfg(self) -> MergeConfig:
        return self.setup.cfg

    @property
    def clock(self) -> StageClock:
        return self.setup.clock

    def split(self, name: str) -> Batch:
        return self.task.encoded[name]

    def score(self, model: nn.Module, name: str = "", *, timed: bool = False, teacher: bool = False) -> Scores:
        """:func:`core.metrics.measure_with_outcomes`'s record of ``model`` plus its distinct FFNs
        (``unique_ffns``); the size and the latency (:data:`LATENCY`) only when ``timed`` (the teacher and each
        side's final model). The per-example outcomes of test and val are kept as ``<name>_test`` /
        ``<name>_val`` (``test`` / ``val`` without a name), with the KL to the teacher's logits; measuring the
        ``teacher`` sets those."""
        s = self.setup
        measured = measure_with_outcomes(model, self.split("test"), val=self.split("val"), device=s.device,
                                         latency=LATENCY if timed else None, precision=s.precision,
                                         teacher_logits=None if teacher else s.keep.teacher_logits)
        for split, frame in measured.outcomes.items():
            s.keep.tables[artifacts.outcomes(f"{name}_{split}" if name else split)] = frame
        if teacher:
            s.keep.teacher_logits = measured.logits
        return {**measured.metrics.to_dict(), "unique_ffns": unique_ffn_count(model)}


@dataclass(frozen=True)
class _Recovery:
    """What the merged and the pruned model both get: the same fine-tuning and distillation budget."""

    ctx: MergeContext
    train_cfg: TrainConfig
    kd_cfg: TrainConfig | None = None
    kd: DistillConfig | None = None
    train_kd: Batch | None = None


def _recover(model: nn.Module, rec: _Recovery, label: str, stages: tuple[Stage, Stage], prefix: str = ""
             ) -> Generator[Event, None, dict[str, Scores]]:
    """Fine-tune then (optionally) distil ``model`` in place, yielding progress (0..1) under ``stages``
    (fine-tuning, distillation); returns the scores after each."""
    ctx, s = rec.ctx, rec.ctx.setup
    out: dict[str, Scores] = {}
    half = 0.5 if rec.kd is not None else 1.0
    for p in fine_tune(model, ctx.split("train"), rec.train_cfg, device=s.device, precision=s.precision):
        yield Event(stages[0], step=1, progress=half * p.fraction, message=f"{label}: fine-tuning "
                    f"{p.step}/{p.total_steps}, loss {p.loss:.3f}", payload={"loss": p.loss, "fraction": p.fraction})
    ctx.clock.tick(f"{prefix}finetune")
    method = "prune" if prefix else "merge"
    out["finetuned"] = ctx.score(model, f"{method}_finetuned", timed=rec.kd is None)
    ctx.clock.tick(f"{prefix}evaluate")
    if rec.kd is not None and rec.train_kd is not None and rec.kd_cfg is not None:
        for p in fine_tune(model, rec.train_kd, rec.kd_cfg, distill=rec.kd, device=s.device, precision=s.precision):
            yield Event(stages[1], step=1, progress=0.5 + 0.5 * p.fraction,
                        message=f"{label}: distillation {p.step}/{p.total_steps}, loss {p.loss:.3f}",
                        payload={"loss": p.loss, "fraction": p.fraction})
        ctx.clock.tick(f"{prefix}distill")
        out["distilled"] = ctx.score(model, f"{method}_distilled", timed=True)
        ctx.clock.tick(f"{prefix}evaluate")
    return out


def _prune_side(depth: int, rec: _Recovery) -> Generator[Event, None, PruningSide]:
    """Remove ``depth`` layers by the greedy oracle, then give the pruned model the same recovery budget."""
    ctx, s = rec.ctx, rec.ctx.setup
    model, removed = ctx.teacher, []
    for d in range(1, depth + 1):
        yield Event(Stage.COMPARE, step=1, progress=0.2 * (d - 1) / depth, message=f"Pruning side: oracle {d}/{depth} "
                    f"on {len(encoder_layers(model))} layers")
        best = best_layer(compute_oracle(model, ctx.split("val"), device=s.device, precision=s.precision))
        model = remove_layers(model, [best], by="original")
        removed.append(best)
    ctx.clock.tick("prune_select")
    no_tuning = ctx.score(model, "prune_no_tuning")
    ctx.clock.tick("prune_evaluate")
    scores = yield from _map_progress(_recover(model, rec, f"Pruning side ({depth} layers)",
                                               (Stage.COMPARE, Stage.COMPARE), prefix="prune_"), 0.2, 1.0)
    return PruningSide(strategy=PRUNING_STRATEGY, depth=depth, removed_layers=removed,
                       kept_layers=original_layer_indices(model), no_tuning=no_tuning,
                       finetuned=scores.get("finetuned"), distilled=scores.get("distilled"))


def _comparison_table(teacher: Mapping[str, Any], merged: Mapping[str, Any], pruning: PruningSide | None
                      ) -> pd.DataFrame:
    """Long table: method x stage -> parameters and accuracy (what the prune-vs-merge chart draws)."""
    rows = [{"method": "teacher", "stage": "teacher", **_row(teacher, teacher)}]
    side = {} if pruning is None else {"no_tuning": pruning.no_tuning, "finetuned": pruning.finetuned,
                                       "distilled": pruning.distilled}
    for method, scores in (("merge", merged), ("prune", {k: v for k, v in side.items() if v is not None})):
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
    ``run_id`` is unused (the runner passes it to every kind of run). The run's entry: the device and the
    precision are resolved here, once (:meth:`MergeSetup.open`).
    """
    del run_id
    setup = MergeSetup.open(cfg, device)
    torch.manual_seed(cfg.seed)
    ctx = yield from _teacher_phase(setup, dataset)
    acts, similarity = yield from _similarity_phase(ctx)
    window, choice = yield from _select(ctx, acts, similarity)
    merged, no_tuning = yield from _merge_phase(ctx, window, acts)
    del acts
    outcome = yield from _recover_both(ctx, (merged, window), choice, no_tuning)
    summary = replace(merge_summary(cfg, outcome), timings_s=ctx.clock.summary(), precision=setup.precision)
    yield Event(Stage.DONE, step=1, progress=1.0, message="Finished", payload=summary.to_dict(),
                tables={"comparison": _comparison_table(ctx.base, outcome.merged, outcome.pruning),
                        **setup.keep.take()},
                artifacts={"model": merged, "tokenizer": ctx.task.tokenizer})


def _recover_both(ctx: MergeContext, merge: tuple[nn.Module, tuple[int, ...]], choice: dict[str, Any],
                  no_tuning: Scores) -> Generator[Event, None, MergeOutcome]:
    """The merged model's recovery (and its step 1 row), then the pruning side's at the same budget."""
    merged, window = merge
    cfg = ctx.cfg
    budget = matched_pruning_depth(ctx.teacher, len(window))
    rec = _recovery(ctx)
    ctx.clock.tick("distill" if cfg.distill else "finetune")
    hi = 0.6 if cfg.compare_pruning else 0.95
    scores = {"no_tuning": no_tuning}
    scores.update((yield from _map_progress(
        _recover(merged, rec, f"Merged {window_label(window)}", (Stage.FINETUNE, Stage.DISTILL)), 0.2, hi)))
    outcome = MergeOutcome(ctx.base, choice, budget, scores, _shared_ok(merged, window))
    final = outcome.final
    row = {**final, "n_layers": final["num_layers"], "window": window_label(window), "merged_layers": choice["window"],
           "no_tuning_test_accuracy": no_tuning["test_accuracy"],
           "finetuned_test_accuracy": scores["finetuned"]["test_accuracy"], "ffn_still_shared": outcome.shared}
    yield Event(Stage.STEP_DONE, step=1, progress=hi,
                message=f"Merged model: test accuracy {final['test_accuracy']:.3f}", payload=row,
                tables=ctx.setup.keep.take())
    if cfg.compare_pruning:
        side = yield from _map_progress(_prune_side(budget["depth"], rec), hi, 0.98)
        outcome = replace(outcome, pruning=side)
    return outcome


def _teacher_phase(setup: MergeSetup, dataset: Any) -> Generator[Event, None, MergeContext]:
    """Data, the (cached) teacher and its scores (step 0)."""
    cfg = setup.cfg
    spec = TeacherSpec(cfg.model, cfg.dataset, dataset, cfg.data, cfg.teacher,
                       allow_weak_teacher=getattr(cfg, "allow_weak_teacher", False), precision=cfg.precision)
    task, teacher, teacher_cfg, cached = yield from prepare_and_teach(spec, setup.device, setup.clock)
    ctx = MergeContext(setup, task, teacher, teacher_cfg)
    base = ctx.score(teacher, timed=True, teacher=True)
    yield Event(Stage.STEP_DONE, step=0, progress=0.0, message=f"Teacher: test accuracy {base['test_accuracy']:.3f}",
                payload={**base, "n_layers": base["num_layers"], "window": None, "teacher_cached": cached,
                         "precision": setup.precision}, tables=setup.keep.take())
    setup.clock.tick("evaluate")
    return replace(ctx, base=base)


def _similarity_phase(ctx: MergeContext) -> Generator[Event, None, tuple[dict[int, torch.Tensor], pd.DataFrame]]:
    """FFN activations on the calibration rows and their layers x layers CKA (indexed by position)."""
    cfg, teacher = ctx.cfg, ctx.teacher
    n_layers = len(encoder_layers(teacher))
    if cfg.window:
        check_window(teacher, parse_window(cfg.window))
    elif cfg.window_size > n_layers:
        raise ValueError(f"auto_k={cfg.window_size} is larger than the model's {n_layers} layers")
    yield Event(Stage.SIMILARITY, step=0, progress=0.0, message="Recording FFN activations on calibration tokens")
    calib = list(batches(take(ctx.split("train"), cfg.calibration_size), 32))
    acts = ffn_activations(teacher, calib, device=ctx.setup.device)
    ctx.clock.tick("activations")
    similarity = cka_matrix(acts, list(range(n_layers)), max_tokens=cfg.max_cka_tokens, seed=cfg.seed)
    labelled = similarity.copy()
    labelled.index = labelled.columns = original_layer_indices(teacher)
    labelled.index.name = "layer"
    yield Event(Stage.SIMILARITY, step=0, progress=0.05, message=f"FFN similarity (linear CKA) of {n_layers} layers "
                f"on {acts[0].shape[0]} tokens", tables={"ffn_similarity": labelled.reset_index()})
    ctx.clock.tick("similarity")
    return acts, similarity


def _select(ctx: MergeContext, acts: Mapping[int, torch.Tensor], similarity: pd.DataFrame
            ) -> Generator[Event, None, tuple[tuple[int, ...], dict[str, Any]]]:
    """The window (fixed, or the best candidate) and the choice payload, with a progress event per scored
    candidate and the ``choice`` event carrying the table of candidates."""
    cfg, teacher, s = ctx.cfg, ctx.teacher, ctx.setup
    if cfg.window:
        how = WindowScoring(acts, similarity, "similarity", s.precision)
        table = rank_windows([score_window(teacher, parse_window(cfg.window), how)], "similarity")
    else:
        how = WindowScoring(acts, similarity, cfg.selection, s.precision, val=ctx.split("val"),
                            reference=cfg.reference, device=s.device)
        windows = candidate_windows(teacher, cfg.window_size)
        rows = []
        for done, window in enumerate(windows, start=1):
            rows.append(score_window(teacher, window, how))
            score = rows[-1].get("val_accuracy", rows[-1]["mean_cka"])
            yield Event(Stage.SELECT, step=1, progress=0.05 + 0.1 * done / len(windows),
                        message=f"Window {done}/{len(windows)} ({rows[-1]['window']}): {cfg.selection} {score:.3f}")
        table = rank_windows(rows, cfg.selection)
    window = chosen_window(table)
    ctx.clock.tick("selection")
    choice = {"window": list(window), "label": window_label(window), "size": len(window),
              "selection": "fixed" if cfg.window else cfg.selection, "scores": table.to_dict(orient="records")}
    yield Event(Stage.CHOICE, step=1, progress=0.15, message=f"Merging the FFNs of layers {window_label(window)} "
                f"({choice['selection']})", payload=choice, tables={"windows": table})
    return window, choice


def _merge_phase(ctx: MergeContext, window: tuple[int, ...], acts: Mapping[int, torch.Tensor]
                 ) -> Generator[Event, None, tuple[nn.Module, Scores]]:
    """Align, merge and tie; the merged model and its scores without tuning."""
    teacher, reference = ctx.teacher, ctx.cfg.reference
    yield Event(Stage.ALIGN, step=1, progress=0.15, message=f"Aligning {len(window) - 1} layer(s) to the reference")
    perms, alignment = align_window(teacher, window, acts, reference)
    ctx.clock.tick("align")
    yield Event(Stage.ALIGN, step=1, progress=0.17, message="Neurons aligned (Hungarian assignment on correlations)",
                payload={"alignment": alignment.to_dict(orient="records")}, tables={"alignment": alignment})
    merged = merge_aligned(teacher, window, perms, reference)
    ctx.clock.tick("merge")
    no_tuning = ctx.score(merged, "merge_no_tuning")
    ctx.clock.tick("evaluate")
    yield Event(Stage.MERGE, step=1, progress=0.2,
                message=f"Merged: {ctx.base['params_total'] - no_tuning['params_total']:,} parameters removed; "
                f"validation accuracy without tuning {no_tuning['val_accuracy']:.3f}",
                payload={"no_tuning": no_tuning}, tables=ctx.setup.keep.take())
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


def _recovery(ctx: MergeContext) -> _Recovery:
    """The recovery budget both sides get: fine-tuning, and distillation from the teacher when the run asks."""
    s, cfg = ctx.setup, ctx.cfg
    train_cfg = s.recovery(ctx.teacher_cfg, cfg.epochs, s.lr)
    if not cfg.distill:
        return _Recovery(ctx, train_cfg)
    kd = DistillConfig(temperature=cfg.kd.temperature, alpha=cfg.kd.alpha, epochs=cfg.kd.epochs, lr=s.kd_lr)
    train_kd = attach_teacher_logits(ctx.split("train"), ctx.teacher, device=s.device, precision=s.precision)
    return _Recovery(ctx, train_cfg, s.recovery(train_cfg, cfg.kd.epochs, s.kd_lr), kd, train_kd)


def _shared_ok(model: nn.Module, window: Sequence[int]) -> bool:
    """Whether every layer of the window still holds the same FFN parameters (same storage)."""
    layers = encoder_layers(model)
    ptrs = {(ffn_linears(layers[p])[0].weight.data_ptr(), ffn_linears(layers[p])[1].weight.data_ptr())
            for p in window}
    return len(ptrs) == 1


@dataclass(frozen=True)
class MergeOutcome:
    """What a merge run measured, before it is summarised: the teacher's scores, the window chosen (the choice
    event's payload), the matched pruning budget, the merged model's scores per stage, whether the window's
    FFNs are still shared, and the pruning side."""

    base: Mapping[str, Any]
    choice: Mapping[str, Any]
    budget: Mapping[str, int]
    merged: dict[str, Scores]
    shared: bool
    pruning: PruningSide | None = None

    @property
    def final(self) -> Scores:
        """The merged model after recovery: distilled when it ran, else fine-tuned."""
        return self.merged.get("distilled") or self.merged["finetuned"]


def merge_summary(cfg: MergeConfig, outcome: MergeOutcome) -> MergeSummary:
    """The figures of a merge run's summary (the run adds its timings and precision)."""
    base, final, merged = outcome.base, outcome.final, outcome.merged
    acc = ("test_accuracy", "test_macro_f1", "val_accuracy")
    return MergeSummary(
        teacher=dict(base), window=list(outcome.choice["window"]), window_label=outcome.choice["label"],
        selection=outcome.choice["selection"], reference=cfg.reference,
        params={"before": base["params_total"], "after": final["params_total"],
                "removed": base["params_total"] - final["params_total"],
                "removed_fraction": 1 - final["params_total"] / base["params_total"],
                "ffn_params_per_layer": outcome.budget["ffn_params"], "unique_ffns_before": base["unique_ffns"],
                "unique_ffns_after": final["unique_ffns"]},
        merged=merged, final=final, ffn_still_shared=outcome.shared,
        before_kd={k: merged["finetuned"][k] for k in acc}, budget=dict(outcome.budget), pruning=outcome.pruning,
        ratio=accuracy_to_size_ratio(accuracy=final["test_accuracy"], params=final["params_total"],
                                     teacher_accuracy=base["test_accuracy"], teacher_params=base["params_total"])
        if base["test_accuracy"] > 0 else None,
        after_kd={k: merged["distilled"][k] for k in acc} if "distilled" in merged else None)
