"""Intervals and verdicts for the accuracies a stored run reports: what every page and CLI table prints beside a
number (issue 21). The statistics are :mod:`core.stats`; this module only picks what to feed them.

- A run that kept per-example outcomes (``steps/<k>/outcomes/<evaluation>.parquet``) gets each accuracy's Wilson
  interval from them, and the difference between two models scored on the same test rows (a pruned model and its
  teacher, the merged and the pruned model, two strategies on the same split) a **paired** bootstrap interval.
- A run stored before outcomes were kept has only its accuracies: the interval is Wilson's from the accuracy and
  the test split's size (:func:`test_size`: the teacher guard's event records it), and a difference is
  **unpaired** (Newcombe's interval for two independent samples, wider than the paired one would be). The
  sentence then says so.
- Without outcomes and without a known test size a number is shown bare (``interval`` is ``None``): a guessed
  size would make a fake interval.

``read`` arguments are ``(run_id, step, evaluation) -> outcomes frame or None`` (``RunStore.read_outcomes``, or
the pages' cached reader).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from core.runs import artifacts
from core.runs.events import StoredEvent
from core.runs.record import MergeSummary
from core.stats import (
    LEVEL,
    Interval,
    accuracy_of,
    beyond_noise,
    paired_accuracy_of,
    unpaired_difference,
    verdict,
    wilson_interval,
)

Reader = Callable[[str, int, str], "pd.DataFrame | None"]

#: the sentence a page prints once under its numbers (the level and the methods)
METHOD_NOTE = (f"Brackets: {LEVEL:.0%} intervals. An accuracy's is Wilson's over the test rows; a difference "
               "between two models on the same test rows is a paired bootstrap over those rows, and reads "
               "**within noise** when its interval contains 0. Runs stored before per-example outcomes were "
               "kept get Wilson's interval from their accuracy and test size, and their differences are "
               "unpaired (wider).")


def test_size(events: Iterable[StoredEvent]) -> int | None:
    """The test split's size of a run, from its events (the teacher guard's ``test_rows``), or None."""
    for ev in events:
        rows = ev.payload.get("test_rows")
        if ev.stage == "teacher_check" and isinstance(rows, int) and rows > 0:
            return rows
    return None


@dataclass(frozen=True)
class Measured:
    """One test accuracy with its interval (``None`` when neither outcomes nor the test size are known) and,
    when the run kept them, the per-example outcomes a paired comparison needs."""

    accuracy: float
    interval: Interval | None
    outcomes: pd.DataFrame | None = field(default=None, compare=False, repr=False)

    @property
    def paired_ready(self) -> bool:
        return self.outcomes is not None

    def text(self, digits: int = 3) -> str:
        """``0.894 [0.882, 0.905]``, or the bare accuracy when no interval is known."""
        return self.interval.format(digits) if self.interval is not None else f"{self.accuracy:.{digits}f}"


def measured(accuracy: float | None, outcomes: pd.DataFrame | None = None, n: int | None = None) -> Measured | None:
    """An accuracy with its interval: Wilson from ``outcomes`` when given (its accuracy is then the outcomes',
    which equals the stored one), else Wilson from ``accuracy`` and the test size ``n``, else bare."""
    if outcomes is not None and len(outcomes):
        interval = accuracy_of(outcomes)
        return Measured(interval.estimate, interval, outcomes)
    if accuracy is None or pd.isna(accuracy):
        return None
    accuracy = float(accuracy)
    if n:
        return Measured(accuracy, wilson_interval(int(round(accuracy * n)), int(n)))
    return Measured(accuracy, None)


@dataclass(frozen=True)
class Comparison:
    """Model ``a`` minus model ``b`` on the test split: the difference's interval, whether it is paired (both
    scored on the same rows, per-example outcomes kept) and the two names the sentence uses."""

    interval: Interval
    paired: bool
    a: str
    b: str
    #: why an unpaired comparison is not paired
    unpaired_why: str = "no per-example outcomes stored"

    @property
    def within_noise(self) -> bool:
        return not beyond_noise(self.interval)

    @property
    def difference(self) -> float:
        return self.interval.estimate

    def sentence(self, digits: int = 3) -> str:
        """``merging ahead by 0.012 [0.004, 0.020] (paired)`` or ``within noise (a − b: ...)``."""
        how = "paired" if self.paired else f"unpaired: {self.unpaired_why}"
        return f"{verdict(self.interval, self.a, self.b, digits=digits)} ({how})"

    def signed(self, digits: int = 3) -> str:
        """A table cell: ``+0.012 [+0.004, +0.020]`` with ``within noise`` appended when the interval holds 0."""
        i = self.interval
        text = f"{i.estimate:+.{digits}f} [{i.low:+.{digits}f}, {i.high:+.{digits}f}]"
        return text + (" within noise" if self.within_noise else "") + ("" if self.paired else " unpaired")


def compare(a: Measured | None, b: Measured | None, name_a: str = "A", name_b: str = "B") -> Comparison | None:
    """``a`` minus ``b``: paired when both kept outcomes on the same test rows, else unpaired from the two
    Wilson intervals' counts; None when either lacks an interval."""
    if a is None or b is None:
        return None
    why = "no per-example outcomes stored"
    if a.outcomes is not None and b.outcomes is not None:
        try:
            return Comparison(paired_accuracy_of(a.outcomes, b.outcomes).interval, True, name_a, name_b)
        except ValueError:  # different test rows (another split, size or seed): fall back to unpaired
            why = "different test rows"
    if a.interval is None or b.interval is None or a.interval.n is None or b.interval.n is None:
        return None
    na, nb = a.interval.n, b.interval.n
    diff = unpaired_difference(int(round(a.accuracy * na)), na, int(round(b.accuracy * nb)), nb)
    return Comparison(diff, False, name_a, name_b, why)


