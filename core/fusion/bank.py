"""The profile bank: layer profiles shipped with the app, so fusion has learned before a user's first run.

One row per (model, dataset, seed, step, remaining layer): the twelve raw signals and the ShortGPT baseline,
the oracle (validation accuracy and loss with that layer removed), the layer's original index, the layers
removed so far, and provenance (data config, teacher fingerprint, code version, the run it came from). The rows
live in ``data/bank/profiles.parquet`` with ``data/bank/manifest.json`` (format, version, row count, columns,
SHA-256); :func:`load_bank` checks all of it and raises :class:`BankError` with what to do, never a crash or a
pickle. :mod:`core.fusion.bank_build` makes the files from a run store (``python -m core study bank``).

The bank carries what its intervals need: ``data/bank/outcomes.parquet`` (when the runs it grew from stored their
oracle's per-example outcomes, ``steps/<k>/outcomes/oracle_val.parquet``) holds one row per (run, step, removed
layer, validation example): ``correct`` (int8), ``loss`` and ``kl_to_teacher`` (float32). The manifest's
``outcomes`` entry (file, rows, layer-steps, SHA-256) covers it; :func:`load_outcomes` checks it. The paper check
scores each strategy on validation examples the oracle did not use to pick its best (:mod:`core.studies.paper`).
**Two KLs, named by their reference model**: ``oracle_kl_to_current`` (profiles) is KL(the step's current model ||
the model without this layer), ``kl_to_teacher`` (outcomes) KL(the original teacher || it); equal at step 1 only.
Banks from before the rename call the first ``oracle_kl``: read under today's name (files and checksum untouched).

:func:`training_profiles` is what fusion trains on: the bank (``source = "bank v<N>"``) plus the user's own
stored profiles (``source = "store"``), each row flagged ``weak_teacher`` when its run pruned a teacher that failed
the guard (pruned anyway). Leave-one-dataset-out and the exclusion of flagged rows are applied later, per step
(:func:`core.fusion.choose_training_rows`, whose protocol text says how many rows it left out and why).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from core.fusion.bank_manifest import BankManifest, OutcomesEntry
from core.fusion.features import ORACLE_KL, rename_legacy
from core.paths import PROJECT_ROOT
from core.signals import DEFAULT_COLUMNS, get_info

FORMAT = "layer-prune-explorer/profile-bank"
VERSION = 1
BANK_DIR = PROJECT_ROOT / "data" / "bank"
PROFILES_FILE = "profiles.parquet"
MANIFEST_FILE = "manifest.json"
OUTCOMES_FILE = "outcomes.parquet"
#: the companion's columns: one row per (run, step, removed layer, validation example)
OUTCOME_KEYS = ("run_id", "step", "original_layer", "example")
OUTCOME_COLUMNS: tuple[str, ...] = (*OUTCOME_KEYS, "correct", "loss", "kl_to_teacher")
#: the flag :func:`training_profiles` puts on each row (True: its run's teacher failed the guard)
WEAK_TEACHER = "weak_teacher"

SIGNAL_COLUMNS: tuple[str, ...] = tuple(DEFAULT_COLUMNS)
ORACLE_COLUMNS = ("oracle_accuracy", "oracle_loss")
#: kept when the runs measured them (banks grown before the oracle measured KL do not have it; NaN on such rows)
OPTIONAL_COLUMNS = (ORACLE_KL,)
KEY_COLUMNS = ("model", "dataset", "seed", "run_id", "step", "original_layer")
INT_COLUMNS = ("seed", "step", "layer", "original_layer", "n_layers", "n_original")
TEXT_COLUMNS = ("model", "dataset", "run_id", "removed_so_far", "data_config", "teacher_fingerprint", "code_version")
COLUMNS: tuple[str, ...] = (*KEY_COLUMNS[:4], "step", "layer", "original_layer", "n_layers", "n_original",
                            "removed_so_far", *SIGNAL_COLUMNS, *ORACLE_COLUMNS, "data_config", "teacher_fingerprint",
                            "code_version")
_REBUILD = ("Restore the shipped files with `git checkout data/bank`, or rebuild them from a run store with "
            "`python -m core study bank --store DIR`.")


class BankError(ValueError):
    """The bank's files are missing, damaged or edited by hand."""


@dataclass(frozen=True)
class Bank:
    rows: pd.DataFrame
    manifest: BankManifest

    @property
    def version(self) -> int:
        return int(self.manifest["version"])

    @property
    def source(self) -> str:
        return f"bank v{self.version}"

    @property
    def outcomes(self) -> OutcomesEntry | None:
        """The manifest's entry for the per-example outcomes companion (None: this bank has none)."""
        return entry if isinstance(entry := self.manifest.get("outcomes"), dict) and entry.get("rows") else None

    def coverage(self) -> pd.DataFrame:
        """Per model and dataset: seeds, steps, rows."""
        g = self.rows.groupby(["model", "dataset"])
        return pd.DataFrame({"seeds": g["seed"].nunique(), "steps": g.apply(lambda f: f[["seed", "step"]]
                                                                             .drop_duplicates().shape[0]),
                             "rows": g.size()}).reset_index()


