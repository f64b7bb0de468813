"""What a hand-out report of finished pruning runs says (issue 31), UI-free: ``ui/report.py`` draws it as one
self-contained HTML file.

Per run: its budget, seed and code version; one story per step (the layer removed, who chose it, the oracle's
pick and the regret against the most accurate removal, validation accuracy before and after fine-tuning, test
accuracy and the difference to the teacher, each with its 95 % interval from :mod:`core.runs.noise`); what
distillation won back; and the points of the compression chart (test accuracy against latency, bubble size the
model's bytes, one point per step from the teacher to the distilled student).

A report covers finished pruning runs only: :func:`check_finished` raises :class:`ReportRefused` naming every run
that is missing, not a pruning run, or not done (queued, running, cancelled, interrupted or failed), so nobody
hands out half a report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from core.runs import artifacts, noise
from core.runs.record import PruneSummary, Run, RunStatus
from core.runs.report import Ranking, compare_table, rankings, run_intervals, with_intervals
from core.runs.store import RunStore
from core.stats import oracle_candidate

Label = Callable[[str], str]

#: the budget a report lists per run: (label, path in the run's config)
BUDGET_KEYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("layers to remove", ("layers_to_remove",)), ("fine-tuning epochs per step", ("step_epochs",)),
    ("distillation", ("distill",)), ("distillation epochs", ("kd", "epochs")),
    ("calibration texts", ("calibration_size",)), ("train rows (cap)", ("data", "train_cap")),
    ("validation rows (cap)", ("data", "val_cap")), ("test rows (cap)", ("data", "test_cap")),
    ("max length (tokens)", ("data", "max_length")), ("accuracy floor", ("accuracy_floor",)),
    ("precision setting", ("precision",)), ("seed", ("seed",)))


#: how the refusal names a run that has not finished, by its status
UNFINISHED: dict[RunStatus, str] = {
    RunStatus.QUEUED: "is queued: it has not started", RunStatus.RUNNING: "is still running",
    RunStatus.CANCELLED: "was cancelled before it finished",
    RunStatus.INTERRUPTED: "was interrupted before it finished", RunStatus.FAILED: "failed before it finished"}


class ReportRefused(ValueError):
    """The runs asked for cannot make a report (not finished, not a pruning run, or missing); the message says
    which and why."""


def check_finished(store: RunStore, run_ids: Sequence[str]) -> list[Run]:
    """The runs of ``run_ids`` (in that order), each a finished pruning run; else :class:`ReportRefused`."""
    if not run_ids:
        raise ReportRefused("a report needs at least one run")
    runs, why = [], []
    for run_id in dict.fromkeys(run_ids):
        run = store.get_run(run_id)
        if run is None:
            why.append(f"{run_id} is not in the store")
        elif run.kind != "prune":
            why.append(f"{run_id} is a {run.kind} run (reports cover pruning runs)")
        elif run.status != RunStatus.DONE:
            why.append(f"{run_id} {UNFINISHED.get(run.status, f'is {run.status}')}")
        else:
            runs.append(run)
    if why:
        raise ReportRefused("No report: " + "; ".join(why) + ". A report covers finished pruning runs only: wait "
                            "for the run to finish (or pick finished runs) and ask again.")
    return runs


@dataclass(frozen=True)
class StepStory:
    """One step of a run: what it removed, who chose it, the oracle's own pick (the removal that changes the
    current model's predictions least: lowest KL, :func:`core.oracle.best_layer`), the regret against the most
    accurate removal (both measured on the validation rows before fine-tuning, as the paper check scores it) and
    what fine-tuning made of the step."""

    step: int
    n_layers: int
    removed: int
    chooser: str
    #: the oracle's pick (its criterion: lowest KL to the current model), as stored with the step
    oracle_best: int | None
    #: the most accurate single removal on the validation rows (the chosen layer itself when it ties)
    best_layer: int | None
    best_val: noise.Measured | None
    chosen_val: noise.Measured | None
    #: the most accurate removal's validation accuracy minus the chosen one's (before fine-tuning)
    regret_value: float | None
    #: the same, with its paired interval over the validation rows (None without the oracle's outcomes)
    regret: noise.Comparison | None
    val_after: noise.Measured | None
    test_after: noise.Measured | None
    vs_teacher: noise.Comparison | None

    def caption(self) -> str:
        """The step in a few sentences, every accuracy with its interval."""
        out = [f"Step {self.step}: removed layer L{self.removed} ({self.n_layers} layers left), chosen by "
               f"{self.chooser}."]
        if self.oracle_best is not None:
            same = " (the same layer)" if self.oracle_best == self.removed else ""
            out.append(f"The oracle's pick, the removal that changes the predictions least (lowest KL), was "
                       f"L{self.oracle_best}{same}.")
        before = self.chosen_val.text() if self.chosen_val else "not stored"
        if self.best_layer is not None and self.best_layer == self.removed:
            out.append(f"No removal was more accurate on the validation rows than this one ({before}): no regret.")
        elif self.regret_value is not None:
            best = f" ({self.best_val.text()})" if self.best_val else ""
            which = f"L{self.best_layer}" if self.best_layer is not None else "the most accurate removal"
            out.append(f"The most accurate removal on the validation rows was {which}{best} against this one's "
                       f"{before}: regret {_regret_text(self)}.")
        after = self.val_after.text() if self.val_after else "not stored"
        out.append(f"Validation accuracy before fine-tuning {before}, after {after}.")
        if self.test_after is not None:
            out.append(f"Test accuracy after fine-tuning {self.test_after.text()}"
                       + (f"; against the teacher: {self.vs_teacher.sentence()}." if self.vs_teacher else "."))
        return " ".join(out)

    def regret_cell(self) -> str:
        """The regret as a table cell: ``0 (none)`` when no removal was more accurate."""
        if self.best_layer is not None and self.best_layer == self.removed:
            return "0 (none)"
        if self.regret is not None:
            return self.regret.interval.format()
        return "" if self.regret_value is None else f"{self.regret_value:.3f}"


def _regret_text(story: StepStory) -> str:
    if story.regret is not None:
        i = story.regret.interval
        noise_word = ", within noise" if story.regret.within_noise else ""
        return f"{i.format()} (paired over the validation rows{noise_word})"
    return f"{story.regret_value:.3f} (no interval: the oracle's per-example outcomes were not kept)" \
        if story.regret_value is not None else "unknown"


@dataclass(frozen=True)
class RunFacts:
    """Everything a report says about one finished pruning run."""

    run: Run
    summary: PruneSummary
    steps: pd.DataFrame  # the run's steps table with test_low / test_high / test_ci joined on
    intervals: noise.PruneIntervals
    stories: list[StepStory]
    #: the budget as the report lists it: name -> value, in order
    budget: dict[str, str | int | float]
    code_version: str

    @property
    def seed(self) -> int | None:
        value = self.run.config.get("seed", (self.run.config.get("data") or {}).get("seed"))
        return None if value is None else int(value)

    def kd_lines(self) -> list[str]:
        """What distillation won back: after against before distillation and against the teacher (paired)."""
        found, after = self.intervals, self.intervals.after_kd
        if after is None:
            return ["This run did not distil its pruned model from the teacher."]
        last = found.steps.get(found.final_step) if found.final_step is not None else None
        lines = [f"After distillation from the teacher: test accuracy {after.text()} (before: "
                 f"{last.text() if last else 'not stored'})."]
        if found.kd_vs_before is not None:
            lines.append(f"What distillation won back: {found.kd_vs_before.sentence()}.")
        if found.kd_vs_teacher is not None:
            lines.append(f"Against the teacher: {found.kd_vs_teacher.sentence()}.")
        return lines


def _chooser(run: Run, choice: Mapping[str, Any] | None, label: Label) -> str:
    """Who picked the step's layer: the strategy, and for a fusion strategy whether a ranker was trained yet."""
    name = label(run.strategy)
    info = (choice or {}).get("info")
    if not isinstance(info, Mapping) or "protocol" not in info:
        return name
    ranker = info.get("ranker")
    if not isinstance(ranker, Mapping):
        return f"{name} (no ranker yet: the signal vote)"
    protocol = info.get("protocol")
    proto = protocol.get("name") if isinstance(protocol, Mapping) else protocol
    rows = ranker.get("n_train_rows")
    return (f"{name} (a {ranker.get('kind', 'learned')} ranker trained on {rows} layer-steps, protocol {proto}, "
            f"target {info.get('target') or 'accuracy'})")


