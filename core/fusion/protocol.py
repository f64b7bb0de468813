"""Which profile rows may train a ranker (the protocol, described for the UI), and how good a ranking is.

Leave-one-dataset-out is the rule: the ranker that prunes dataset D never sees a row of D, from any run
or any source (the user's store, a shipped profile bank), so its agreement with D's oracle is honest.
A ranker learns only from measurements worth learning from: rows flagged ``weak_teacher`` (a run whose teacher
failed the guard and was pruned anyway, :func:`core.fusion.bank.training_profiles`) never train one, and the
protocol's sentence says how many it left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from core.fusion.features import GROUP_KEYS, ORACLE, SOURCE, STORE_SOURCE, _plain, _require_columns, upgrade_profiles
from core.jsontypes import JSONObject

LEAVE_ONE_DATASET_OUT = "leave_one_dataset_out"
LEAVE_ONE_DATASET_OUT_OTHER_MODELS = "leave_one_dataset_out_other_models"
WITHIN_RUN = "within_run"
NONE = "none"
PROTOCOLS: tuple[str, ...] = (LEAVE_ONE_DATASET_OUT, LEAVE_ONE_DATASET_OUT_OTHER_MODELS, WITHIN_RUN, NONE)


@dataclass(frozen=True)
class TrainingProtocol:
    """What trained (or would have trained) the ranker of one step, with a sentence for the UI."""

    name: str
    description: str
    n_rows: int = 0
    datasets: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    runs: tuple[str, ...] = ()
    #: rows that would have been eligible but were left out: their run's teacher failed the guard
    left_out_weak: int = 0

    @property
    def fallback(self) -> str | None:
        """``signal_vote`` when nothing trained a ranker."""
        return "signal_vote" if self.name == NONE else None

    def to_dict(self) -> JSONObject:
        return {"name": self.name, "description": self.description, "n_rows": self.n_rows,
                "datasets": list(self.datasets), "sources": list(self.sources), "models": list(self.models),
                "runs": list(self.runs), "fallback": self.fallback, "left_out_weak": self.left_out_weak}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | str) -> TrainingProtocol:
        """Today's dict, or what older runs stored: a dict keyed ``protocol`` or a bare protocol name."""
        if isinstance(d, str):
            return cls(name=d, description="")
        def strings(key: str) -> tuple[str, ...]:
            return tuple(str(x) for x in (d.get(key) or ()))
        return cls(name=str(d.get("name") or d.get("protocol") or "?"), description=str(d.get("description", "")),
                   n_rows=int(d.get("n_rows") or 0), datasets=strings("datasets"), sources=strings("sources"),
                   models=strings("models"), runs=strings("runs"), left_out_weak=int(d.get("left_out_weak") or 0))


def _sources_text(rows: pd.DataFrame) -> str:
    """"shipped bank v1 + your runs (3)": each source of the rows, the user's store counted in runs."""
    parts = []
    for source in sorted(set(rows[SOURCE]), key=lambda s: (s == STORE_SOURCE, s)):
        if source == STORE_SOURCE:
            parts.append(f"your runs ({rows.loc[rows[SOURCE] == source, 'run_id'].nunique()})")
        else:
            parts.append(f"shipped {source}")
    return " + ".join(parts)


WEAK_TEACHER = "weak_teacher"


def _weak_mask(rows: pd.DataFrame) -> pd.Series:
    """True for rows whose run's teacher failed the guard (a missing flag: not weak)."""
    if WEAK_TEACHER not in rows.columns:
        return pd.Series(False, index=rows.index)
    return rows[WEAK_TEACHER].eq(True)


def _weak_text(left: pd.DataFrame) -> str:
    if not len(left):
        return ""
    return (f" Left out {len(left)} layer-step(s) of {left['run_id'].nunique()} run(s) whose teacher failed the "
            "guard (pruned anyway, flagged weak_teacher): a teacher no better than the majority class measures "
            "nothing worth learning from.")


def _record(name: str, sentence: str, rows: pd.DataFrame, left: pd.DataFrame | None = None) -> TrainingProtocol:
    def values(column: str) -> tuple[str, ...]:
        return tuple(sorted({str(v) for v in rows[column]})) if len(rows) else ()
    left = left if left is not None else rows.iloc[0:0]
    return TrainingProtocol(name=name, description=sentence + _weak_text(left), n_rows=int(len(rows)),
                            datasets=values("dataset"), sources=values(SOURCE), models=values("model"),
                            runs=values("run_id"), left_out_weak=int(len(left)))


