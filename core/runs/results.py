"""What a run's walk produces, as typed records: the row a pruning walk writes per step (:class:`StepRow`, the
``steps`` table, with :class:`TeacherOrigin` on step 0 and :class:`OracleMark`/:class:`RankerMark` after) and the
two summaries a finished run leaves (:class:`PruneSummary`, :class:`MergeSummary` with its :class:`PruningSide`;
``summary.json`` and the run's ``summary`` column). The walks build these records and serialise them with their
``to_dict``, key for key the layout stored runs and the shipped pack hold; the pages read them back with
``from_dict``/``of``. :mod:`core.runs.record` re-exports them beside the :class:`~core.runs.record.Run`.

Stored runs of every earlier version still read: a summary or a step row reads missing figures as ``None`` and keeps
the keys it does not know (``extra``), so ``of(d).to_dict()`` gives back what was stored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from core.config import Resolved, as_resolved
from core.jsontypes import JSONObject


def _accuracy(block: Any) -> float | None:
    value = block.get("test_accuracy") if isinstance(block, Mapping) else None
    return None if value is None else float(value)


# --------------------------------------------------------------------- tolerant readers of stored values
def _missing(value: Any) -> bool:
    """None, or NaN (a key one row of a stored table lacks reads back from a DataFrame as NaN)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _opt_mapping(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) else None


def _opt_float(value: Any) -> float | None:
    try:
        return None if _missing(value) else float(value)
    except (TypeError, ValueError):
        return None


def _opt_int(value: Any) -> int | None:
    try:
        return None if _missing(value) else int(value)
    except (TypeError, ValueError):
        return None


def _ints(value: Any) -> list[int]:
    try:
        return [int(v) for v in value] if value is not None and not isinstance(value, (str, float)) else []
    except (TypeError, ValueError):
        return []


def _opt_precision(value: Any) -> Resolved | None:
    """A recorded precision (always resolved); anything else (absent, an older file's oddity) is None."""
    try:
        return as_resolved(value)
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------ step rows
@dataclass(frozen=True)
class TeacherOrigin:
    """What step 0 of a pruning run adds to its row: where the teacher came from and what the walk ran in."""

    cached: bool | None
    key: str | None
    code_version: str | None
    precision: Resolved | None
    weak: bool = False

    def to_dict(self) -> JSONObject:
        return {"teacher_cached": self.cached, "teacher_key": self.key, "code_version": self.code_version,
                "precision": self.precision, **({"weak_teacher": True} if self.weak else {})}


@dataclass(frozen=True)
class OracleMark:
    """What a pruning step adds to its row: the oracle's best layer and accuracy, the accuracy of the layer the
    strategy removed (all from this step's oracle table) and the pruned model's accuracy-to-size ratio."""

    best: int
    best_accuracy: float
    chosen_accuracy: float
    ratio: float

    def to_dict(self) -> JSONObject:
        return {"oracle_best": self.best, "oracle_best_accuracy": self.best_accuracy,
                "chosen_oracle_accuracy": self.chosen_accuracy, "ratio": self.ratio}


@dataclass(frozen=True)
class RankerMark:
    """How well a fusion ranker's order agreed with the oracle at this step (fusion strategies only)."""

    spearman: float | None
    top1: bool | None

    def to_dict(self) -> JSONObject:
        return {"ranker_spearman": self.spearman, "ranker_top1": self.top1}


#: the keys of a step row that are not the measured metrics
_STEP_KEYS = frozenset({"step", "run_id", "n_layers", "removed", "removed_order", "teacher_cached", "teacher_key",
                        "code_version", "precision", "weak_teacher", "oracle_best", "oracle_best_accuracy",
                        "chosen_oracle_accuracy", "ratio", "ranker_spearman", "ranker_top1"})