@dataclass(frozen=True)
class FinalIntervals:
    """A run's teacher and final model (after distillation when it ran) with their intervals, and the final
    model minus the teacher: what a one-line summary of a run (Runs, Home, a study's cells) prints."""

    teacher: Measured | None
    final: Measured | None
    vs_teacher: Comparison | None


# ------------------------------------------------------------------------------------------ a pruning run
@dataclass(frozen=True)
class PruneIntervals:
    """A pruning run's test accuracies with their intervals: ``steps[k]`` after step k's fine-tuning (0 is the
    teacher), ``vs_teacher[k]`` step k minus the teacher, ``after_kd`` the distilled model with its difference
    to the teacher and to the model before distillation."""

    steps: dict[int, Measured]
    vs_teacher: dict[int, Comparison]
    after_kd: Measured | None = None
    kd_vs_teacher: Comparison | None = None
    kd_vs_before: Comparison | None = None

    @property
    def teacher(self) -> Measured | None:
        return self.steps.get(0)

    @property
    def final_step(self) -> int | None:
        return max(self.steps) if self.steps else None

    @property
    def final(self) -> Measured | None:
        """The model the run ends with: after distillation when it ran, else the last step's."""
        if self.after_kd is not None:
            return self.after_kd
        return self.steps.get(self.final_step) if self.final_step is not None else None

    @property
    def final_vs_teacher(self) -> Comparison | None:
        if self.after_kd is not None:
            return self.kd_vs_teacher
        return self.vs_teacher.get(self.final_step) if self.final_step else None

    @property
    def paired(self) -> bool:
        """Whether the run kept per-example outcomes (its comparisons are paired)."""
        return any(m.paired_ready for m in self.steps.values())

    def final_intervals(self) -> FinalIntervals:
        return FinalIntervals(self.teacher, self.final, self.final_vs_teacher)

    def bounds(self) -> pd.DataFrame:
        """One row per step: ``step``, ``test_low``, ``test_high`` (NaN without an interval) and ``test_ci``
        (``0.894 [0.882, 0.905]``), to join onto the run's steps table (error bars, table cells)."""
        rows = [{"step": k, "test_low": m.interval.low if m.interval else float("nan"),
                 "test_high": m.interval.high if m.interval else float("nan"), "test_ci": m.text()}
                for k, m in sorted(self.steps.items())]
        return pd.DataFrame(rows, columns=["step", "test_low", "test_high", "test_ci"])

    def with_bounds(self, steps: pd.DataFrame) -> pd.DataFrame:
        """``steps`` (a steps table with a ``step`` column) with :meth:`bounds` joined on."""
        if steps.empty or "step" not in steps:
            return steps
        extra = [c for c in ("test_low", "test_high", "test_ci") if c in steps]
        return steps.drop(columns=extra).merge(self.bounds(), on="step", how="left")


