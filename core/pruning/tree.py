"""Greedy layer pruning for several strategies at once, walked as a tree of shared model states.

Runs of the same model, dataset, data settings, teacher, seed and budget differ only where their strategies
choose different layers. :func:`walk` prunes all of them together, one depth at a time: at every distinct model
state (the ordered tuple of layers removed so far) the twelve signals and the oracle are computed **once** for
every strategy standing on it; every distinct (state, removed layer) is fine-tuned **once**; states no longer
needed are dropped. Fine-tuning is seeded per call (:func:`core.train.fine_tune`), so a strategy walked in a
tree of eighteen gives exactly what it gives alone; a single run is a tree of one
(:func:`core.pruning.loop.prune_events`).

The walk yields ``(run_id, Event)`` pairs and never touches the run store: the caller records them.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import pandas as pd
import torch

from core.config import TrainConfig
from core.data.batches import batches, default_device, take
from core.fusion import profile_rows
from core.models.registry import get_model_spec
from core.oracle import best_layer
from core.precision import resolve
from core.pruning.config import PruneConfig
from core.pruning.strategies import choose_layer
from core.runs import artifacts
from core.runs.events import Event, Stage, StageClock
from core.teacher_phase import prepare_and_teach
from core.train import DistillConfig, attach_teacher_logits, fine_tune
from core.version import code_version

if TYPE_CHECKING:
    from core.data.batches import Batch
    from core.data.task import Task

#: ``accuracy_to_size_ratio(accuracy, params, teacher_accuracy, teacher_params)`` (:mod:`core.metrics`)
RatioFn: TypeAlias = Callable[[float, int, float, int], float]


def group_key(cfg: PruneConfig) -> str:
    """Everything that determines a run's result except its strategy, as canonical JSON."""
    import json

    d = cfg.to_dict()
    d.pop("strategy", None)
    return json.dumps(d, sort_keys=True)


def step_lr(cfg: PruneConfig) -> float:
    return 1e-3 if cfg.model == "tiny-bert" else cfg.step_lr


def measure(model: torch.nn.Module, val: Any, test: Any, device: torch.device, precision: str = "fp32"
            ) -> dict[str, Any]:
    """Test and validation scores, size and latency of ``model``, flat (:func:`core.metrics.measure_model`)."""
    from core.metrics import measure_model

    return measure_model(model, test, val=val, device=device, precision=precision).to_dict()


def measure_kept(model: torch.nn.Module, val: Any, test: Any, device: torch.device, precision: str = "fp32",
                 teacher_logits: dict[str, torch.Tensor] | None = None, prefix: str = ""
                 ) -> tuple[dict[str, Any], dict[str, pd.DataFrame], dict[str, torch.Tensor]]:
    """:func:`measure`, keeping what each example did: the flat metrics, the per-example outcomes as
    ``Event.tables`` (``artifacts.outcomes(prefix + "test")`` and ``... + "val"``; KL to ``teacher_logits`` when
    given) and the logits per split, all from one forward pass per split."""
    from core.metrics import measure_with_outcomes

    m = measure_with_outcomes(model, test, val=val, device=device, precision=precision, teacher_logits=teacher_logits)
    tables = {artifacts.outcomes(prefix + name): frame for name, frame in m.outcomes.items()}
    return m.metrics.to_dict(), tables, m.logits


def oracle_outcomes(oracle: pd.DataFrame, removed_logits: Sequence[torch.Tensor], val: Any,
                    teacher_val_logits: torch.Tensor | None = None) -> pd.DataFrame:
    """Per-example outcomes of every oracle candidate on the validation split (:func:`core.train.per_example`),
    one block per removed layer (column ``original_layer``) in the oracle table's row order."""
    from core.train import per_example

    frames = [per_example(logits, val["labels"], teacher_val_logits).assign(original_layer=int(layer))
              for logits, layer in zip(removed_logits, oracle["original_layer"])]
    out = pd.concat(frames, ignore_index=True)
    out["original_layer"] = out["original_layer"].astype("int16")
    return out


