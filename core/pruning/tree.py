"""Greedy layer pruning for several strategies at once, walked as a tree of shared model states.

Runs of the same model, dataset, data settings, teacher, seed and budget differ only where their strategies
choose different layers. :func:`walk` prunes all of them together, one depth at a time: at every distinct model
state (the ordered tuple of layers removed so far) the twelve signals and the oracle are computed **once** for
every strategy standing on it; every distinct (state, removed layer) is fine-tuned **once**; states no longer
needed are dropped. Fine-tuning is seeded per call (:func:`core.train.fine_tune`), so a strategy walked in a
tree of eighteen gives exactly what it gives alone; a single run is a tree of one
(:func:`core.pruning.loop.prune_events`).

How it is built: :class:`TreeWalk` is the entry. It resolves what the whole walk shares once, before anything
runs (:class:`core.pruning.context.WalkSetup`: the device, the precision resolved for it, the recovery learning
rates, the ratio function); the teacher phase then gives the run-level context every step reads
(:class:`core.pruning.context.WalkContext`: the task, the teacher and its scores, the step's training config, the
clock). Each depth visits its states, and each state goes through small steps: scan (signals and oracle), choose,
remove and fine-tune, evaluate and record (a :class:`core.runs.results.StepRow` per member); the members' ends are
a distillation and a :class:`core.runs.results.PruneSummary`. A :class:`core.pruning.context.Roster` says whom an
event goes to (members dropped by the caller hear nothing more).

The walk yields ``(run_id, Event)`` pairs and never touches the run store: the caller records them.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator, Sequence
from dataclasses import replace
from typing import Any

import pandas as pd
import torch

from core.config import Resolved
from core.data.batches import batches, take
from core.fusion import profile_rows
from core.models.registry import original_layer_indices
from core.models.surgery import remove_layers
from core.oracle import best_layer, oracle_with_logits
from core.pruning.config import PruneConfig
from core.pruning.context import (
    Choices,
    Frontier,
    Member,
    Roster,
    Routed,
    Scan,
    StepAt,
    WalkContext,
    WalkSetup,
    WalkStats,
    prune_summary,
    ranker_mark,
)
from core.pruning.strategies import StepInputs, choose
from core.runs import artifacts
from core.runs.events import Event, Stage, StageClock
from core.runs.results import OracleMark, StepRow, TeacherOrigin
from core.signals import compute_signals
from core.teacher_phase import TeacherSpec, prepare_and_teach
from core.train import DistillConfig, fine_tune, per_example
from core.version import code_version

__all__ = ["Member", "TreeWalk", "WalkContext", "WalkSetup", "WalkStats", "group_key", "oracle_outcomes",
           "prune_summary", "walk"]


def group_key(cfg: PruneConfig) -> str:
    """Everything that determines a run's result except its strategy, as canonical JSON."""
    d = cfg.to_dict()
    d.pop("strategy", None)
    return json.dumps(d, sort_keys=True)


def oracle_outcomes(oracle: pd.DataFrame, removed_logits: Sequence[torch.Tensor], val: Any,
                    teacher_val_logits: torch.Tensor | None = None) -> pd.DataFrame:
    """Per-example outcomes of every oracle candidate on the validation split (:func:`core.train.per_example`),
    one block per removed layer (column ``original_layer``) in the oracle table's row order."""
    frames = [per_example(logits, val["labels"], teacher_val_logits).assign(original_layer=int(layer))
              for logits, layer in zip(removed_logits, oracle["original_layer"])]
    out = pd.concat(frames, ignore_index=True)
    out["original_layer"] = out["original_layer"].astype("int16")
    return out


