"""The Paper check's reference files (``data/reference/``, written by ``python -m core study paper``): read and
checked. :func:`load_reference` raises :class:`ReferenceFilesError` with what to do, never a traceback. Nothing
here computes a ranker or calls streamlit. Tables are :mod:`ui.paper_tables`, figures :mod:`ui.paper_plots`,
prose :mod:`ui.paper_prose`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from core.paths import shown_path
from core.studies import paper
from core.studies.full_path_agreement import AGREEMENT_FILE
from core.studies.full_path_tests import TESTS_FILE, TREES_FILE
from core.studies.paper import (
    CLAIMS_FILE,
    DATASET_TESTS_FILE,
    DIRECTIONS_FILE,
    FULL_PATH_FILE,
    ONE_STEP_FILE,
    OVERALL_FILE,
    seeds_text,
)

SUMMARY_FILE = "one_step_summary.csv"
MAKE = ("Make them with `python -m core study paper` (from the profile bank in `data/bank/`; the full-path table "
        "also needs the finished runs of the paper study in your run store), or restore the shipped files with "
        "`git checkout data/reference`.")
SUMMARY_COLUMNS = ("model", "dataset", "strategy", "regret", "regret_min", "regret_max", "top1", "spearman",
                   "seeds", "steps", "position")
ONE_STEP_COLUMNS = ("model", "dataset", "seed", "step", "n_layers", "strategy", "regret_points", "top1")
FULL_COLUMNS = ("model", "dataset", "strategy", "seed")
NUMERIC = ("regret", "regret_min", "regret_max", "top1", "spearman", "seeds", "steps", "position", "seed", "step",
           "n_layers", "regret_points", "after_kd", "teacher_accuracy", "ratio", "max_accuracy_over_depth",
           "best_accuracy", "regret_low", "regret_high", "vs_floor", "vs_floor_low", "vs_floor_high", "low", "high",
           "datasets", "train_cap", "estimate", "null_mean", "null_high", "permutation_p", "trees")
OVERALL_COLUMNS = ("model", "strategy", "regret", "low", "high", "datasets")
DIRECTION_COLUMNS = ("model", "strategy", "registry", "datasets", "learned_lowest", "regret", "regret_low",
                     "regret_high", "regret_lowest", "regret_lowest_low", "regret_lowest_high", "regret_highest",
                     "regret_highest_low", "regret_highest_high")
TEST_COLUMNS = ("model", "a", "b", "estimate", "low", "high", "sign_flip_p", "favour_a", "favour_b", "datasets",
                "seeds", "bootstrap", "verdict")
NOISE_FLOOR = "noise_floor"  # the noise floor's strategy key in the files (core.studies.paper.NOISE_FLOOR)
#: the full-path comparisons (core.studies.full_path_tests): over datasets, and per tree
FULL_TEST_COLUMNS = ("model", "train_cap", "stage", "a", "b", "estimate", "datasets", "trees", "verdict")
FULL_TREE_COLUMNS = ("model", "train_cap", "stage", "dataset", "seed", "a", "b", "estimate")
#: does the strategies' order repeat from tree to tree (core.studies.full_path_agreement)
AGREEMENT_COLUMNS = ("model", "train_cap", "stage", "level", "blocks", "strategies", "statistic", "estimate",
                     "null_high", "p", "permutations", "verdict")
FLOOR_LABEL = "Noise floor (oracle of the other half)"
FUSION = ("rf_fusion", "lr_fusion")
Label = Callable[[str], str]


def short(label: str) -> str:
    """A display label without its parenthesised detail, for axes and legends: "TREC questions (6 coarse types)" ->
    "TREC questions"."""
    return label.split(" (")[0]


class ReferenceFilesError(Exception):
    """The reference files are missing or damaged; the message says which and how to make them."""


@dataclass(frozen=True)
class Reference:
    folder: Path
    one_step: pd.DataFrame
    summary: pd.DataFrame
    full_path: pd.DataFrame | None
    claims: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)
    #: per strategy: mean regret over datasets with its bootstrap interval (``one_step_overall.csv``; None in
    #: reference files from before intervals)
    overall: pd.DataFrame | None = None
    #: per single signal: the registry's direction, what leave-one-dataset-out learning picked and both ends'
    #: regret (``directions.csv``; None in files from before issue 29)
    directions: pd.DataFrame | None = None
    #: the claims' comparisons over datasets: bootstrap, sign-flip test, power (``dataset_tests.csv``)
    dataset_tests: pd.DataFrame | None = None
    #: the full-path study's paired comparisons over datasets and per tree (``full_path_tests.csv``,
    #: ``full_path_trees.csv``; None in files from before them)
    full_path_tests: pd.DataFrame | None = None
    full_path_trees: pd.DataFrame | None = None
    #: Kendall's W over datasets and trees, Spearman between seeds (``full_path_agreement.csv``; None in files from
    #: before it)
    full_path_agreement: pd.DataFrame | None = None

    @property
    def shown_folder(self) -> str:
        """The folder as the page shows it (relative to the project, never a machine path)."""
        return shown_path(self.folder)

    @property
    def random_expected(self) -> bool:
        """Whether random is scored as its expectation over the candidates (files since issue 29), not one draw."""
        return "regret_sd" in self.one_step.columns

    @property
    def held_out(self) -> bool:
        """Whether the one-step regrets were scored on held-out halves with a noise floor (the bank carried
        per-example outcomes); False: picked and scored on the same rows (optimistic)."""
        t = self.one_step
        if "scoring" not in t.columns:
            return False
        rest = t[t["strategy"] != "oracle"]
        return bool(len(rest)) and bool((rest["scoring"] == "held-out halves").all())

    @property
    def scoring(self) -> str:
        """How the one-step regrets were scored, in words (from the files)."""
        return str(self.meta.get("scoring") or ("scored on held-out halves" if self.held_out else
                                                "picked and scored on the same rows (optimistic)"))

    @property
    def budget(self) -> str:
        """The one-step budget as the files record it ("budget not recorded" when they do not)."""
        text = self.meta.get("budget") or next((c.get("budget") for c in self.claims if c.get("budget")), "")
        return str(text) if text else "budget not recorded"

    def seeds(self, model: str) -> str:
        """The one-step table's seeds per dataset in words: "2 seeds", or "1-2 seeds per dataset" when mixed."""
        s = self.summary[(self.summary["model"] == model) & (self.summary["strategy"] != "oracle")]
        return seeds_text(int(s["seeds"].min()), int(s["seeds"].max())) if len(s) else seeds_text(0)