@dataclass
class Member:
    """One strategy's run inside the tree: its config, its path so far and what it has recorded."""

    run_id: str
    cfg: PruneConfig
    removed: list[int] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    own_profiles: list[pd.DataFrame] = field(default_factory=list)
    stopped: bool = False


#: the states of one depth: each path of removed layers, its model and the members that took it
Frontier: TypeAlias = dict[tuple[int, ...], tuple[torch.nn.Module, list[Member]]]


@dataclass
class WalkStats:
    """What the tree shared: distinct states measured and fine-tunes run at each depth."""

    states_per_depth: dict[int, int] = field(default_factory=dict)
    finetunes_per_depth: dict[int, int] = field(default_factory=dict)
    distills: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"states_per_depth": dict(self.states_per_depth), "finetunes_per_depth": dict(self.finetunes_per_depth),
                "distills": self.distills}


class TreeWalk:
    """Prune ``configs`` (one per run id, all in one group) together. Iterate :meth:`events`; call :meth:`drop`
    to stop one member (e.g. cancelled) between events; :attr:`stats` says what was shared."""

    def __init__(self, configs: Sequence[PruneConfig], run_ids: Sequence[str], *, profiles: pd.DataFrame | None = None,
                 device: torch.device | None = None, dataset: Any = None) -> None:
        if not configs or len(configs) != len(run_ids):
            raise ValueError(f"TreeWalk needs one run id per config, got {len(configs)} configs and {len(run_ids)} ids")
        keys = {group_key(c) for c in configs}
        if len(keys) != 1:
            raise ValueError("TreeWalk: configs differ in more than their strategy; walk each group separately")
        if len(set(run_ids)) != len(run_ids):
            raise ValueError("TreeWalk: run ids must be distinct")
        self.cfg = configs[0]
        self.members = [Member(r, c) for r, c in zip(run_ids, configs)]
        self.profiles = profiles if profiles is not None else pd.DataFrame()
        self.device = device or default_device()
        #: what runs here (fp32/bf16/fp16), never "auto": recorded with every result
        self.precision = resolve(self.cfg.precision, self.device, get_model_spec(self.cfg.model).hidden_size)
        self.dataset = dataset
        self.stats = WalkStats()
        self._dropped: set[str] = set()
        #: the teacher's logits on "val" and "test" (step 0): every later evaluation's KL to the teacher
        self.teacher_logits: dict[str, torch.Tensor] = {}
        self._stopped_at: dict[str, tuple[tuple[int, ...], torch.nn.Module]] = {}

    def drop(self, run_id: str) -> None:
        self._dropped.add(run_id)

    def _live(self, members: Sequence[Member]) -> list[Member]:
        return [m for m in members if m.run_id not in self._dropped and not m.stopped]

    def _all(self, members: Sequence[Member], ev: Event) -> Iterator[tuple[str, Event]]:
        """``ev`` for every member still walking."""
        for m in self._live(members):
            yield m.run_id, ev

    def _to(self, members: Sequence[Member], ev: Event) -> Iterator[tuple[str, Event]]:
        """``ev`` for every member not dropped (members stopped by the accuracy floor still finish)."""
        for m in members:
            if m.run_id not in self._dropped:
                yield m.run_id, ev

    # ------------------------------------------------------------------------------------------ the walk
    def events(self) -> Iterator[tuple[str, Event]]:
        from core.metrics import accuracy_to_size_ratio
        from core.models.registry import original_layer_indices

        cfg, device = self.cfg, self.device
        torch.manual_seed(cfg.seed)
        clock = StageClock()
        phase = prepare_and_teach(cfg.model, cfg.dataset, self.dataset, cfg.data, cfg.teacher, device, clock,
                                  allow_weak_teacher=cfg.allow_weak_teacher, precision=cfg.precision)
        weak = False
        while True:  # the teacher phase, shared: every member gets its events
            try:
                ev = next(phase)
            except StopIteration as stop:
                task, teacher, teacher_cfg, cached = stop.value
                break
            if ev.stage == Stage.TEACHER_CHECK:
                weak = bool(ev.payload.get("weak"))
            yield from self._all(self.members, ev)
        self.weak_teacher = weak
        self.task = task
        val, test = task.encoded["val"], task.encoded["test"]
        base, teacher_tables, self.teacher_logits = measure_kept(teacher, val, test, device, self.precision)
        n_original = len(original_layer_indices(teacher))
        step0 = {"n_layers": n_original, "removed": None, "removed_order": [], **base, "teacher_cached": cached,
                 "teacher_key": getattr(teacher.config, "teacher_key", None), "code_version": code_version(),
                 "precision": self.precision,
                 **({"weak_teacher": True} if weak else {})}
        for m in self.members:
            m.history.append(step0)
        yield from self._all(self.members, Event(Stage.STEP_DONE, step=0, progress=0.0,
                                                 message=f"Teacher: test accuracy {base['test_accuracy']:.3f}",
                                                 payload=step0, tables=teacher_tables))
        clock.tick("evaluate")
        calib = list(batches(take(task.encoded["train"], cfg.calibration_size), 32))
        step_cfg = TrainConfig(epochs=cfg.step_epochs, lr=step_lr(cfg), batch_size=teacher_cfg.batch_size,
                               freeze_word_embeddings=teacher_cfg.freeze_word_embeddings, head_lr_multiplier=1.0,
                               seed=cfg.seed, precision=cfg.precision)
        target = min(cfg.layers_to_remove, n_original - 1)
        frontier: dict[tuple[int, ...], tuple[torch.nn.Module, list[Member]]] = {(): (teacher, list(self.members))}
        for step in range(1, target + 1):
            frontier = yield from self._depth(step, target, frontier, calib, val, test, step_cfg, base, n_original,
                                              task.encoded["train"], task.dataset_key, clock, accuracy_to_size_ratio)
            if not frontier:
                break
        finals = self._finals(frontier)
        yield from self._finish(finals, teacher, task, val, test, step_cfg, base, n_original, clock,
                                accuracy_to_size_ratio)

    def _depth(self, step: int, target: int, frontier: Frontier, calib: list[Batch], val: Batch, test: Batch,
               step_cfg: TrainConfig, base: dict[str, Any], n_original: int, train: Batch, dataset_key: str,
               clock: StageClock, ratio_fn: RatioFn) -> Generator[tuple[str, Event], None, Frontier]:
        from core.models.registry import original_layer_indices
        from core.models.surgery import remove_layers
        from core.oracle import oracle_with_logits
        from core.signals import compute_signals

        cfg, device = self.cfg, self.device
        nxt: dict[tuple[int, ...], tuple[torch.nn.Module, list[Member]]] = {}
        states = 0
        tunes = 0
        frac0 = (step - 1) / target
        for path, (model, members) in frontier.items():
            members = self._live(members)
            if not members:
                continue
            states += 1
            n_now = len(original_layer_indices(model))
            where = f"state {states} of {len(frontier)}, removed {', '.join(f'L{l}' for l in path)}: " if path else ""
            yield from self._all(members, Event(Stage.SIGNALS, step=step, progress=frac0,
                                                message=f"Step {step}: {where}computing the twelve signals on "
                                                f"{n_now} layers"))
            signals = compute_signals(model, calib, device=device, seed=cfg.seed)
            clock.tick("signals")
            yield from self._all(members, Event(Stage.ORACLE, step=step, progress=frac0, message=f"Step {step}: oracle "
                                                "(remove each layer, measure validation accuracy)"))
            oracle, _, removed_logits = oracle_with_logits(model, val, device=device, precision=self.precision)
            oracle_tables = {artifacts.outcomes(artifacts.ORACLE_OUTCOMES): oracle_outcomes(
                oracle, removed_logits, val, self.teacher_logits.get("val"))}
            clock.tick("oracle")
            choices: dict[int, list[tuple[Member, dict[str, Any]]]] = {}
            for m in members:
                known = pd.concat([self.profiles, *m.own_profiles], ignore_index=True) if m.own_profiles \
                    else self.profiles
                layer, info = choose_layer(m.cfg, step, signals, oracle, known, m.run_id, dataset_key, n_original)
                profile = profile_rows(signals, oracle, run_id=m.run_id, dataset=dataset_key, model=m.cfg.model,
                                       step=step, n_original=n_original)
                m.own_profiles.append(profile)
                choices.setdefault(layer, []).append((m, info))
                yield m.run_id, Event(Stage.CHOICE, step=step, progress=frac0, message=f"Step {step}: {m.cfg.strategy} "
                                      f"removes layer {layer}", payload={"layer": layer, "info": info},
                                      tables={"signals": signals, "oracle": oracle, "profile": profile,
                                              **oracle_tables})
            clock.tick("choice")
            best = best_layer(oracle)
            for layer, chosen in choices.items():
                sub = [m for m, _ in chosen]
                child = remove_layers(model, [layer], by="original")
                tunes += 1
                for p in fine_tune(child, train, step_cfg, device=device):
                    ev = Event(Stage.FINETUNE, step=step, progress=frac0 + p.fraction / target, message=f"Step {step}: "
                               f"fine-tuning {p.step}/{p.total_steps}, loss {p.loss:.3f}",
                               payload={"loss": p.loss, "fraction": p.fraction})
                    yield from self._all(sub, ev)
                clock.tick("finetune")
                metrics, step_tables, _ = measure_kept(child, val, test, device, self.precision, self.teacher_logits)
                clock.tick("evaluate")
                for m, info in chosen:
                    if m.run_id in self._dropped:
                        continue
                    m.removed.append(layer)
                    row = {"n_layers": n_original - step, "removed": layer, "removed_order": list(m.removed), **metrics,
                           "oracle_best": best, "oracle_best_accuracy": float(oracle["accuracy"].max()),
                           "chosen_oracle_accuracy":
                               float(oracle.loc[oracle["original_layer"] == layer, "accuracy"].iloc[0]),
                           "ratio": ratio_fn(metrics["test_accuracy"], metrics["params_total"], base["test_accuracy"],
                                             base["params_total"])}
                    quality = info.get("quality") if isinstance(info, dict) else None
                    if quality:
                        row["ranker_spearman"] = quality.get("spearman")
                        row["ranker_top1"] = quality.get("top1_hit")
                    m.history.append(row)
                    yield m.run_id, Event(Stage.STEP_DONE, step=step, progress=step / target, message=f"Step {step}: "
                                          f"{n_original - step} layers, test accuracy {metrics['test_accuracy']:.3f}",
                                          payload=row, tables=step_tables)
                    if m.cfg.accuracy_floor and metrics["val_accuracy"] < m.cfg.accuracy_floor:
                        yield m.run_id, Event(Stage.EVALUATE, step=step, message=f"Validation accuracy "
                                              f"{metrics['val_accuracy']:.3f} fell below the floor "
                                              f"{m.cfg.accuracy_floor:.3f}: stopping")
                        m.stopped = True
                        self._stopped_at[m.run_id] = (path + (layer,), child)
                nxt[path + (layer,)] = (child, sub)
        self.stats.states_per_depth[step] = states
        self.stats.finetunes_per_depth[step] = tunes
        return nxt

    def _finals(self, frontier: Frontier) -> Frontier:
        """The final state of every live member: the frontier, plus members stopped early by the floor."""
        finals: dict[tuple[int, ...], tuple[torch.nn.Module, list[Member]]] = {}
        for path, (model, members) in frontier.items():
            live = [m for m in members if m.run_id not in self._dropped and not m.stopped]
            if live:
                finals[path] = (model, live)
        for m in self.members:
            if m.stopped and m.run_id not in self._dropped:
                path, model = self._stopped_at[m.run_id]
                finals.setdefault(path, (model, []))[1].append(m)
        return finals

    def _finish(self, finals: Frontier, teacher: torch.nn.Module, task: Task, val: Batch, test: Batch,
                step_cfg: TrainConfig, base: dict[str, Any], n_original: int, clock: StageClock,
                ratio_fn: RatioFn) -> Iterator[tuple[str, Event]]:
        cfg, device = self.cfg, self.device
        train_kd = None
        for path, (model, members) in finals.items():
            after = None
            if cfg.distill and path:
                yield from self._to(members, Event(Stage.DISTILL, progress=0.0, message="Distilling from the unpruned "
                                                   "teacher (caching its logits)"))
                if train_kd is None:
                    train_kd = attach_teacher_logits(task.encoded["train"], teacher, device=device,
                                                     precision=self.precision)
                lr = cfg.kd.lr if cfg.model != "tiny-bert" else 1e-3
                kd_cfg = TrainConfig(epochs=cfg.kd.epochs, lr=lr, batch_size=step_cfg.batch_size,
                                     freeze_word_embeddings=step_cfg.freeze_word_embeddings, head_lr_multiplier=1.0,
                                     seed=cfg.seed, precision=cfg.precision)
                kd = DistillConfig(temperature=cfg.kd.temperature, alpha=cfg.kd.alpha, epochs=cfg.kd.epochs, lr=lr)
                self.stats.distills += 1
                for p in fine_tune(model, train_kd, kd_cfg, distill=kd, device=device):
                    ev = Event(Stage.DISTILL, progress=p.fraction, message=f"Distillation {p.step}/{p.total_steps}, "
                               f"loss {p.loss:.3f}", payload={"loss": p.loss})
                    yield from self._to(members, ev)
                clock.tick("distill")
                after, kd_tables, _ = measure_kept(model, val, test, device, self.precision, self.teacher_logits,
                                                   prefix="kd_")
                clock.tick("evaluate")
                yield from self._to(members, Event(Stage.EVALUATE, step=len(path), message=f"After distillation: test "
                                                   f"accuracy {after['test_accuracy']:.3f}", tables=kd_tables))
            for m in members:
                if m.run_id in self._dropped:
                    continue
                summary = _summary(m, base, after, ratio_fn, n_original)
                summary["timings_s"] = clock.summary()
                summary["precision"] = self.precision
                if self.weak_teacher:
                    summary["weak_teacher"] = True
                summary["shared"] = {"strategies_in_tree": len(self.members), **self.stats.to_dict()}
                yield m.run_id, Event(Stage.DONE, progress=1.0, message="Finished", payload=summary,
                                      artifacts={"model": model, "tokenizer": task.tokenizer})