@dataclass(frozen=True)
class StepRow:
    """One row of a pruning run's ``steps`` table (its ``data`` column; the step number is the table's own): the
    depth, what was removed so far and the model's measured metrics (:meth:`core.metrics.ModelMetrics.to_dict`,
    flat), with the teacher's origin on step 0 (:class:`TeacherOrigin`) and the oracle's mark on every later step
    (:class:`OracleMark`, and :class:`RankerMark` for a fusion ranker). :meth:`to_dict` is the stored JSON object,
    key for key what the walk wrote before this record existed; :meth:`from_dict` reads any stored row back."""

    n_layers: int
    removed: int | None
    removed_order: tuple[int, ...]
    metrics: Mapping[str, Any]
    teacher: TeacherOrigin | None = None
    oracle: OracleMark | None = None
    ranker: RankerMark | None = None

    def to_dict(self) -> JSONObject:
        out = {"n_layers": self.n_layers, "removed": self.removed, "removed_order": list(self.removed_order),
               **self.metrics}
        for part in (self.teacher, self.oracle, self.ranker):
            if part is not None:
                out.update(part.to_dict())
        return out

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> StepRow:
        """A stored row (a JSON object, or a row of :meth:`core.runs.store.RunStore.steps` with its NaNs)."""
        d = {k: v for k, v in row.items() if not (_missing(v) and k not in ("removed", "teacher_key"))}
        teacher = oracle = ranker = None
        if "teacher_cached" in d or "code_version" in d:
            teacher = TeacherOrigin(None if d.get("teacher_cached") is None else bool(d["teacher_cached"]),
                                    d.get("teacher_key"), d.get("code_version"), _opt_precision(d.get("precision")),
                                    bool(d.get("weak_teacher")))
        if "oracle_best" in d:
            oracle = OracleMark(int(d["oracle_best"]), float(d["oracle_best_accuracy"]),
                                float(d["chosen_oracle_accuracy"]), float(d["ratio"]))
        if "ranker_spearman" in d or "ranker_top1" in d:
            top1 = d.get("ranker_top1")
            ranker = RankerMark(_opt_float(d.get("ranker_spearman")), None if top1 is None else bool(top1))
        return cls(n_layers=int(d["n_layers"]), removed=_opt_int(d.get("removed")),
                   removed_order=tuple(_ints(d.get("removed_order"))),
                   metrics={k: v for k, v in d.items() if k not in _STEP_KEYS}, teacher=teacher, oracle=oracle,
                   ranker=ranker)


# ------------------------------------------------------------------------------------------ summaries
@dataclass(frozen=True)
class RunSummary:
    """What a finished run reported (``summary.json``, and the ``summary`` column of its row) as a typed record:
    what both kinds of run report; :class:`PruneSummary` and :class:`MergeSummary` add their own. A walk builds
    one and writes :meth:`to_dict`; a page reads a stored one with :meth:`of` (any version's: missing figures are
    None, unknown keys stay in ``extra``)."""

    #: the teacher's measured metrics (step 0)
    teacher: Mapping[str, Any] = field(default_factory=dict)
    #: the compressed model's test/val scores after fine-tuning, before distillation; after distillation
    before_kd: Mapping[str, Any] | None = None
    after_kd: Mapping[str, Any] | None = None
    timings_s: Mapping[str, float] = field(default_factory=dict)
    #: the precision the run ran in, resolved (None: a run recorded before precision was recorded)
    precision: Resolved | None = None
    weak_teacher: bool = False
    #: keys this version does not know, kept as read
    extra: Mapping[str, Any] = field(default_factory=dict)

    #: the stored keys read into fields (the rest go to ``extra``)
    KEYS: ClassVar[tuple[str, ...]] = ("teacher", "before_kd", "after_kd", "timings_s", "precision", "weak_teacher")

    @classmethod
    def of(cls, summary: Mapping[str, Any] | None) -> Self:
        d = dict(summary or {})
        return cls(**cls._read(d), extra={k: v for k, v in d.items() if k not in cls.KEYS})

    @classmethod
    def _read(cls, d: Mapping[str, Any]) -> dict[str, Any]:
        """The fields of a stored summary, each read tolerantly."""
        return {"teacher": _mapping(d.get("teacher")), "before_kd": _opt_mapping(d.get("before_kd")),
                "after_kd": _opt_mapping(d.get("after_kd")), "timings_s": _mapping(d.get("timings_s")),
                "precision": _opt_precision(d.get("precision")), "weak_teacher": bool(d.get("weak_teacher"))}

    def _tail(self) -> JSONObject:
        """The keys every summary ends with (timings, precision, the weak-teacher flag when set)."""
        return {"timings_s": dict(self.timings_s), **({"precision": self.precision} if self.precision else {}),
                **({"weak_teacher": True} if self.weak_teacher else {})}

    def to_dict(self) -> JSONObject:
        """The summary as stored (JSON-ready)."""
        return {"teacher": dict(self.teacher), **_present(before_kd=self.before_kd, after_kd=self.after_kd),
                **self._tail(), **self.extra}

    @property
    def raw(self) -> JSONObject:
        """The summary as a stored dict (:meth:`to_dict`)."""
        return self.to_dict()

    @property
    def teacher_accuracy(self) -> float | None:
        return _accuracy(self.teacher)

    @property
    def before_kd_accuracy(self) -> float | None:
        """Test accuracy of the compressed model after fine-tuning, before distillation."""
        return _accuracy(self.before_kd)

    @property
    def after_kd_accuracy(self) -> float | None:
        return _accuracy(self.after_kd)

    @property
    def final_accuracy(self) -> float | None:
        """Test accuracy of the model the run ends with: after distillation when it ran, else before."""
        after = self.after_kd_accuracy
        return after if after is not None else self.before_kd_accuracy

    @property
    def timings(self) -> dict[str, float]:
        return dict(self.timings_s)

    @property
    def total_seconds(self) -> float | None:
        value = self.timings.get("total")
        return float(value) if isinstance(value, (int, float)) and value > 0 else None