def _oracle_side(store: RunStore, run_id: str, step: int, layer: int | None, accuracy: Any
                 ) -> tuple[noise.Measured | None, pd.DataFrame | None]:
    """The validation accuracy without ``layer`` before fine-tuning (Wilson from the oracle's outcomes when kept)
    and those outcomes."""
    if layer is None:
        return None, None
    found = store.read_outcomes(run_id, step, artifacts.ORACLE_OUTCOMES)
    part = None
    if found is not None:
        try:
            part = oracle_candidate(found, int(layer))
        except ValueError:
            part = None
    return noise.measured(None if accuracy is None or pd.isna(accuracy) else float(accuracy), part), part


def _int(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _most_accurate(oracle: pd.DataFrame | None, chosen: int | None) -> int | None:
    """The most accurate removal of an oracle table (then the lowest loss); the chosen layer when it ties."""
    if oracle is None or oracle.empty or "accuracy" not in oracle:
        return None
    acc = dict(zip(oracle["original_layer"].astype(int), oracle["accuracy"].astype(float)))
    if chosen is not None and chosen in acc and acc[chosen] >= max(acc.values()) - 1e-12:
        return chosen
    keys = [c for c in ("accuracy", "loss") if c in oracle]
    ranked = oracle.sort_values(keys, ascending=[False, True][:len(keys)], kind="stable")
    return int(ranked.iloc[0]["original_layer"])


def step_stories(store: RunStore, run: Run, steps: pd.DataFrame, found: noise.PruneIntervals,
                 label: Label = str) -> list[StepStory]:
    """One :class:`StepStory` per pruning step of ``run`` (its steps table and intervals)."""
    stories = []
    for _, row in steps[steps["step"] > 0].sort_values("step").iterrows():
        k = int(row["step"])
        removed = _int(row.get("removed"))
        oracle = store.read_table(run.id, artifacts.step_table(k, artifacts.ORACLE_TABLE))
        best = _most_accurate(oracle, removed)
        chosen_val, _ = _oracle_side(store, run.id, k, removed, row.get("chosen_oracle_accuracy"))
        if best is not None and oracle is not None:
            best_acc = float(oracle.loc[oracle["original_layer"] == best, "accuracy"].iloc[0])
            best_val, _ = _oracle_side(store, run.id, k, best, best_acc)
        else:  # no oracle table: the best accuracy the step stored, without its layer
            best_val = noise.measured(row.get("oracle_best_accuracy"))
        regret = noise.compare(best_val, chosen_val, f"best (L{best})", f"chosen (L{removed})") \
            if best_val is not None and chosen_val is not None and best_val.paired_ready and chosen_val.paired_ready \
            else None
        regret_value = None if best_val is None or chosen_val is None else best_val.accuracy - chosen_val.accuracy
        val_after = noise.measured(row.get("val_accuracy"), store.read_outcomes(run.id, k, artifacts.VAL_OUTCOMES))
        stories.append(StepStory(
            step=k, n_layers=int(row["n_layers"]), removed=removed if removed is not None else -1,
            chooser=_chooser(run, store.read_json(run.id, artifacts.step_choice(k)), label),
            oracle_best=_int(row.get("oracle_best")), best_layer=best, best_val=best_val, chosen_val=chosen_val,
            regret_value=regret_value, regret=regret, val_after=val_after, test_after=found.steps.get(k),
            vs_teacher=found.vs_teacher.get(k)))
    return stories


def _budget(run: Run, summary: PruneSummary, steps: pd.DataFrame) -> dict[str, str | int | float]:
    out: dict[str, str | int | float] = {}
    for name, path in BUDGET_KEYS:
        value: Any = run.config
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        if value is not None:
            out[name] = ("yes" if value else "no") if isinstance(value, bool) else value
    ran = summary.precision or (steps["precision"].dropna().iloc[0] if "precision" in steps
                                           and steps["precision"].notna().any() else None)
    if ran:
        out["precision it ran in"] = ran
    seconds = summary.total_seconds or run.seconds
    if seconds:
        out["minutes it took"] = round(seconds / 60, 1)
    return out


def run_facts(store: RunStore, run_id: str, label: Label = str) -> RunFacts:
    """The facts of one finished pruning run (:class:`ReportRefused` for any other)."""
    run = check_finished(store, [run_id])[0]
    summary = PruneSummary.of(store.read_json(run_id, artifacts.SUMMARY) or run.summary)
    found = run_intervals(store, run_id)
    steps = store.steps(run_id)
    if steps.empty:
        raise ReportRefused(f"No report: {run_id} finished without a measured step.")
    versions = steps["code_version"].dropna() if "code_version" in steps else pd.Series(dtype=object)
    return RunFacts(run=run, summary=summary, steps=found.with_bounds(steps), intervals=found,
                    stories=step_stories(store, run, steps, found, label), budget=_budget(run, summary, steps),
                    code_version=str(versions.iloc[0]) if len(versions) else "not recorded")


def compression_points(facts: RunFacts, label: Label = str) -> pd.DataFrame:
    """The compression chart's points of a run: the teacher, each step's fine-tuned model and the distilled
    student, with test accuracy (and its interval), latency, bytes and parameters, in that order."""
    rows = []
    for _, s in facts.steps.sort_values("step").iterrows():
        k = int(s["step"])
        name = "teacher" if k == 0 else f"step {k}: −L{_int(s.get('removed'))}"
        rows.append({"stage": "teacher" if k == 0 else "pruned", "name": name, "step": k,
                     "n_layers": _int(s.get("n_layers")), "accuracy": s.get("test_accuracy"),
                     "low": s.get("test_low"), "high": s.get("test_high"), "latency_ms": s.get("latency_ms"),
                     "bytes": s.get("safetensors_bytes"), "params": s.get("params_total")})
    after = facts.summary.after_kd_metrics
    kd = facts.intervals.after_kd
    if after and kd is not None:
        i = kd.interval
        rows.append({"stage": "distilled", "name": "distilled student", "step": len(facts.summary.removed_order),
                     "n_layers": _int(after.get("num_layers")), "accuracy": kd.accuracy,
                     "low": i.low if i else float("nan"), "high": i.high if i else float("nan"),
                     "latency_ms": after.get("latency_ms"), "bytes": after.get("safetensors_bytes"),
                     "params": after.get("params_total")})
    frame = pd.DataFrame(rows, columns=["stage", "name", "step", "n_layers", "accuracy", "low", "high", "latency_ms",
                                        "bytes", "params"])
    return frame.assign(run_id=facts.run.id, strategy=facts.run.strategy, dataset=facts.run.dataset,
                        strategy_name=label(facts.run.strategy))


@dataclass(frozen=True)
class ReportFacts:
    """A report of one run or a comparison of several: each run's facts, the paper-shaped table with intervals
    (text) and, for a comparison, the rank order per dataset."""

    runs: list[RunFacts]
    table: pd.DataFrame
    rankings: list[Ranking]

    @property
    def seeds(self) -> list[int]:
        return sorted({f.seed for f in self.runs if f.seed is not None})

    def seed_line(self) -> str:
        """How many runs and seeds the report rests on, and what one seed cannot say."""
        seeds = self.seeds
        runs = f"{len(self.runs)} run{'s' if len(self.runs) != 1 else ''}"
        if len(seeds) <= 1:
            which = f" (seed {seeds[0]})" if seeds else ""
            return (f"{runs}, 1 seed{which}: the intervals are over the test (or validation) rows of this seed; "
                    "another seed changes the split, the fine-tuning and the oracle's order, so the order of "
                    "strategies may not replicate.")
        return f"{runs}, {len(seeds)} seeds ({', '.join(str(s) for s in seeds)})."


def report_facts(store: RunStore, run_ids: Sequence[str], label: Label = str) -> ReportFacts:
    """The facts of a report of ``run_ids`` (:class:`ReportRefused` unless every one is a finished pruning run)."""
    runs = check_finished(store, run_ids)
    ids = [r.id for r in runs]
    facts = [run_facts(store, run_id, label) for run_id in ids]
    table = with_intervals(store, compare_table(store, ids))
    return ReportFacts(facts, table, rankings(store, ids, label) if len(ids) > 1 else [])