def prune_intervals(run_id: str, steps: pd.DataFrame, summary: Mapping[str, Any], read: Reader,
                    n: int | None = None) -> PruneIntervals:
    """Every test accuracy of a pruning run (its ``steps`` table and ``summary``) with its interval, from the
    outcomes ``read`` finds, else from the test size ``n``."""
    measured_steps: dict[int, Measured] = {}
    if not steps.empty and "test_accuracy" in steps:
        for _, row in steps.iterrows():
            k = int(row["step"])
            m = measured(row["test_accuracy"], read(run_id, k, artifacts.TEST_OUTCOMES), n)
            if m is not None:
                measured_steps[k] = m
    teacher = measured_steps.get(0)
    vs = {k: c for k, m in measured_steps.items() if k > 0
          and (c := compare(m, teacher, f"after step {k}", "teacher")) is not None}
    after = (summary.get("after_kd") or {}).get("test_accuracy") if isinstance(summary, Mapping) else None
    if after is None or not measured_steps:
        return PruneIntervals(measured_steps, vs)
    last = max(measured_steps)
    kd = measured(after, read(run_id, last, artifacts.KD_TEST_OUTCOMES), n)
    return PruneIntervals(measured_steps, vs, kd, compare(kd, teacher, "distilled model", "teacher"),
                          compare(kd, measured_steps[last], "after distillation", "before distillation"))


# ------------------------------------------------------------------------------------------ ranking
@dataclass(frozen=True)
class Ranked:
    """One entry of a rank order: its name, its accuracy and how it compares with the leader (None for the
    leader itself)."""

    name: str
    measured: Measured
    vs_leader: Comparison | None


def rank(entries: Sequence[tuple[str, Measured]]) -> list[Ranked]:
    """``entries`` ordered by accuracy, best first, each compared with the first (paired where both kept
    outcomes on the same rows): a rank order that says which places are within noise."""
    ordered = sorted(entries, key=lambda e: -e[1].accuracy)
    if not ordered:
        return []
    lead_name, lead = ordered[0]
    out = [Ranked(lead_name, lead, None)]
    for name, m in ordered[1:]:
        out.append(Ranked(name, m, compare(m, lead, name, lead_name)))
    return out


def rank_lines(ranked: Sequence[Ranked], digits: int = 3) -> list[str]:
    """:func:`rank_sentence` as lines: the highest, then one line per other place, then the count of ties."""
    if not ranked:
        return []
    lines = [f"**{ranked[0].name}** highest: {ranked[0].measured.text(digits)}"]
    for r in ranked[1:]:
        lines.append(f"{r.name} {r.measured.text(digits)}: "
                     + (r.vs_leader.sentence(digits) if r.vs_leader is not None else "no interval (test size unknown)"))
    ties = sum(1 for r in ranked[1:] if r.vs_leader is not None and r.vs_leader.within_noise)
    if len(ranked) > 1:
        lines.append("No place is ahead beyond noise." if ties == len(ranked) - 1
                     else f"{ties} of {len(ranked) - 1} within noise of the highest.")
    return lines


def rank_sentence(ranked: Sequence[Ranked], digits: int = 3) -> str:
    """``**RF fusion** highest (0.912 [...]); Top-down 0.905 [...]: within noise (...); Random ...: RF fusion
    ahead by ... 1 of 2 within noise of the highest.``"""
    if not ranked:
        return ""
    head = f"**{ranked[0].name}** highest ({ranked[0].measured.text(digits)})"
    if len(ranked) == 1:
        return head + "."
    rest = []
    for r in ranked[1:]:
        rest.append(f"{r.name} {r.measured.text(digits)}: "
                    + (r.vs_leader.sentence(digits) if r.vs_leader is not None else "no interval (test size unknown)"))
    ties = sum(1 for r in ranked[1:] if r.vs_leader is not None and r.vs_leader.within_noise)
    if ties == len(ranked) - 1:
        tail = " No place is ahead beyond noise."
    else:
        tail = f" {ties} of {len(ranked) - 1} within noise of the highest." if ties else ""
    return head + "; " + "; ".join(rest) + "." + tail