def _present(**blocks: Any) -> JSONObject:
    """The blocks that are there (not None), plain: a summary leaves out what its run did not do."""
    return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in blocks.items() if v is not None}


@dataclass(frozen=True)
class PruneSummary(RunSummary):
    """A pruning run's summary."""

    removed_order: list[int] = field(default_factory=list)
    final_layers: int | None = None
    #: the best test accuracy among the pruned models and its depth: ``{"accuracy", "n_layers"}``
    max_accuracy_over_depth: Mapping[str, Any] | None = None
    #: every score of the distilled model (empty without distillation)
    after_kd_metrics: Mapping[str, Any] = field(default_factory=dict)
    ratio_after_kd: float | None = None
    #: the final model's accuracy-to-size ratio (None when nothing was removed)
    ratio: float | None = None
    #: what the tree walk shared: ``strategies_in_tree`` and :class:`core.pruning.tree.WalkStats`
    shared: Mapping[str, Any] = field(default_factory=dict)

    KEYS: ClassVar[tuple[str, ...]] = (*RunSummary.KEYS, "removed_order", "final_layers", "max_accuracy_over_depth",
                                       "after_kd_metrics", "ratio_after_kd", "ratio", "shared")

    @classmethod
    def _read(cls, d: Mapping[str, Any]) -> dict[str, Any]:
        return {**super()._read(d), "removed_order": _ints(d.get("removed_order")),
                "final_layers": _opt_int(d.get("final_layers")),
                "max_accuracy_over_depth": _opt_mapping(d.get("max_accuracy_over_depth")),
                "after_kd_metrics": _mapping(d.get("after_kd_metrics")),
                "ratio_after_kd": _opt_float(d.get("ratio_after_kd")), "ratio": _opt_float(d.get("ratio")),
                "shared": _mapping(d.get("shared"))}

    def to_dict(self) -> JSONObject:
        return {"teacher": dict(self.teacher), "removed_order": list(self.removed_order),
                **_present(final_layers=self.final_layers, max_accuracy_over_depth=self.max_accuracy_over_depth,
                           before_kd=self.before_kd, after_kd=self.after_kd,
                           after_kd_metrics=self.after_kd_metrics or None, ratio_after_kd=self.ratio_after_kd,
                           ratio=self.ratio),
                **self._tail(), **({"shared": dict(self.shared)} if self.shared else {}), **self.extra}

    @property
    def strategies_in_tree(self) -> int:
        """How many strategies shared this run's tree walk (and its clock); 1 for a run on its own."""
        return max(int(self.shared.get("strategies_in_tree") or 1), 1)


