"""Does a finished pruning run agree with itself? Its summary against its step table, its step table against its
per-example outcome files and oracle tables, its choices against what was removed. The recorded pack is checked
this way before it is written (:func:`core.runs.pack_make.make_pack`) and by the tests after it is loaded: a
number on a page read from the summary must be the number its own files give.

Each check returns a list of problems (empty: consistent), one sentence per disagreement naming the run and file.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from core.runs import artifacts

TOL = 1e-6


def _accuracy(frame: pd.DataFrame) -> float:
    return float((frame["pred"] == frame["label"]).mean())


def _close(a: Any, b: Any) -> bool:
    return a is not None and b is not None and math.isclose(float(a), float(b), abs_tol=TOL)


def _table(folder: Path, rel: str) -> pd.DataFrame | None:
    path = folder / rel
    if not path.is_file():
        return None
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)


def _json(folder: Path, rel: str) -> Any:
    path = folder / rel
    return json.loads(path.read_text()) if path.is_file() else None


def _step_problems(run_id: str, folder: Path, row: Mapping[str, Any], removed_so_far: list[int]) -> Iterator[str]:
    k = int(row["step"])
    test = _table(folder, artifacts.step_outcomes(k, artifacts.TEST_OUTCOMES))
    if test is not None and not _close(_accuracy(test), row.get("test_accuracy")):
        yield (f"{run_id} step {k}: test accuracy {row.get('test_accuracy')} in the step table, "
               f"{_accuracy(test)} from {artifacts.step_outcomes(k, artifacts.TEST_OUTCOMES)}")
    if k == 0:
        return
    choice = _json(folder, artifacts.step_choice(k)) or {}
    if choice.get("layer") != row.get("removed"):
        yield (f"{run_id} step {k}: removed L{row.get('removed')}, but {artifacts.step_choice(k)} chose "
               f"{choice.get('layer')}")
    expected = [*removed_so_far, row.get("removed")]
    if list(row.get("removed_order") or []) != expected:
        yield f"{run_id} step {k}: removed_order {row.get('removed_order')} is not {expected}"
    oracle = _table(folder, artifacts.step_table(k, artifacts.ORACLE_TABLE))
    if oracle is None or oracle.empty:
        return
    by_layer = dict(zip(oracle["original_layer"].astype(int), oracle["accuracy"]))
    if "oracle_best_accuracy" in row and not _close(max(by_layer.values()), row["oracle_best_accuracy"]):
        yield f"{run_id} step {k}: oracle_best_accuracy {row['oracle_best_accuracy']} is not the oracle table's best"
    if "chosen_oracle_accuracy" in row and not _close(by_layer.get(int(row["removed"])), row["chosen_oracle_accuracy"]):
        yield f"{run_id} step {k}: chosen_oracle_accuracy disagrees with the oracle table's L{row['removed']}"
    per_candidate = _table(folder, artifacts.step_outcomes(k, artifacts.ORACLE_OUTCOMES))
    if per_candidate is not None:
        for layer, rows in per_candidate.groupby("original_layer"):
            if not _close(_accuracy(rows), by_layer.get(int(layer))):
                yield (f"{run_id} step {k}: the oracle's L{layer} has accuracy {by_layer.get(int(layer))} in its "
                       f"table, {_accuracy(rows)} from its per-example outcomes")


def check_run(run_id: str, steps: pd.DataFrame, folder: Path,
              stored_summary: Mapping[str, Any] | None = None) -> list[str]:
    """The disagreements of one finished pruning run: ``steps`` its step table, ``folder`` its artifact folder,
    ``stored_summary`` the summary its row in the ``runs`` table holds (compared with ``summary.json``)."""
    summary = _json(folder, artifacts.SUMMARY)
    if summary is None:
        return [f"{run_id}: no {artifacts.SUMMARY}"]
    if steps.empty:
        return [f"{run_id}: no step table"]
    problems: list[str] = []
    removed: list[int] = []
    for _, row in steps.sort_values("step").iterrows():
        problems += _step_problems(run_id, folder, row.to_dict(), removed)
        if int(row["step"]) > 0:
            removed.append(int(row["removed"]))
    first, last = steps.sort_values("step").iloc[0], steps.sort_values("step").iloc[-1]
    figures: list[tuple[str, Any, Any]] = [
        ("teacher test accuracy", (summary.get("teacher") or {}).get("test_accuracy"), first["test_accuracy"]),
        ("before-KD test accuracy", (summary.get("before_kd") or {}).get("test_accuracy"), last["test_accuracy"]),
        ("final layers", summary.get("final_layers"), last["n_layers"])]
    for name, said, found in figures:
        if said is not None and not _close(said, found):
            problems.append(f"{run_id}: the summary's {name} is {said}, the step table's {found}")
    if list(summary.get("removed_order") or []) != removed:
        problems.append(f"{run_id}: the summary's removed_order {summary.get('removed_order')} is not the steps' "
                        f"{removed}")
    kd = _table(folder, artifacts.step_outcomes(int(last["step"]), artifacts.KD_TEST_OUTCOMES))
    after = (summary.get("after_kd") or {}).get("test_accuracy")
    if kd is not None and not _close(after, _accuracy(kd)):
        problems.append(f"{run_id}: the summary's after-KD test accuracy is {after}, {_accuracy(kd)} from its "
                        "outcomes")
    if stored_summary is not None and _canonical(stored_summary) != _canonical(summary):
        problems.append(f"{run_id}: the summary in the runs table differs from {artifacts.SUMMARY}")
    return problems


@contextlib.contextmanager
def read_only(store_dir: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to a store's database (never creates, migrates or writes it)."""
    db = Path(store_dir) / "runs.sqlite"
    if not db.is_file():
        raise FileNotFoundError(f"no run store at {store_dir} (no runs.sqlite)")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30.0)
    con.row_factory = sqlite3.Row
    try:
        yield con
    finally:
        con.close()


def check_store_run(store_dir: Path, run_id: str) -> list[str]:
    """:func:`check_run` for a run of the store at ``store_dir``, read without writing to it."""
    with read_only(store_dir) as con:
        rows = con.execute("SELECT step, data FROM steps WHERE run_id=? ORDER BY step", (run_id,)).fetchall()
        stored = con.execute("SELECT summary FROM runs WHERE id=?", (run_id,)).fetchone()
    steps = pd.DataFrame([{"step": r["step"], **json.loads(r["data"])} for r in rows])
    summary = json.loads(stored["summary"]) if stored is not None and stored["summary"] else None
    return check_run(run_id, steps, Path(store_dir) / "runs" / run_id, summary)


def check_pack(steps_of: Callable[[str], pd.DataFrame], folder_of: Callable[[str], Path],
               runs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """:func:`check_run` for every run of a pack: ``runs`` maps run id -> its stored summary."""
    return [p for run_id, summary in sorted(runs.items()) for p in check_run(run_id, steps_of(run_id),
                                                                             folder_of(run_id), summary)]
