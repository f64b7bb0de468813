"""What the full-path study's paired comparisons need, kept in the repository: every run's per-example test outcomes
and which teacher it was pruned from.

A study's run store lives outside the repository and does not survive the session; only committed files do. So
``python -m core study paper`` also writes ``data/reference/full_path_outcomes.parquet`` (merged with the rows
already shipped, as ``full_path.csv`` is): one row per (run, stage, test example) with

- ``run_id``, ``model``, ``dataset``, ``seed``, ``strategy``, ``train_cap``: which run (the teacher's rows once per
  tree: ``strategy`` and ``stage`` ``teacher``, ``run_id`` ``teacher:<fingerprint>``);
- ``stage``: ``teacher`` (step 0), ``before_kd`` (after the last removal's fine-tuning) or ``after_kd`` (the
  distilled model): the run store's ``steps/<k>/outcomes/test.parquet`` and ``kd_test.parquet``
  (:mod:`core.runs.artifacts`);
- ``example`` (the test split's row index, the same rows for every run of a tree), ``label``, ``pred``, ``correct``;
- ``teacher``: the teacher's fingerprint (:func:`teacher_fingerprint`).

Two runs are paired only when they share the teacher: the same tree (model, dataset, seed, budget), the same
teacher cache key (step 0's ``teacher_key``) and the same fingerprint of the teacher's per-example test outcomes
(example, label, prediction, loss), hence the same test rows and the same teacher accuracy. ``full_path.csv`` says
so per run (column ``pairing``); a run whose teacher differs from the other runs of its tree is kept apart.

The recorded pack (``data/pack``) holds seed-0 runs of this study, recorded in a session whose store is gone:
:func:`pack_rows` finds them (a run counts when its config is the study's cell and its ``cell_id`` is that cell's
id) so their rows join the table; a run of the same cell in the store wins.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.paths import atomic_file
from core.runs import artifacts
from core.runs.events import StoredEvent
from core.studies.config import Cell
from core.studies.full_path import REFERENCE_DIR, full_path_table, load_full_path, merge_full_path

OUTCOMES_FILE = "full_path_outcomes.parquet"
STAGES = ("teacher", "before_kd", "after_kd")
COLUMNS = ("run_id", "model", "dataset", "seed", "strategy", "train_cap", "stage", "example", "label", "pred",
           "correct", "teacher")
#: the keys a study adds to a cell's pruning config (not part of what the cell is)
STUDY_KEYS = ("study_id", "cell_id", "profile_snapshot")
#: a tree of the full-path study: the runs that share a teacher and test rows when their teacher is the same
TREE = ["model", "dataset", "seed", "train_cap", "val_cap", "test_cap", "max_length", "layers_removed"]
PAIRED = "paired"
NO_OUTCOMES = "not paired: no per-example outcomes kept"


class PackReader:
    """The recorded pack (:class:`core.runs.pack.Pack`) read the way :func:`core.studies.full_path.full_path_table`
    and :func:`core.runs.report.run_intervals` read a run store: its runs, steps, events and artifacts."""

    def __init__(self, pack: Any) -> None:
        self.pack = pack

    def list_runs(self, **filters: Any) -> list[Any]:
        return list(self.pack.list_runs(**filters))

    def get_run(self, run_id: str, check: bool = True) -> Any:
        return self.pack.get_run(run_id)

    def steps(self, run_id: str) -> pd.DataFrame:
        return self.pack.steps(run_id)

    def events(self, run_id: str, after: int = -1) -> list[StoredEvent]:
        return list(self.pack.events(run_id, after))

    def read_json(self, run_id: str, relpath: str) -> Any | None:
        path = self.pack.run_dir(run_id) / relpath
        return json.loads(path.read_text()) if path.is_file() else None

    def read_table(self, run_id: str, relpath: str) -> pd.DataFrame | None:
        path = self.pack.run_dir(run_id) / relpath
        if not path.is_file():
            return None
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)

    def read_outcomes(self, run_id: str, step: int, evaluation: str) -> pd.DataFrame | None:
        return self.read_table(run_id, artifacts.step_outcomes(step, evaluation))


# ------------------------------------------------------------------------------------------ one run
def teacher_fingerprint(frame: pd.DataFrame | None) -> str | None:
    """A short digest of the teacher's per-example test outcomes (example ids, labels, predictions and losses to
    5 decimals): equal only for the same teacher on the same test rows; None without outcomes."""
    if frame is None or frame.empty or not {"example", "label", "pred"} <= set(frame.columns):
        return None
    f = frame.sort_values("example", kind="stable")
    digest = hashlib.sha256()
    for col in ("example", "label", "pred"):
        digest.update(f[col].to_numpy(dtype=np.int64).tobytes())
    if "loss" in f.columns:
        digest.update(np.round(f["loss"].to_numpy(dtype=np.float64), 5).tobytes())
    return digest.hexdigest()[:16]


def _rows(frame: pd.DataFrame, run: dict[str, Any], stage: str, teacher: str | None) -> pd.DataFrame:
    f = frame.sort_values("example", kind="stable")
    return pd.DataFrame({"run_id": run["run_id"], "model": run["model"], "dataset": run["dataset"],
                         "seed": int(run["seed"]), "strategy": run["strategy"], "train_cap": int(run["train_cap"]),
                         "stage": stage, "example": f["example"].to_numpy(dtype=np.int32),
                         "label": f["label"].to_numpy(dtype=np.int16), "pred": f["pred"].to_numpy(dtype=np.int16),
                         "correct": f["pred"].to_numpy() == f["label"].to_numpy(), "teacher": teacher})


def run_outcomes(store: Any, run: dict[str, Any]) -> tuple[str | None, list[pd.DataFrame]]:
    """One full-path run's teacher fingerprint and its outcome rows: the teacher (``teacher:<fingerprint>``), the
    model before KD (the last step's ``test``) and after KD (``kd_test``); empty without outcomes."""
    steps = store.steps(run["run_id"])
    if steps.empty:
        return None, []
    teacher = store.read_outcomes(run["run_id"], 0, artifacts.TEST_OUTCOMES)
    fp = teacher_fingerprint(teacher)
    if fp is None or teacher is None:
        return None, []
    last = int(steps["step"].max())
    out = [_rows(teacher, {**run, "run_id": f"teacher:{fp}", "strategy": "teacher"}, "teacher", fp)]
    for stage, evaluation in (("before_kd", artifacts.TEST_OUTCOMES), ("after_kd", artifacts.KD_TEST_OUTCOMES)):
        frame = store.read_outcomes(run["run_id"], last, evaluation) if last > 0 else None
        if frame is not None and len(frame):
            out.append(_rows(frame, run, stage, fp))
    return fp, out


def outcomes_of(store: Any, table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """The outcome rows of every run of a full-path ``table`` read from ``store``, and each run's teacher
    fingerprint (runs without outcomes are left out of both)."""
    frames: list[pd.DataFrame] = []
    fingerprints: dict[str, str] = {}
    for run in ([] if table is None or table.empty else table.to_dict("records")):
        fp, rows = run_outcomes(store, run)
        if fp is not None:
            fingerprints[str(run["run_id"])] = fp
            frames += rows
    return merge_outcomes(None, pd.concat(frames, ignore_index=True) if frames else None), fingerprints


def with_fingerprints(table: pd.DataFrame, fingerprints: dict[str, str]) -> pd.DataFrame:
    """``table`` with column ``teacher_outcomes`` (the teacher fingerprint) filled for the runs in
    ``fingerprints``, keeping what it already held for the others."""
    if table is None or table.empty:
        return table
    t = table.copy()
    old = t["teacher_outcomes"] if "teacher_outcomes" in t.columns else pd.Series(None, index=t.index, dtype=object)
    t["teacher_outcomes"] = [fingerprints.get(str(r), o) for r, o in zip(t["run_id"], old.astype(object))]
    return t


# ------------------------------------------------------------------------------------------ files
def merge_outcomes(shipped: pd.DataFrame | None, fresh: pd.DataFrame | None) -> pd.DataFrame:
    """The shipped outcome rows grown by fresh ones (a (run, stage, example) in both: the fresh row wins); like
    :func:`core.studies.full_path.merge_full_path`, never drops what was measured before."""
    parts = [f for f in (shipped, fresh) if f is not None and not f.empty]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    both = pd.concat(parts, ignore_index=True)
    both = both.drop_duplicates(["run_id", "stage", "example"], keep="last")
    both = both.astype({"seed": "int64", "train_cap": "int64", "example": "int32", "label": "int16",
                        "pred": "int16", "correct": bool})
    return both.sort_values(["model", "dataset", "seed", "train_cap", "run_id", "stage", "example"],
                            kind="stable").reset_index(drop=True)[list(COLUMNS)]


def load_outcomes(folder: Path) -> pd.DataFrame | None:
    path = Path(folder) / OUTCOMES_FILE
    return pd.read_parquet(path) if path.is_file() else None


def write_outcomes(folder: Path, outcomes: pd.DataFrame) -> Path:
    path = Path(folder) / OUTCOMES_FILE
    with atomic_file(path) as tmp:
        outcomes.to_parquet(tmp, index=False, compression="zstd")
    return path


# ------------------------------------------------------------------------------------------ pairing
def mark_pairing(table: pd.DataFrame | None) -> pd.DataFrame | None:
    """Column ``pairing`` per run: ``paired`` when every run of its tree with outcomes has the same teacher (cache
    key and outcome fingerprint); ``kept apart: ...`` for each run of a tree whose runs were pruned from
    different teachers (each is then compared only with runs of its own teacher); :data:`NO_OUTCOMES` for a run
    without per-example outcomes."""
    if table is None or table.empty:
        return table
    t = table.copy()
    for c in (*TREE, "teacher_key", "teacher_outcomes"):
        if c not in t.columns:
            t[c] = np.nan
    teacher = t["teacher_key"].astype(object).where(t["teacher_key"].notna(), "?").astype(str) + "/" + \
        t["teacher_outcomes"].astype(object).where(t["teacher_outcomes"].notna(), "").astype(str)
    pairing = []
    for i, r in t.iterrows():
        if pd.isna(r["teacher_outcomes"]):
            pairing.append(NO_OUTCOMES)
            continue
        same = (t[TREE].eq(r[TREE]) | (t[TREE].isna() & r[TREE].isna().to_numpy())).all(axis=1)
        others = set(teacher[same & t["teacher_outcomes"].notna()]) - {teacher[i]}
        pairing.append(PAIRED if not others else
                       f"kept apart: its teacher ({str(r['teacher_outcomes'])[:8]}) differs from another run's in "
                       f"this tree ({', '.join(sorted(o.split('/')[1][:8] for o in others))}); compared only with "
                       "runs of the same teacher")
    t["pairing"] = pairing
    return t


def add_missing(table: pd.DataFrame | None, extra: pd.DataFrame | None) -> pd.DataFrame | None:
    """``table`` with the rows of ``extra`` whose run is not in it, by run id or by study cell (a cell the table
    already holds a run of keeps that run)."""
    if extra is None or extra.empty:
        return table
    if table is None or table.empty:
        return extra.reset_index(drop=True)
    cells = set(table["cell_id"].dropna()) if "cell_id" in table.columns else set()
    new = extra[~extra["run_id"].isin(set(table["run_id"])) & ~extra["cell_id"].isin(cells)]
    return pd.concat([table, new], ignore_index=True) if len(new) else table


# ------------------------------------------------------------------------------------------ the recorded pack
def study_runs(pack: Any, study: Any) -> list[str]:
    """The pack's finished runs that are cells of ``study`` (a :class:`core.studies.config.StudyConfig`): the
    run's config, less the study's own keys, is the study's config for its (model, dataset, strategy, seed), and
    its ``cell_id`` is that cell's id (computed with the precision the run recorded and its profile snapshot)."""
    found = []
    for run in pack.list_runs(kind="prune", status="done"):
        c = dict(run.config or {})
        seed = int(c.get("seed", -1))
        if (run.model not in study.models or run.dataset not in study.datasets or run.strategy not in study.strategies
                or seed not in study.seeds or not run.cell_id):
            continue
        cfg = study.prune_config(run.model, run.dataset, run.strategy, seed)
        if {k: v for k, v in c.items() if k not in STUDY_KEYS} != cfg.to_dict():
            continue
        precision = str((run.summary or {}).get("precision") or cfg.precision)
        try:
            cell = Cell.of(dataclasses.replace(cfg, precision=precision), str(c.get("profile_snapshot") or ""))
        except ValueError:
            continue
        if cell.cell_id == run.cell_id:
            found.append(run.id)
    return found


def pack_rows(pack: Any, study: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The full-path rows (``source`` = ``pack``, with their teacher fingerprints) and outcome rows of the pack's
    runs of ``study`` (:func:`study_runs`)."""
    reader = PackReader(pack)
    ids = study_runs(pack, study)
    if not ids:
        return pd.DataFrame(), merge_outcomes(None, None)
    table = full_path_table(reader, run_ids=ids, source="pack")
    outcomes, fingerprints = outcomes_of(reader, table)
    return with_fingerprints(table, fingerprints), outcomes


def keep_referenced(outcomes: pd.DataFrame, table: pd.DataFrame | None) -> pd.DataFrame:
    """The outcome rows of the runs ``table`` holds (and their teachers'): nothing orphaned is shipped."""
    if table is None or table.empty or outcomes.empty:
        return outcomes.iloc[0:0]
    runs = set(table["run_id"].astype(str))
    teachers = {f"teacher:{fp}" for fp in table.get("teacher_outcomes", pd.Series(dtype=object)).dropna()}
    return outcomes[outcomes["run_id"].isin(runs | teachers)].reset_index(drop=True)


def collect(store: Any, shipped: Path | None, *, pack: Any = None, study: Any = None,
            fresh_only: bool = False) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """The full-path table and its outcome rows as ``python -m core study paper`` writes them: the shipped files in
    ``shipped`` (unless ``fresh_only``) grown by ``store``'s finished study runs (a run in both: the store's), then by
    the runs of ``study`` in the recorded ``pack`` that neither holds (:func:`pack_rows`), each run's teacher
    fingerprint and its ``pairing``; only outcome rows of runs the table holds are kept."""
    fresh = full_path_table(store) if store is not None else None
    fresh_out, fingerprints = outcomes_of(store, fresh) if fresh is not None else (None, {})
    full = fresh if fresh_only else merge_full_path(load_full_path(shipped), fresh)
    outcomes = merge_outcomes(None if fresh_only else load_outcomes(shipped or REFERENCE_DIR), None)
    if pack is not None and study is not None:
        extra, extra_out = pack_rows(pack, study)
        full = add_missing(full, extra)
        outcomes = merge_outcomes(outcomes, extra_out)
    outcomes = merge_outcomes(outcomes, fresh_out)
    full = merge_full_path(with_fingerprints(full, fingerprints), None) if full is not None else None
    return mark_pairing(full), keep_referenced(outcomes, full)