def reference_dir() -> Path:
    """``PRUNE_REFERENCE_DIR`` when set, else the shipped folder (``core.studies.paper.REFERENCE_DIR``)."""
    env = os.environ.get("PRUNE_REFERENCE_DIR")
    if env:
        return Path(env)

    return Path(paper.REFERENCE_DIR)


def _csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise ReferenceFilesError(f"`{shown_path(path)}` cannot be read as a table ({type(exc).__name__}). "
                                  f"{MAKE}") from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ReferenceFilesError(f"`{shown_path(path)}` lacks the column(s) {missing}: it is damaged or from another "
                                  f"version. {MAKE}")
    for c in NUMERIC:
        if c in frame.columns:
            if frame[c].dtype == bool:
                frame[c] = frame[c].astype(float)
            values = pd.to_numeric(frame[c], errors="coerce")
            if values.isna().sum() > frame[c].isna().sum():
                raise ReferenceFilesError(f"`{shown_path(path)}`: column {c!r} holds values that are not numbers. "
                                          f"{MAKE}")
            frame[c] = values
    if frame.empty:
        raise ReferenceFilesError(f"`{shown_path(path)}` has no rows. {MAKE}")
    return frame


def load_reference(folder: str | Path | None = None) -> Reference:
    """Read and check the reference files in ``folder`` (default :func:`reference_dir`)."""
    folder = Path(folder) if folder is not None else reference_dir()
    needed = [folder / ONE_STEP_FILE, folder / SUMMARY_FILE, folder / CLAIMS_FILE]
    missing = [p.name for p in needed if not p.is_file()]
    if missing:
        raise ReferenceFilesError(f"The reference results are not in `{shown_path(folder)}` (missing: "
                                  f"{', '.join(missing)}). {MAKE}")
    one_step = _csv(folder / ONE_STEP_FILE, ONE_STEP_COLUMNS)
    summary = _csv(folder / SUMMARY_FILE, SUMMARY_COLUMNS)
    full = _csv(folder / FULL_PATH_FILE, FULL_COLUMNS) if (folder / FULL_PATH_FILE).is_file() else None
    try:
        raw = json.loads((folder / CLAIMS_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ReferenceFilesError(f"`{shown_path(folder / CLAIMS_FILE)}` is not valid JSON ({exc}). {MAKE}") from exc
    claims = raw.get("claims") if isinstance(raw, dict) else None
    if not isinstance(claims, list) or not all(isinstance(c, dict) and "paper" in c and "ours" in c for c in claims):
        raise ReferenceFilesError(f"`{shown_path(folder / CLAIMS_FILE)}` has no list of claims with 'paper' and "
                                  f"'ours'. {MAKE}")
    meta = {k: v for k, v in raw.items() if k != "claims"}

    overall = _csv(folder / OVERALL_FILE, OVERALL_COLUMNS) if (folder / OVERALL_FILE).is_file() else None
    return Reference(folder, one_step, summary, full, claims, meta, overall,
                     _optional(folder / DIRECTIONS_FILE, DIRECTION_COLUMNS),
                     _optional(folder / DATASET_TESTS_FILE, TEST_COLUMNS),
                     _optional(folder / TESTS_FILE, FULL_TEST_COLUMNS),
                     _optional(folder / TREES_FILE, FULL_TREE_COLUMNS),
                     _optional(folder / AGREEMENT_FILE, AGREEMENT_COLUMNS))


def _optional(path: Path, required: tuple[str, ...]) -> pd.DataFrame | None:
    """A reference table that older files (or a bank with one dataset) do not have: None when absent or empty."""
    if not path.is_file() or not path.read_text().strip():
        return None
    return _csv(path, required)


def direction_lines(keys: list[str] | tuple[str, ...], folder: str | Path | None = None) -> dict[str, str]:
    """:func:`direction_line` of each key that has one (the Signals page's teaching panels, read once)."""
    lines = {k: direction_line(k, folder) for k in keys}
    return {k: v for k, v in lines.items() if v}


def direction_line(key: str, folder: str | Path | None = None) -> str | None:
    """For a signal's teaching panel: the direction the Paper check learned for ``key`` leave-one-dataset-out on the
    profile bank, with both ends' regret and their intervals; None without the reference files (or for a key that
    is not a learned signal)."""
    folder = Path(folder) if folder is not None else reference_dir()
    try:
        table = _optional(folder / DIRECTIONS_FILE, DIRECTION_COLUMNS)
    except ReferenceFilesError:
        return None
    if table is None or key not in set(table["strategy"]):
        return None
    r = table[table["strategy"] == key].iloc[0]
    n, low = int(r["datasets"]), int(r["learned_lowest"])
    picked = ("**lowest**" if low == n else "**highest**" if low == 0 else
              f"**lowest** on {low} and **highest** on {n - low}")
    seeds = f", {int(r['seeds'])} seeds" if "seeds" in r and pd.notna(r["seeds"]) else ""

    def ci(col: str) -> str:
        return f"{r[col]:.2f} [{r[col + '_low']:.2f}, {r[col + '_high']:.2f}]"
    agrees = "the same end as the registry" if (low == n) == (r["registry"] == "lowest") and low in (0, n) \
        else "not the registry's end"
    return (f"On the shipped profile bank, learned leave-one-dataset-out (each dataset's direction from the other "
            f"datasets, as fusion learns): prune the {picked} value first ({agrees}). Mean one-step regret, "
            f"accuracy points over {n} datasets{seeds} (95 % interval): lowest first {ci('regret_lowest')}, highest "
            f"first {ci('regret_highest')}. See the Paper check.")