def bank_dir() -> Path:
    """The bank folder: ``PRUNE_BANK_DIR`` when set, else the shipped ``data/bank``."""
    return Path(os.environ.get("PRUNE_BANK_DIR") or BANK_DIR)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, as the manifest records it."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fail(what: str) -> BankError:
    return BankError(f"The profile bank is unusable: {what}. {_REBUILD}")


def validate_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Check the bank's columns, kinds and ranges; returns the rows in today's names with oriented scores added."""
    rows = rename_legacy(rows)
    missing = [c for c in COLUMNS if c not in rows.columns]
    if missing:
        raise _fail(f"columns {missing} are missing")
    _check_kinds(rows)
    values = rows[list(SIGNAL_COLUMNS) + list(ORACLE_COLUMNS)].to_numpy(dtype=float)
    if not np.isfinite(values).all():
        raise _fail("some signal or oracle values are missing or infinite")
    if not rows["oracle_accuracy"].between(0.0, 1.0).all():
        raise _fail("an oracle accuracy lies outside [0, 1]")
    if rows.duplicated(list(KEY_COLUMNS)).any():
        raise _fail("a (model, dataset, seed, run, step, layer) row appears twice")
    if (rows["n_layers"] != rows["n_original"] - rows["step"] + 1).any():
        raise _fail("n_layers does not equal n_original - step + 1 on some rows")
    out = rows.copy()
    for key in SIGNAL_COLUMNS:
        info = get_info(key)
        out[info.score_column] = (1.0 if info.direction == "lowest" else -1.0) * out[key]
    return out


def _check_kinds(rows: pd.DataFrame) -> None:
    """Each column of the bank holds its kind: integers, numbers, text; an optional column non-negative numbers."""
    for c in INT_COLUMNS:
        if not pd.api.types.is_integer_dtype(rows[c]):
            raise _fail(f"column {c!r} must hold integers, it holds {rows[c].dtype}")
    for c in (*SIGNAL_COLUMNS, *ORACLE_COLUMNS):
        if not pd.api.types.is_float_dtype(rows[c]):
            raise _fail(f"column {c!r} must hold numbers, it holds {rows[c].dtype}")
    for c in TEXT_COLUMNS:
        if not all(isinstance(v, str) for v in rows[c]):
            raise _fail(f"column {c!r} must hold text")
    for c in (c for c in OPTIONAL_COLUMNS if c in rows.columns):
        if not pd.api.types.is_float_dtype(rows[c]) or (rows[c].dropna() < 0).any():
            raise _fail(f"column {c!r} must hold non-negative numbers (or be empty on older paths)")


def load_bank(folder: str | Path | None = None) -> Bank:
    """The shipped bank, checked against its manifest. Raises :class:`BankError` (never anything else)."""
    folder = Path(folder) if folder is not None else bank_dir()
    mpath, ppath = folder / MANIFEST_FILE, folder / PROFILES_FILE
    if not mpath.exists() or not ppath.exists():
        raise _fail(f"{mpath if not mpath.exists() else ppath} does not exist")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(f"{mpath.name} is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise _fail(f"{mpath.name} is not a profile-bank manifest (format {found!r})")
    if manifest.get("version") != VERSION:
        raise _fail(f"its version is {manifest.get('version')!r}, this code reads version {VERSION}")
    if manifest.get("sha256") != file_sha256(ppath):
        raise _fail(f"{ppath.name} does not match the checksum in {mpath.name} (damaged or edited by hand)")
    try:
        rows = pd.read_parquet(ppath)
    except Exception as exc:  # pyarrow raises several kinds for a broken file
        raise _fail(f"{ppath.name} cannot be read as Parquet ({type(exc).__name__})") from exc
    if len(rows) != manifest.get("rows"):
        raise _fail(f"{ppath.name} has {len(rows)} rows, the manifest says {manifest.get('rows')}")
    return Bank(validate_rows(rows), cast(BankManifest, manifest))  # format, version, sha256 and rows checked above


def bank_or_none(folder: str | Path | None = None) -> tuple[Bank | None, str | None]:
    """The bank, or ``None`` and the reason (the app keeps working without it: fusion falls back)."""
    try:
        return load_bank(folder), None
    except BankError as exc:
        return None, str(exc)


# ------------------------------------------------------------------------------------------- per-example outcomes
def _outcomes_fail(what: str) -> BankError:
    return BankError(f"The bank's per-example outcomes are unusable: {what}. {_REBUILD}")


def validate_outcomes(outcomes: pd.DataFrame, rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """Check the companion's columns and values; with ``rows`` (the bank's profiles), also that every block
    belongs to a bank layer-step, that each (run, step) scored its layers on the same examples, and that each
    block's mean ``correct`` is the profile's ``oracle_accuracy`` (the same logits made both). Returns the
    outcomes in the stored dtypes, sorted by key."""
    missing = [c for c in OUTCOME_COLUMNS if c not in outcomes.columns]
    if missing:
        raise _outcomes_fail(f"columns {missing} are missing")
    out = outcomes[list(OUTCOME_COLUMNS)].copy()
    if not out["correct"].isin((0, 1)).all():
        raise _outcomes_fail("column 'correct' must hold 0 or 1")
    if not np.isfinite(out["loss"].to_numpy(dtype=float)).all():
        raise _outcomes_fail("some losses are missing or infinite")
    out = out.astype({"run_id": str, "step": "int16", "original_layer": "int16", "example": "int32",
                      "correct": "int8", "loss": "float32", "kl_to_teacher": "float32"})
    out = out.sort_values(list(OUTCOME_KEYS), kind="stable").reset_index(drop=True)
    if out.duplicated(list(OUTCOME_KEYS)).any():
        raise _outcomes_fail("a (run, step, layer, example) row appears twice")
    if rows is not None and len(out):
        blocks = out.groupby(["run_id", "step", "original_layer"], sort=False)
        acc = blocks["correct"].mean().rename("outcome_accuracy").reset_index()
        keyed = rows[["run_id", "step", "original_layer", "oracle_accuracy"]].astype(
            {"step": "int16", "original_layer": "int16"})
        both = acc.merge(keyed, on=["run_id", "step", "original_layer"], how="left")
        if both["oracle_accuracy"].isna().any():
            extra = both[both["oracle_accuracy"].isna()].iloc[0]
            raise _outcomes_fail(f"outcomes of run {extra['run_id']} step {extra['step']} layer "
                                 f"{extra['original_layer']} have no profile row in the bank")
        if not np.allclose(both["outcome_accuracy"], both["oracle_accuracy"], atol=1e-6):
            raise _outcomes_fail("a block's accuracy differs from its profile's oracle_accuracy")
        sizes = blocks.size().groupby(level=[0, 1]).nunique()
        if (sizes > 1).any():
            raise _outcomes_fail("the layers of one step were scored on different numbers of examples")
    return out


def load_outcomes(folder: str | Path | None = None, bank: Bank | None = None) -> pd.DataFrame | None:
    """The bank's per-example outcomes, checked against its manifest; None when the bank has none (a bank
    grown from runs that predate per-example outcomes). Raises :class:`BankError` when the manifest names a
    companion that is missing, damaged or edited."""
    folder = Path(folder) if folder is not None else bank_dir()
    bank = bank if bank is not None else load_bank(folder)
    entry = bank.outcomes
    if entry is None:
        return None
    path = folder / str(entry.get("file", OUTCOMES_FILE))
    if not path.is_file():
        raise _outcomes_fail(f"{path} does not exist, the manifest names it")
    if entry.get("sha256") != file_sha256(path):
        raise _outcomes_fail(f"{path.name} does not match the checksum in {MANIFEST_FILE}")
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several kinds for a broken file
        raise _outcomes_fail(f"{path.name} cannot be read as Parquet ({type(exc).__name__})") from exc
    if len(frame) != entry.get("rows"):
        raise _outcomes_fail(f"{path.name} has {len(frame)} rows, the manifest says {entry.get('rows')}")
    return validate_outcomes(frame)


# ------------------------------------------------------------------------------------------- training rows
def weak_teacher_runs(store: Any) -> set[str]:
    """The ids of the store's pruning runs whose teacher failed the guard and were pruned anyway."""
    return {r.id for r in store.list_runs(kind="prune") if r.weak_teacher}


def training_profiles(store: Any = None, *, bank_folder: str | Path | None = None) -> pd.DataFrame:
    """Fusion's training rows: the shipped bank plus the store's own profiles, each labelled in ``source`` and
    flagged in ``weak_teacher`` (True for a run whose teacher failed the guard and was pruned anyway: such rows
    must not train a ranker, :func:`core.fusion.choose_training_rows` leaves them out and says so).
    Store rows that came from the same runs as bank rows (a bank built from this store) are not counted twice."""
    parts = []
    bank, _ = bank_or_none(bank_folder)
    if bank is not None:
        flags = bank.rows[WEAK_TEACHER].eq(True) if WEAK_TEACHER in bank.rows else False
        parts.append(bank.rows.assign(source=bank.source, **{WEAK_TEACHER: flags}))
    if store is not None:
        own = store.profiles()
        if not own.empty:
            if bank is not None:
                own = own[~own["run_id"].isin(set(bank.rows["run_id"]))]
            weak = weak_teacher_runs(store)
            parts.append(own.assign(source="store", **{WEAK_TEACHER: own["run_id"].isin(weak)}))
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True, sort=False)