def _summary(m: Member, base: dict[str, Any], after: dict[str, Any] | None, ratio_fn: RatioFn,
             n_original: int) -> dict[str, Any]:
    summary: dict[str, Any] = {"teacher": base, "removed_order": list(m.removed),
                               "final_layers": n_original - len(m.removed)}
    pruned = m.history[1:]
    if pruned:
        best = max(pruned, key=lambda h: h["test_accuracy"])
        summary["max_accuracy_over_depth"] = {"accuracy": best["test_accuracy"], "n_layers": best["n_layers"]}
        summary["before_kd"] = {k: m.history[-1][k] for k in ("test_accuracy", "test_macro_f1", "val_accuracy")}
    if after is not None:
        summary["after_kd"] = {k: after[k] for k in ("test_accuracy", "test_macro_f1", "val_accuracy")}
        summary["after_kd_metrics"] = after
        summary["ratio_after_kd"] = ratio_fn(after["test_accuracy"], after["params_total"], base["test_accuracy"],
                                             base["params_total"])
    if m.removed:
        final = after or m.history[-1]
        summary["ratio"] = ratio_fn(final["test_accuracy"], final["params_total"], base["test_accuracy"],
                                    base["params_total"])
    return summary


def walk(configs: Sequence[PruneConfig], run_ids: Sequence[str], **kwargs: Any) -> Iterator[tuple[str, Event]]:
    """:class:`TreeWalk` as a plain generator of ``(run_id, Event)``."""
    return TreeWalk(configs, run_ids, **kwargs).events()
