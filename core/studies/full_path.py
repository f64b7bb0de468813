"""The full-path table of the paper check: every strategy's own run of a study (removals with fine-tuning, then
distillation), read from a run store, ranked after distillation, merged with the rows shipped in
``data/reference/full_path.csv``, with each run's distilled-vs-teacher interval where the store kept outcomes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from core.paths import PROJECT_ROOT
from core.runs.record import PruneSummary
from core.runs.report import run_intervals

REFERENCE_DIR = PROJECT_ROOT / "data" / "reference"
FULL_PATH_FILE = "full_path.csv"
#: the columns of a full-path row's distilled-vs-teacher paired interval
KD_VS_TEACHER = ("kd_vs_teacher", "kd_vs_teacher_low", "kd_vs_teacher_high", "kd_vs_teacher_paired")


def full_path_table(store: Any, study_ids: list[str] | None = None, run_ids: list[str] | None = None,
                    source: str = "store") -> pd.DataFrame:
    """Every finished study run (a strategy's own pruning path, then KD): accuracy at each depth, the maximum
    over depth, after KD, the accuracy-to-size ratio, and the rank per (model, dataset, seed, budget).

    ``store`` is a run store or anything that reads like one (the recorded pack:
    :class:`core.studies.full_path_outcomes.PackReader`); ``run_ids`` keeps only those runs; ``source`` names where
    the rows come from (column ``source``: ``store`` or ``pack``). ``cell_id`` and ``teacher_key`` (the teacher's
    cache key, step 0) say which study cell and which teacher each run is."""
    runs = [r for r in store.list_runs(kind="prune", status="done")
            if r.group_id and (study_ids is None or r.group_id in study_ids) and r.cell_id
            and (run_ids is None or r.id in run_ids)]
    rows = []
    for r in runs:
        s, c = PruneSummary.of(r.summary), r.config
        steps = store.steps(r.id)
        data = c.get("data", {})
        row = {"run_id": r.id, "study": r.group_id, "cell_id": r.cell_id, "source": source, "model": r.model,
               "dataset": r.dataset, "strategy": r.strategy, "seed": c.get("seed", 0),
               "train_cap": data.get("train_cap"), "val_cap": data.get("val_cap"), "test_cap": data.get("test_cap"),
               "max_length": data.get("max_length"),
               "teacher_key": steps["teacher_key"].iloc[0] if "teacher_key" in steps and len(steps) else None,
               "layers_removed": len(s.removed_order), "removed": json.dumps(s.removed_order),
               "teacher_accuracy": s.teacher_accuracy,
               "max_accuracy_over_depth": (s.max_accuracy_over_depth or {}).get("accuracy"),
               "before_kd": s.before_kd_accuracy, "after_kd": s.after_kd_accuracy,
               "ratio": s.ratio, "weak_teacher": s.weak_teacher, **_kd_interval(store, r.id)}
        for _, st in steps.iterrows():
            if int(st["step"]) > 0:
                row[f"acc_{int(st['n_layers'])}_layers"] = st["test_accuracy"]
        rows.append(row)
    return _ranked(pd.DataFrame(rows))


def _kd_interval(store: Any, run_id: str) -> dict[str, float | bool]:
    """The distilled model minus its teacher on the test rows, with its interval (paired where the run kept
    per-example outcomes; :func:`core.runs.report.run_intervals`); empty when the run has none."""
    try:
        c = run_intervals(store, run_id).kd_vs_teacher
    except (ValueError, KeyError, OSError):
        return {}
    if c is None:
        return {}
    return dict(zip(KD_VS_TEACHER, (c.interval.estimate, c.interval.low, c.interval.high, bool(c.paired))))


_FULL_KEY = ["model", "dataset", "seed", "train_cap", "layers_removed"]


def _ranked(frame: pd.DataFrame) -> pd.DataFrame:
    """Rank after KD within each (model, dataset, seed, budget, depth): 1 = best."""
    if frame.empty:
        return frame
    frame = frame.drop(columns=["rank_after_kd"], errors="ignore")
    frame["rank_after_kd"] = frame.groupby(_FULL_KEY, dropna=False)["after_kd"].rank(ascending=False, method="min")
    return frame.sort_values([*_FULL_KEY, "rank_after_kd"]).reset_index(drop=True)


def merge_full_path(shipped: pd.DataFrame | None, fresh: pd.DataFrame | None) -> pd.DataFrame | None:
    """The shipped full-path table grown by a store's finished study runs (a run in both: the store's row wins).

    A study's run store lives outside the repository and may be gone by the time the next dataset finishes (another
    session, another machine); the shipped table is what has been measured so far, so remaking the reference from
    a store that holds only the newest runs must keep the older rows, never drop them."""
    parts = [f for f in (shipped, fresh) if f is not None and not f.empty]
    if not parts:
        return None
    both = pd.concat(parts, ignore_index=True).drop_duplicates("run_id", keep="last")
    return _ranked(both)


#: identifiers that look like numbers to a CSV reader now and then (a hex digest of digits and one "e")
TEXT_IDS = ("run_id", "study", "cell_id", "teacher_key", "teacher_outcomes")


def load_full_path(folder: Path | None = None) -> pd.DataFrame | None:
    path = (folder or REFERENCE_DIR) / FULL_PATH_FILE
    return pd.read_csv(path, dtype={c: str for c in TEXT_IDS}) if path.is_file() else None


def seed_span(full: pd.DataFrame | None) -> tuple[int, int]:
    """The fewest and the most seeds any dataset of a full-path table was measured at ((0, 0) when empty)."""
    if full is None or full.empty:
        return 0, 0
    per = full.groupby("dataset")["seed"].nunique()
    return int(per.min()), int(per.max())


def seeds_text(low: int, high: int | None = None, per_dataset: bool = False) -> str:
    """"1 seed", "2 seeds", or "1-2 seeds per dataset" when datasets were measured at different seed counts
    (``per_dataset``: "per dataset" in every case)."""
    high = low if high is None else high
    text = f"{low} seed" + ("" if low == 1 else "s") if low == high else f"{low}-{high} seeds"
    return text + (" per dataset" if per_dataset or low != high else "")


def full_budget(full: pd.DataFrame | None) -> str:
    """The full-path budget in words, read from the table's own rows: training and validation rows, length,
    layers removed, seeds per dataset ("" for an empty table)."""
    if full is None or full.empty:
        return ""

    def values(col: str) -> str:
        return "/".join(f"{int(v):,}" for v in sorted(full[col].dropna().unique())) if col in full else "?"

    return (f"study runs: {values('train_cap')} training rows, {values('val_cap')} validation rows (the oracle), "
            f"length {values('max_length')}, {values('layers_removed')} layers removed (fine-tuned after each), "
            f"then KD; {seeds_text(*seed_span(full))}")


def train_caps(full: pd.DataFrame | None) -> list[int]:
    """The training-row budgets a full-path table holds, largest first (the study of issue 29 ran at 2,000 rows;
    older rows at 500 stay readable but apart)."""
    if full is None or full.empty or "train_cap" not in full.columns:
        return []
    return sorted({int(c) for c in pd.to_numeric(full["train_cap"], errors="coerce").dropna()}, reverse=True)


def default_cap(full: pd.DataFrame | None) -> int | None:
    """The budget shown first: the largest one with rows (the newest study's), None for an empty table."""
    caps = train_caps(full)
    return caps[0] if caps else None


def at_budget(full: pd.DataFrame | None, cap: int | None = None) -> pd.DataFrame | None:
    """The rows of one training-row budget (default :func:`default_cap`): never mix budgets in one number."""
    cap = default_cap(full) if cap is None else cap
    if full is None or full.empty or cap is None:
        return full
    return full[pd.to_numeric(full["train_cap"], errors="coerce") == cap].reset_index(drop=True)