@dataclass(frozen=True)
class PruningSide:
    """A merge run's comparison: the same budget spent on removing whole layers (greedy oracle), with the pruned
    model's scores at each stage of the same recovery as the merged one."""

    strategy: str = ""
    depth: int = 0
    removed_layers: list[int] = field(default_factory=list)
    kept_layers: list[int] = field(default_factory=list)
    no_tuning: Mapping[str, Any] | None = None
    finetuned: Mapping[str, Any] | None = None
    distilled: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    KEYS: ClassVar[tuple[str, ...]] = ("strategy", "depth", "removed_layers", "kept_layers", "no_tuning", "finetuned",
                                       "distilled")

    @classmethod
    def of(cls, side: Mapping[str, Any]) -> PruningSide:
        d = dict(side)
        return cls(strategy=str(d.get("strategy") or ""), depth=_opt_int(d.get("depth")) or 0,
                   removed_layers=_ints(d.get("removed_layers")), kept_layers=_ints(d.get("kept_layers")),
                   no_tuning=_opt_mapping(d.get("no_tuning")), finetuned=_opt_mapping(d.get("finetuned")),
                   distilled=_opt_mapping(d.get("distilled")),
                   extra={k: v for k, v in d.items() if k not in cls.KEYS})

    def to_dict(self) -> JSONObject:
        return {"strategy": self.strategy, "depth": self.depth, "removed_layers": list(self.removed_layers),
                "kept_layers": list(self.kept_layers),
                **_present(no_tuning=self.no_tuning, finetuned=self.finetuned, distilled=self.distilled),
                **self.extra}

    @property
    def raw(self) -> JSONObject:
        return self.to_dict()

    @property
    def final(self) -> dict[str, Any]:
        """The pruned model's scores after the same recovery as the merged one (distilled, else fine-tuned)."""
        return dict(self.distilled or self.finetuned or {})

    @property
    def final_accuracy(self) -> float | None:
        return _accuracy(self.final)

    @property
    def latency_ms(self) -> float | None:
        value = self.final.get("latency_ms", self.extra.get("latency_ms"))
        return None if value is None else float(value)


@dataclass(frozen=True)
class MergeSummary(RunSummary):
    """A merge run's summary."""

    #: the merged window (positions) and its label (``L5-L8``), how it was selected, the reference layer
    window: list[int] = field(default_factory=list)
    window_label: str = ""
    selection: str = ""
    reference: str = ""
    #: parameters before and after, removed, the FFNs' count
    params: Mapping[str, Any] = field(default_factory=dict)
    #: the merged model's scores per stage (``no_tuning``, ``finetuned``, ``distilled``)
    merged: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: the merged model's scores after recovery (distilled when it ran, else fine-tuned)
    final: Mapping[str, Any] = field(default_factory=dict)
    ffn_still_shared: bool | None = None
    #: the matched pruning depth (:func:`core.merging.windows.matched_pruning_depth`)
    budget: Mapping[str, Any] = field(default_factory=dict)
    #: the pruning side at the same budget, when the run compared one
    pruning: PruningSide | None = None
    ratio: float | None = None

    KEYS: ClassVar[tuple[str, ...]] = (*RunSummary.KEYS, "window", "window_label", "selection", "reference", "params",
                                       "merged", "final", "ffn_still_shared", "budget", "pruning", "ratio")

    @classmethod
    def _read(cls, d: Mapping[str, Any]) -> dict[str, Any]:
        side = d.get("pruning")
        shared = d.get("ffn_still_shared")
        return {**super()._read(d), "window": _ints(d.get("window")), "window_label": str(d.get("window_label") or ""),
                "selection": str(d.get("selection") or ""), "reference": str(d.get("reference") or ""),
                "params": _mapping(d.get("params")), "merged": _mapping(d.get("merged")),
                "final": _mapping(d.get("final")), "ffn_still_shared": None if shared is None else bool(shared),
                "budget": _mapping(d.get("budget")),
                "pruning": PruningSide.of(side) if isinstance(side, Mapping) and side else None,
                "ratio": _opt_float(d.get("ratio"))}

    def to_dict(self) -> JSONObject:
        return {"teacher": dict(self.teacher), "window": list(self.window), "window_label": self.window_label,
                "selection": self.selection, "reference": self.reference, "params": dict(self.params),
                "merged": {k: dict(v) for k, v in self.merged.items()}, "final": dict(self.final),
                "ffn_still_shared": self.ffn_still_shared, **_present(before_kd=self.before_kd),
                "budget": dict(self.budget), "pruning": self.pruning.to_dict() if self.pruning else None,
                "ratio": self.ratio, **_present(after_kd=self.after_kd), **self._tail(), **self.extra}

    @property
    def final_accuracy(self) -> float | None:
        return _accuracy(self.final) if self.final else super().final_accuracy


def summary_of(kind: str, summary: Mapping[str, Any] | None) -> PruneSummary | MergeSummary:
    """The typed summary of a run of ``kind`` (``merge``, else a pruning run's)."""
    return MergeSummary.of(summary) if kind == "merge" else PruneSummary.of(summary)