# ------------------------------------------------------------------------------------------ a merge run
def comparison_intervals(run_id: str, comparison: pd.DataFrame, read: Reader, n: int | None = None) -> pd.DataFrame:
    """A merge run's comparison table (one row per method x stage, plus the teacher) with each test accuracy's
    interval: columns ``test_low``, ``test_high`` (NaN when unknown), ``test accuracy [95 %]`` (text) and
    ``vs teacher [95 %]`` (the row minus the teacher, paired where both kept outcomes: :meth:`Comparison.signed`)."""
    frame = comparison.copy()
    lows, highs, texts, vs = [], [], [], []
    teacher_rows = frame[frame["method"] == "teacher"] if "method" in frame else frame.iloc[0:0]
    teacher = measured(teacher_rows["test_accuracy"].iloc[0] if len(teacher_rows) else None,
                       read(run_id, 0, artifacts.TEST_OUTCOMES), n)
    for _, row in frame.iterrows():
        method, stage = str(row.get("method")), str(row.get("stage"))
        if method == "teacher":
            out = read(run_id, 0, artifacts.TEST_OUTCOMES)
        elif method in artifacts.COMPARISON_METHODS and stage in artifacts.COMPARISON_STAGES:
            out = read(run_id, 1, artifacts.comparison_outcomes(method, stage, "test"))
        else:
            out = None
        m = measured(row.get("test_accuracy"), out, n)
        i = m.interval if m is not None else None
        lows.append(i.low if i is not None else float("nan"))
        highs.append(i.high if i is not None else float("nan"))
        texts.append(m.text() if m is not None else "")
        c = compare(m, teacher, method, "teacher") if method != "teacher" else None
        vs.append(c.signed() if c is not None else "")
    return frame.assign(test_low=lows, test_high=highs, **{"test accuracy [95 %]": texts, "vs teacher [95 %]": vs})


def _merge_summary(summary: MergeSummary | Mapping[str, Any]) -> MergeSummary:
    return summary if isinstance(summary, MergeSummary) else MergeSummary.of(summary)


def merge_final(run_id: str, summary: MergeSummary | Mapping[str, Any], read: Reader, n: int | None = None
                ) -> FinalIntervals:
    """A merge run's teacher and merged model after recovery (distilled when it ran, else fine-tuned) with their
    intervals and the difference (``summary`` typed, or as stored)."""
    s = _merge_summary(summary)
    teacher = measured(s.teacher_accuracy, read(run_id, 0, artifacts.TEST_OUTCOMES), n)
    stage = "distilled" if s.merged.get("distilled") is not None else "finetuned"
    final = measured(s.final_accuracy if s.final else None,
                     read(run_id, 1, artifacts.comparison_outcomes("merge", stage, "test")), n)
    return FinalIntervals(teacher, final, compare(final, teacher, "merged model", "teacher"))


def merge_sides(run_id: str, summary: MergeSummary | Mapping[str, Any], read: Reader, n: int | None = None
                ) -> dict[str, Measured | None]:
    """A merge run's teacher, merged and pruned model after the same recovery (distilled when both were, else
    fine-tuned), each with its interval: keys ``teacher``, ``merge``, ``prune``."""
    s = _merge_summary(summary)
    pruning = s.pruning
    both_distilled = s.merged.get("distilled") is not None and pruning is not None and pruning.distilled is not None
    stage = "distilled" if both_distilled else "finetuned"
    final = merge_final(run_id, s, read, n)
    prune = None
    if pruning is not None:
        side = (pruning.distilled if both_distilled else pruning.finetuned) or {}
        prune = measured(side.get("test_accuracy"),
                         read(run_id, 1, artifacts.comparison_outcomes("prune", stage, "test")), n)
    return {"teacher": final.teacher, "merge": final.final, "prune": prune}