# ------------------------------------------------------------------------------------------ the walk
class TreeWalk:
    """Prune ``configs`` (one per run id, all in one group) together. Iterate :meth:`events`; call :meth:`drop`
    to stop one member (e.g. cancelled) between events; :attr:`stats` says what was shared."""

    def __init__(self, configs: Sequence[PruneConfig], run_ids: Sequence[str], *, profiles: pd.DataFrame | None = None,
                 device: torch.device | None = None, dataset: Any = None) -> None:
        if not configs or len(configs) != len(run_ids):
            raise ValueError(f"TreeWalk needs one run id per config, got {len(configs)} configs and {len(run_ids)} ids")
        if len({group_key(c) for c in configs}) != 1:
            raise ValueError("TreeWalk: configs differ in more than their strategy; walk each group separately")
        if len(set(run_ids)) != len(run_ids):
            raise ValueError("TreeWalk: run ids must be distinct")
        self.setup = WalkSetup.open(configs[0], device)
        self.roster = Roster([Member(r, c) for r, c in zip(run_ids, configs)])
        self.profiles = profiles if profiles is not None else pd.DataFrame()
        self.dataset = dataset
        self.stats = WalkStats()
        self._stopped_at: dict[str, tuple[tuple[int, ...], torch.nn.Module]] = {}

    @property
    def members(self) -> list[Member]:
        return self.roster.members

    @property
    def precision(self) -> Resolved:
        """What runs here (fp32/bf16/fp16), never "auto": recorded with every result."""
        return self.setup.precision

    def drop(self, run_id: str) -> None:
        self.roster.dropped.add(run_id)

    def events(self) -> Iterator[Routed]:
        torch.manual_seed(self.setup.cfg.seed)
        ctx = yield from self._teach()
        yield from self._step_zero(ctx)
        frontier: Frontier = {(): (ctx.teacher, list(self.members))}
        for step in range(1, ctx.target + 1):
            frontier = yield from self._depth(ctx, StepAt(step, ctx.target), frontier)
            if not frontier:
                break
        yield from self._finish(ctx, self._finals(frontier))

    # ------------------------------------------------------------------------------- the teacher (step 0)
    def _teach(self) -> Generator[Routed, None, WalkContext]:
        """The teacher phase, shared: every member gets its events; returns the walk's context."""
        s, cfg, clock = self.setup, self.setup.cfg, StageClock()
        spec = TeacherSpec(cfg.model, cfg.dataset, self.dataset, cfg.data, cfg.teacher,
                           allow_weak_teacher=cfg.allow_weak_teacher, precision=cfg.precision)
        phase = prepare_and_teach(spec, s.device, clock)
        weak = False
        while True:
            try:
                ev = next(phase)
            except StopIteration as stop:
                task, teacher, teacher_cfg, cached = stop.value
                break
            weak = weak or (ev.stage == Stage.TEACHER_CHECK and bool(ev.payload.get("weak")))
            yield from self.roster.to_live(self.members, ev)
        step_cfg = s.recovery(teacher_cfg, cfg.step_epochs, s.step_lr)
        return WalkContext(s, task, teacher, step_cfg, clock, weak_teacher=weak, teacher_cached=cached,
                           n_original=len(original_layer_indices(teacher)))

    def _step_zero(self, ctx: WalkContext) -> Iterator[Routed]:
        """Measure the teacher (every later evaluation's reference) and record it as every member's step 0."""
        ctx.base, tables, ctx.teacher_logits = ctx.measure(ctx.teacher)  # no teacher logits yet: no KL
        key = getattr(getattr(ctx.teacher, "config", None), "teacher_key", None)
        origin = TeacherOrigin(cached=ctx.teacher_cached, key=key, code_version=code_version(),
                               precision=self.setup.precision, weak=ctx.weak_teacher)
        row = StepRow(n_layers=ctx.n_original, removed=None, removed_order=(), metrics=ctx.base, teacher=origin)
        for m in self.members:
            m.history.append(row)
        yield from self.roster.to_live(self.members, Event(
            Stage.STEP_DONE, step=0, progress=0.0, message=f"Teacher: test accuracy {ctx.base['test_accuracy']:.3f}",
            payload=row.to_dict(), tables=tables))
        ctx.clock.tick("evaluate")
        ctx.calib = list(batches(take(ctx.task.encoded["train"], self.setup.cfg.calibration_size), 32))

    # ------------------------------------------------------------------------------- one depth
    def _depth(self, ctx: WalkContext, at: StepAt, frontier: Frontier) -> Generator[Routed, None, Frontier]:
        """Every live state of this depth: scan, choose, and one child per distinct chosen layer."""
        nxt: Frontier = {}
        states = tunes = 0
        for path, (model, members) in frontier.items():
            members = self.roster.live(members)
            if not members:
                continue
            states += 1
            where = f"state {states} of {len(frontier)}, removed {', '.join(f'L{l}' for l in path)}: " if path else ""
            scan = yield from self._scan(ctx, at, model, members, where)
            choices = yield from self._choose(ctx, at, scan, members)
            for layer, chosen in choices.items():
                tunes += 1
                child = yield from self._remove_and_tune(ctx, at, model, layer, [m for m, _ in chosen])
                yield from self._evaluate(ctx, at, (path, layer, child), scan, chosen)
                nxt[path + (layer,)] = (child, [m for m, _ in chosen])
        self.stats.states_per_depth[at.step] = states
        self.stats.finetunes_per_depth[at.step] = tunes
        return nxt

    def _scan(self, ctx: WalkContext, at: StepAt, model: torch.nn.Module, members: list[Member], where: str
              ) -> Generator[Routed, None, Scan]:
        """The twelve signals and the oracle of one state, once for every member standing on it."""
        s = self.setup
        yield from self.roster.to_live(members, Event(
            Stage.SIGNALS, step=at.step, progress=at.start, message=f"Step {at.step}: {where}computing the twelve "
            f"signals on {len(original_layer_indices(model))} layers"))
        signals = compute_signals(model, ctx.calib, device=s.device, seed=s.cfg.seed)
        ctx.clock.tick("signals")
        yield from self.roster.to_live(members, Event(Stage.ORACLE, step=at.step, progress=at.start, message=f"Step "
                                                      f"{at.step}: oracle (remove each layer, measure validation "
                                                      "accuracy)"))
        oracle, _, removed_logits = oracle_with_logits(model, ctx.val, device=s.device, precision=s.precision)
        tables = {artifacts.outcomes(artifacts.ORACLE_OUTCOMES): oracle_outcomes(
            oracle, removed_logits, ctx.val, ctx.teacher_logits.get("val"))}
        ctx.clock.tick("oracle")
        return Scan(signals, oracle, tables, best_layer(oracle))

    def _choose(self, ctx: WalkContext, at: StepAt, scan: Scan, members: list[Member]
                ) -> Generator[Routed, None, Choices]:
        """Each member's strategy picks its layer (its profile rows join what it knows for later steps)."""
        choices: Choices = {}
        dataset_key = ctx.task.dataset_key
        for m in members:
            known = pd.concat([self.profiles, *m.own_profiles], ignore_index=True) if m.own_profiles \
                else self.profiles
            layer, info = choose(StepInputs(m.cfg, at.step, scan.signals, scan.oracle, known, m.run_id, dataset_key,
                                            ctx.n_original))
            profile = profile_rows(scan.signals, scan.oracle, run_id=m.run_id, dataset=dataset_key, model=m.cfg.model,
                                   step=at.step, n_original=ctx.n_original)
            m.own_profiles.append(profile)
            choices.setdefault(layer, []).append((m, info))
            yield m.run_id, Event(Stage.CHOICE, step=at.step, progress=at.start, message=f"Step {at.step}: "
                                  f"{m.cfg.strategy} removes layer {layer}", payload={"layer": layer, "info": info},
                                  tables={"signals": scan.signals, "oracle": scan.oracle, "profile": profile,
                                          **scan.tables})
        ctx.clock.tick("choice")
        return choices

    def _remove_and_tune(self, ctx: WalkContext, at: StepAt, model: torch.nn.Module, layer: int,
                         members: list[Member]) -> Generator[Routed, None, torch.nn.Module]:
        """The child state: ``model`` without ``layer``, fine-tuned once for every member that chose it."""
        child = remove_layers(model, [layer], by="original")
        for p in fine_tune(child, ctx.task.encoded["train"], ctx.step_cfg, device=self.setup.device,
                           precision=self.setup.precision):
            yield from self.roster.to_live(members, Event(
                Stage.FINETUNE, step=at.step, progress=at.start + p.fraction / at.target, message=f"Step {at.step}: "
                f"fine-tuning {p.step}/{p.total_steps}, loss {p.loss:.3f}",
                payload={"loss": p.loss, "fraction": p.fraction}))
        ctx.clock.tick("finetune")
        return child

    def _evaluate(self, ctx: WalkContext, at: StepAt, state: tuple[tuple[int, ...], int, torch.nn.Module],
                  scan: Scan, chosen: list[tuple[Member, dict[str, Any]]]) -> Iterator[Routed]:
        """Measure the child once, then record its step row for every member that chose it (and stop a member
        whose validation accuracy fell below its floor)."""
        path, layer, child = state
        scores, tables, _ = ctx.measure(child)
        ctx.clock.tick("evaluate")
        mark = OracleMark(best=scan.best, best_accuracy=float(scan.oracle["accuracy"].max()),
                          chosen_accuracy=scan.accuracy_of(layer), ratio=ctx.ratio_of(scores))
        for m, info in chosen:
            if m.run_id in self.roster.dropped:
                continue
            m.removed.append(layer)
            row = StepRow(n_layers=ctx.n_original - at.step, removed=layer, removed_order=tuple(m.removed),
                          metrics=scores, oracle=mark, ranker=ranker_mark(info))
            m.history.append(row)
            yield m.run_id, Event(Stage.STEP_DONE, step=at.step, progress=at.step / at.target, message=f"Step "
                                  f"{at.step}: {row.n_layers} layers, test accuracy {scores['test_accuracy']:.3f}",
                                  payload=row.to_dict(), tables=tables)
            yield from self._floor(m, at, scores["val_accuracy"], (path + (layer,), child))

    def _floor(self, m: Member, at: StepAt, val_accuracy: float,
               state: tuple[tuple[int, ...], torch.nn.Module]) -> Iterator[Routed]:
        """Stop ``m`` at ``state`` when its validation accuracy fell below its accuracy floor."""
        floor = m.cfg.accuracy_floor
        if floor and val_accuracy < floor:
            yield m.run_id, Event(Stage.EVALUATE, step=at.step, message=f"Validation accuracy {val_accuracy:.3f} "
                                  f"fell below the floor {floor:.3f}: stopping")
            m.stopped = True
            self._stopped_at[m.run_id] = state

    # ------------------------------------------------------------------------------- the end
    def _finals(self, frontier: Frontier) -> Frontier:
        """The final state of every live member: the frontier, plus members stopped early by the floor."""
        finals: Frontier = {}
        for path, (model, members) in frontier.items():
            live = self.roster.live(members)
            if live:
                finals[path] = (model, live)
        for m in self.members:
            if m.stopped and m.run_id not in self.roster.dropped:
                path, model = self._stopped_at[m.run_id]
                finals.setdefault(path, (model, []))[1].append(m)
        return finals

    def _finish(self, ctx: WalkContext, finals: Frontier) -> Iterator[Routed]:
        """Distil every final state (once for the members on it), then each member's summary and model."""
        for path, (model, members) in finals.items():
            after = (yield from self._distill(ctx, path, model, members)) if ctx.setup.cfg.distill and path else None
            for m in members:
                if m.run_id in self.roster.dropped:
                    continue
                summary = replace(prune_summary(m, ctx.base, after, self.setup.ratio), timings_s=ctx.clock.summary(),
                                  precision=self.setup.precision, weak_teacher=ctx.weak_teacher,
                                  shared={"strategies_in_tree": len(self.members), **self.stats.to_dict()})
                yield m.run_id, Event(Stage.DONE, progress=1.0, message="Finished", payload=summary.to_dict(),
                                      artifacts={"model": model, "tokenizer": ctx.task.tokenizer})

    def _distill(self, ctx: WalkContext, path: tuple[int, ...], model: torch.nn.Module, members: list[Member]
                 ) -> Generator[Routed, None, dict[str, Any]]:
        """Distil ``model`` from the unpruned teacher in place; its scores after."""
        s, kd = self.setup, self.setup.cfg.kd
        yield from self.roster.to_kept(members, Event(Stage.DISTILL, progress=0.0, message="Distilling from the "
                                                      "unpruned teacher (caching its logits)"))
        train_kd = ctx.distill_data()
        kd_cfg = s.recovery(ctx.step_cfg, kd.epochs, s.kd_lr)
        how = DistillConfig(temperature=kd.temperature, alpha=kd.alpha, epochs=kd.epochs, lr=s.kd_lr)
        self.stats.distills += 1
        for p in fine_tune(model, train_kd, kd_cfg, distill=how, device=s.device, precision=s.precision):
            yield from self.roster.to_kept(members, Event(Stage.DISTILL, progress=p.fraction, message=f"Distillation "
                                                          f"{p.step}/{p.total_steps}, loss {p.loss:.3f}",
                                                          payload={"loss": p.loss}))
        ctx.clock.tick("distill")
        after, tables, _ = ctx.measure(model, prefix="kd_")
        ctx.clock.tick("evaluate")
        yield from self.roster.to_kept(members, Event(Stage.EVALUATE, step=len(path), message=f"After distillation: "
                                                      f"test accuracy {after['test_accuracy']:.3f}", tables=tables))
        return after


def walk(configs: Sequence[PruneConfig], run_ids: Sequence[str], **kwargs: Any) -> Iterator[Routed]:
    """:class:`TreeWalk` as a plain generator of ``(run_id, Event)``."""
    return TreeWalk(configs, run_ids, **kwargs).events()