def choose_training_rows(profiles: pd.DataFrame, model: str, dataset: str, run_id: Any,
                         step: int) -> tuple[pd.DataFrame, TrainingProtocol]:
    """Which profile rows may train the ranker for (model, dataset, run, step), and the protocol record.

    Rows without a finite oracle value are never used; no row of ``dataset`` (any run, any source) is used
    except under ``within_run``. In order:

    1. ``leave_one_dataset_out``: every row of the same model on other datasets;
    2. ``leave_one_dataset_out_other_models``: the model has none, but other models have rows of other
       datasets (features are within-step ranks, so rows transfer across models);
    3. ``within_run``: the earlier steps of this run (same dataset: its agreement is optimistic);
    4. ``none``: nothing to train on; the caller ranks by the signal vote.

    ``profiles`` may carry a ``source`` column ("store", "bank v1", ...); a missing one means "store".
    """
    if len(profiles) == 0:
        profiles = pd.DataFrame(columns=["run_id", "dataset", "model", "step", ORACLE])
    _require_columns(profiles, ["run_id", "dataset", "model", "step", ORACLE], "profiles")
    profiles = upgrade_profiles(profiles)
    finite = profiles[np.isfinite(pd.to_numeric(profiles[ORACLE], errors="coerce").astype(float))]
    weak = _weak_mask(finite)
    usable, flagged = finite[~weak], finite[weak]
    elsewhere = usable[usable["dataset"] != dataset]
    mine = elsewhere[elsewhere["model"] == model]
    flagged_elsewhere = flagged[flagged["dataset"] != dataset]
    if len(mine):
        names = sorted({str(d) for d in mine["dataset"]})
        return mine, _record(LEAVE_ONE_DATASET_OUT, (
            f"Trained on {len(mine)} layer-steps of {model} from {len(names)} other dataset(s) "
            f"({', '.join(names)}): {_sources_text(mine)}; never on {dataset}, the dataset being pruned."), mine,
            flagged_elsewhere[flagged_elsewhere["model"] == model])
    if len(elsewhere):
        names = sorted({str(d) for d in elsewhere["dataset"]})
        models = sorted({str(m) for m in elsewhere["model"]})
        return elsewhere, _record(LEAVE_ONE_DATASET_OUT_OTHER_MODELS, (
            f"No other dataset has been profiled for {model}, so the ranker is trained on {len(elsewhere)} "
            f"layer-steps of other model(s) ({', '.join(models)}) from {len(names)} other dataset(s) "
            f"({', '.join(names)}): {_sources_text(elsewhere)}; never on {dataset}. The features are within-step "
            "ranks, so the rows transfer across models."), elsewhere, flagged_elsewhere)
    earlier = usable[(usable["run_id"] == run_id) & (usable["step"] < step) & (usable["model"] == model)]
    if len(earlier):
        return earlier, _record(WITHIN_RUN, (
            f"No other dataset has been profiled for any model, so the ranker is trained on the {len(earlier)} "
            f"layer-steps of steps 0-{step - 1} of this run (same dataset: its agreement with the oracle is "
            "optimistic)."), earlier, flagged_elsewhere)
    nothing = usable.iloc[0:0]
    return nothing, _record(NONE, (
        f"Nothing to train on yet for {model} (first step, no earlier profile): layers are ranked by the "
        "signal vote, the mean within-step rank of the twelve signals, each oriented so that higher "
        "means prune first."), nothing, flagged_elsewhere)


class RankerQuality(TypedDict):
    """How one step's ranking agrees with the oracle (:func:`ranker_quality`)."""

    spearman: float | None
    top1_hit: bool
    chosen: int
    best: list[int]


def ranker_quality(pred: Sequence[float] | np.ndarray, oracle: Sequence[float] | np.ndarray,
                   atol: float = 1e-12) -> RankerQuality:
    """How one step's ranking agrees with the oracle (both are scores: higher = better to remove).

    ``spearman``: rank correlation across the remaining layers (None when undefined: fewer than two
    layers or a constant side). ``top1_hit``: whether the layer the ranker would remove (arg-max of
    ``pred``, first on ties) is among the oracle's best (ties within ``atol`` all count).
    """
    p, o = np.asarray(pred, dtype=float), np.asarray(oracle, dtype=float)
    if p.ndim != 1 or p.shape != o.shape or p.size == 0:
        raise ValueError(f"ranker_quality: pred and oracle must be equal-length 1-d, got {p.shape} and {o.shape}")
    chosen = int(np.argmax(p))
    best = np.flatnonzero(o >= o.max() - atol)
    defined = p.size > 1 and np.ptp(p) > 0 and np.ptp(o) > 0
    rho = float(spearmanr(p, o).statistic) if defined else None
    return {"spearman": rho, "top1_hit": bool(chosen in best), "chosen": chosen, "best": best.tolist()}



def quality_by_step(profile: pd.DataFrame, scores: Sequence[float]) -> pd.DataFrame:
    """:func:`ranker_quality` for every (run, step) of a profile against its oracle accuracy.

    One row per step: run_id, step, n_layers, spearman, top1_hit, chosen_layer, best_layers (original
    layer indices). ``frame.top1_hit.mean()`` is the top-1 hit rate.
    """
    _require_columns(profile, [*GROUP_KEYS, "original_layer", ORACLE], "profile")
    frame = profile.assign(_score=np.asarray(scores, dtype=float))
    rows = []
    for (run_id, step), g in frame.groupby(list(GROUP_KEYS), sort=True):
        q = ranker_quality(g["_score"], g[ORACLE])
        layers = g["original_layer"].to_numpy()
        rows.append({"run_id": run_id, "step": step, "n_layers": len(g), "spearman": q["spearman"],
                     "top1_hit": q["top1_hit"], "chosen_layer": _plain(layers[q["chosen"]]),
                     "best_layers": [_plain(layers[i]) for i in q["best"]]})
    return pd.DataFrame(rows)


__all__ = ["LEAVE_ONE_DATASET_OUT", "LEAVE_ONE_DATASET_OUT_OTHER_MODELS", "NONE", "PROTOCOLS", "TrainingProtocol",
           "WITHIN_RUN", "choose_training_rows", "quality_by_step", "ranker_quality"]
