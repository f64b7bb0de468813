"""The paper check: arXiv 2501.03273's claims re-measured on this app's own profiles and runs.

* :func:`one_step_table`: at every profiled step of the bank (the oracle's own pruning path), each strategy's
  choice scored against the oracle of that step: top-1 hit, regret (accuracy points lost against the best
  removal), Spearman between the strategy's ranking and the oracle's. Fusion is strictly leave-one-dataset-out
  (the same :func:`core.fusion.rank_step` the runs use).

  **Held-out scoring** (when the bank carries per-example outcomes, :func:`core.fusion.bank.load_outcomes`):
  the step's validation examples are cut into two seeded halves A and B. Every choice is scored on B, against the
  best removal on B, and the **noise floor** row (strategy ``noise_floor``) is the oracle of the other half: the
  layer best on A, scored on B. Then the halves swap and the two are averaged. No strategy saw B (signals come
  from calibration rows, fusion from other datasets), and the noise floor is what an oracle that had not seen the
  scoring rows loses to noise alone: a strategy at the floor is as good as the measurement can tell. A strategy's
  regret minus the floor, per step, is its loss against the half-data oracle scored on rows that oracle did not
  use (``regret_vs_floor``). Without outcomes the old scoring is kept and labelled: picked and scored on the same
  rows (optimistic: the max of noisy values is inflated).

  **Fair baselines** (:mod:`core.studies.fair`): ``random`` is the exact expectation over each step's candidates,
  never one seeded draw; each single signal is scored with the direction learned on the rows fusion may train on
  (never the scored dataset), and every signal row also carries both fixed directions' regrets.
* :func:`summarise_one_step`: per dataset and strategy, mean over steps within a seed, then mean and spread
  (min-max) over seeds, with a 95 % bootstrap interval over the dataset's steps; ranks per dataset; the winner.
  :func:`regret_over_datasets`: each strategy's mean regret over datasets with a bootstrap interval over
  datasets and steps. Claims count a win only when a paired interval (:mod:`core.stats`) excludes 0.
* :func:`full_path_table`: every strategy's own finished run (removals with fine-tuning, then KD), from a store.
* :func:`claims` (:mod:`core.studies.claims`): the paper's statements next to ours, each with its numbers, budget
  and seed count; comparisons over datasets also carry an exact sign-flip test over dataset means and, within
  noise, a power statement (:mod:`core.studies.dataset_tests`).

``python -m core study paper`` writes the results to ``data/reference/`` (shipped, read by the Paper check page):
``one_step.csv``, ``one_step_summary.csv``, ``one_step_overall.csv``, ``directions.csv``, ``dataset_tests.csv``,
``claims.json`` and, where measured, ``full_path.csv``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from core.fusion import FusionConfig, rank_step
from core.paths import PROJECT_ROOT, atomic_write_text
from core.pruning.config import FUSION
from core.signals import SIGNAL_KEYS, STRATEGIES, rank_layers
from core.studies.claims import NO_FUSION as NO_FUSION  # re-exported: the paper check's callers read them here
from core.studies.claims import PAPER as PAPER
from core.studies.claims import Claim
from core.studies.claims import _kd_beats_teacher as _kd_beats_teacher
from core.studies.claims import claims as claims
from core.studies.config import StudyConfig
from core.studies.dataset_tests import dataset_comparisons
from core.studies.fair import (
    DirectionChoice,
    direction_scores,
    direction_table,
    expected_random,
    expected_random_held_out,
    learned_directions,
)
from core.studies.full_path import FULL_PATH_FILE, REFERENCE_DIR, seeds_text
from core.studies.full_path import KD_VS_TEACHER as KD_VS_TEACHER
from core.studies.full_path import full_budget as full_budget
from core.studies.full_path import full_path_table as full_path_table
from core.studies.full_path import load_full_path as load_full_path
from core.studies.full_path import merge_full_path as merge_full_path
from core.studies.full_path import seed_span as seed_span
from core.studies.regret import HELD_OUT, NOISE_FLOOR, SAME_ROWS, regret_over_datasets
from core.studies.regret import REFERENCE_ROWS as REFERENCE_ROWS
from core.studies.regret import SAME_ROWS_TEXT as SAME_ROWS_TEXT
from core.studies.regret import cluster_interval as cluster_interval
from core.studies.regret import held_out as held_out
from core.studies.regret import paired_regret as paired_regret
from core.studies.regret import scoring_text as scoring_text
from core.studies.regret import summarise_one_step as summarise_one_step

ONE_STEP_FILE = "one_step.csv"
CLAIMS_FILE = "claims.json"
OVERALL_FILE = "one_step_overall.csv"
#: each single signal's direction: what the registry fixed, what leave-one-dataset-out learning picked, both regrets
DIRECTIONS_FILE = "directions.csv"
#: the claims' comparisons over datasets: bootstrap, exact sign-flip test, power (core.studies.dataset_tests)
DATASET_TESTS_FILE = "dataset_tests.csv"
ORACLE = "oracle_accuracy"

#: bootstrap resamples of the paper check's intervals (steps are few: 4,000 as core.stats)
_RESAMPLES = 4000

#: one row of the one-step table as it is built (pandas makes the frame; nothing reads a row back as a dict)
Row = dict[str, object]


class StepKey(TypedDict):
    """What every row of one bank step starts with: which step it is and how it was scored."""

    model: str
    dataset: str
    seed: int
    step: int
    n_layers: int
    scoring: str


class Score(TypedDict):
    """A strategy's choice at one step against the oracle: the layer it removes, that layer's accuracy, the best
    layer and its accuracy, whether it picked the best (top-1), its regret in points and its Spearman correlation
    with the oracle's accuracies (NaN for a constant order)."""

    strategy: str
    chosen_layer: int
    chosen_accuracy: float
    best_accuracy: float
    best_layer: int
    top1: bool
    regret_points: float
    spearman: float


class HeldOut(TypedDict):
    """Regret (points) and top-1 rate of a choice scored on held-out halves, both ways averaged."""

    regret_points: float
    top1: float


class Floor(HeldOut):
    """The noise floor of one step: :class:`HeldOut` of the layer best on one half, and that layer."""

    chosen_layer: int


def _step_groups(bank: pd.DataFrame) -> Any:
    return bank.groupby(["model", "dataset", "seed", "run_id", "step"], sort=True)


def _strategy_scores(step: pd.DataFrame, strategy: str, seed: int, step_no: int) -> np.ndarray:
    """Higher = removed first, for a single-signal strategy or baseline (exactly the order the runs use)."""
    order = rank_layers(step, strategy, seed=seed + step_no)
    position = {layer: i for i, layer in enumerate(order)}
    return np.array([-position[int(l)] for l in step["original_layer"]], dtype=float)


def _score(step: pd.DataFrame, scores: np.ndarray, strategy: str) -> Score:
    acc = step[ORACLE].to_numpy(dtype=float)
    chosen = int(np.argmax(scores))
    best = acc.max()
    rho = spearmanr(scores, acc).statistic if np.ptp(scores) > 0 and np.ptp(acc) > 0 else np.nan
    return {"strategy": strategy, "chosen_layer": int(step["original_layer"].iloc[chosen]),
            "chosen_accuracy": float(acc[chosen]), "best_accuracy": float(best),
            "best_layer": int(step["original_layer"].iloc[int(np.argmax(acc))]),
            "top1": bool(acc[chosen] >= best - 1e-12), "regret_points": float(100.0 * (best - acc[chosen])),
            "spearman": float(rho)}


def split_halves(n: int, seed: int, dataset: str, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of ``n`` example positions, seeded by (seed, dataset, step): the same bank always
    splits the same way."""
    key = [int(seed), int(step), *(ord(c) for c in str(dataset))]
    order = np.random.default_rng(key).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2:])


def _step_outcomes(outcomes: pd.DataFrame | None, run_id: str, step_no: int,
                   layers: np.ndarray) -> np.ndarray | None:
    """The (layers x examples) correctness matrix of one bank step in ``layers`` order; None without outcomes for
    every layer of it."""
    if outcomes is None:
        return None
    part = outcomes[(outcomes["run_id"] == run_id) & (outcomes["step"] == step_no)]
    if part.empty:
        return None
    wide = part.pivot(index="original_layer", columns="example", values="correct")
    if wide.isna().any().any() or not set(int(x) for x in layers) <= set(int(x) for x in wide.index):
        return None
    return wide.loc[[int(x) for x in layers]].to_numpy(dtype=float)


def _held_out(correct: np.ndarray, halves: tuple[np.ndarray, np.ndarray], scores: np.ndarray) -> HeldOut:
    """Regret and top-1 of the choice ``argmax(scores)`` scored on each half against that half's best, both ways
    averaged (the choice never depends on the halves)."""
    chosen = int(np.argmax(scores))
    regret, top1 = [], []
    for score_on in halves:
        acc = correct[:, score_on].mean(axis=1)
        regret.append(100.0 * (acc.max() - acc[chosen]))
        top1.append(float(acc[chosen] >= acc.max() - 1e-12))
    return {"regret_points": float(np.mean(regret)), "top1": float(np.mean(top1))}


def _floor(correct: np.ndarray, halves: tuple[np.ndarray, np.ndarray], layers: np.ndarray) -> Floor:
    """The noise floor of one step: the layer best on one half, scored on the other against its best, both ways."""
    regret, top1, picks = [], [], []
    for pick_on, score_on in (halves, halves[::-1]):
        pick = int(np.argmax(correct[:, pick_on].mean(axis=1)))
        acc = correct[:, score_on].mean(axis=1)
        regret.append(100.0 * (acc.max() - acc[pick]))
        top1.append(float(acc[pick] >= acc.max() - 1e-12))
        picks.append(int(layers[pick]))
    return {"regret_points": float(np.mean(regret)), "top1": float(np.mean(top1)), "chosen_layer": picks[0]}


def _expected_random_row(base: StepKey, step: pd.DataFrame, correct: np.ndarray | None,
                         halves: tuple[np.ndarray, np.ndarray] | None) -> Row:
    """The random baseline's row of one step: its exact expectation over the candidates (:mod:`core.studies.fair`),
    never one seeded draw."""
    acc = step[ORACLE].to_numpy(dtype=float)
    expected = expected_random_held_out(correct, halves) if correct is not None and halves is not None \
        else expected_random(acc)
    return {**base, "strategy": "random", "chosen_layer": np.nan, "chosen_accuracy": float(acc.mean()),
            "best_accuracy": float(acc.max()), "best_layer": int(step["original_layer"].iloc[int(np.argmax(acc))]),
            "spearman": 0.0, **expected}


def _signal_row(base: StepKey, step: pd.DataFrame, choice: DirectionChoice, correct: np.ndarray | None,
                halves: tuple[np.ndarray, np.ndarray] | None) -> Row:
    """A single signal's row of one step, scored with the direction ``choice`` decided without this dataset, and
    the regret each fixed direction would have had (scored the same way)."""
    both: dict[str, float] = {}
    for direction in ("lowest", "highest"):
        scores = direction_scores(step, choice.key, direction)
        held = _held_out(correct, halves, scores) if correct is not None and halves is not None else None
        both[f"regret_{direction}"] = held["regret_points"] if held else _score(step, scores, "")["regret_points"]
    scores = direction_scores(step, choice.key, choice.direction)
    row: Row = {**base, **_score(step, scores, choice.key), "direction": choice.direction,
           "direction_rule": choice.rule, **both, "train_regret_lowest": choice.train_lowest,
           "train_regret_highest": choice.train_highest}
    if correct is not None and halves is not None:
        row.update(_held_out(correct, halves, scores))
    return row


def one_step_table(bank: pd.DataFrame, strategies: tuple[str, ...] | None = None,
                   fusion_profiles: pd.DataFrame | None = None, outcomes: pd.DataFrame | None = None,
                   split_seed: int = 0) -> pd.DataFrame:
    """One row per (model, dataset, seed, step, strategy). ``fusion_profiles`` (default: ``bank``) is what the
    fusion rankers may train on; leave-one-dataset-out removes the dataset being scored from it.

    With ``outcomes`` (the bank's per-example companion), every step that has them is scored on held-out halves
    (see the module doc) and gets a ``noise_floor`` row; column ``scoring`` says which way each row was scored.
    The ``oracle`` row always uses every validation row (it is the path's own choice, shown for reference).

    Fair baselines (:mod:`core.studies.fair`): ``random`` is its exact expectation over the step's candidates
    (``regret_sd``: the spread over them; no ``chosen_layer``; Spearman 0, the expectation for a random order). A
    single signal is scored with its direction learned on the rows fusion may train on for the dataset
    (``direction``, ``direction_rule``), and each row also carries the regret of both fixed directions
    (``regret_lowest``, ``regret_highest``), scored the same way."""
    strategies = strategies or (*STRATEGIES, *FUSION)
    fusion_profiles = bank if fusion_profiles is None else fusion_profiles
    signals = tuple(k for k in strategies if k in SIGNAL_KEYS)
    directions = learned_directions(bank, fusion_profiles, signals) if signals else {}
    rows: list[Row] = []
    for (model, dataset, seed, run_id, step_no), step in _step_groups(bank):
        step = step.sort_values("layer")
        layers = step["original_layer"].to_numpy()
        correct = _step_outcomes(outcomes, str(run_id), int(step_no), layers)
        halves = split_halves(correct.shape[1], int(seed) + split_seed, str(dataset), int(step_no)) \
            if correct is not None else None
        base = StepKey(model=model, dataset=dataset, seed=int(seed), step=int(step_no), n_layers=int(len(step)),
                       scoring=HELD_OUT if correct is not None else SAME_ROWS)
        for strategy in strategies:
            if strategy == "random":
                rows.append(_expected_random_row(base, step, correct, halves))
                continue
            if strategy in SIGNAL_KEYS:
                rows.append(_signal_row(base, step, directions[(str(model), str(dataset))][strategy], correct,
                                        halves))
                continue
            if strategy in FUSION:
                cfg = FusionConfig(kind="forest" if strategy == "rf_fusion" else "linear", random_state=int(seed),
                                   explain=False)
                choice = rank_step(fusion_profiles, step, cfg)
                if not choice.protocol.name.startswith("leave_one_dataset_out"):
                    continue  # strictly leave-one-dataset-out: no other dataset profiled, so fusion is not scored
                scores = np.asarray(choice.scores, dtype=float)
                extra: dict[str, object] = {"protocol": choice.protocol.name, "train_rows": choice.protocol.n_rows}
            else:
                scores = _strategy_scores(step, strategy, int(seed), int(step_no))
                extra = {}
            row: Row = {**base, **_score(step, scores, strategy), **extra}
            if correct is not None and halves is not None:  # the two are None together
                row.update(_held_out(correct, halves, scores))
            rows.append(row)
        acc = step[ORACLE].to_numpy(dtype=float)
        rows.append({**base, **_score(step, acc, "oracle"), "scoring": SAME_ROWS})
        if correct is not None and halves is not None:
            floor = _floor(correct, halves, layers)
            rows.append({**base, **_score(step, acc, NOISE_FLOOR), **floor, "spearman": np.nan,
                         "examples": int(correct.shape[1])})
    out = pd.DataFrame(rows)
    if len(out):
        out["top1"] = out["top1"].astype(float)  # a hit rate: 0, 1, or 0.5 when the two halves disagree
    return out


def bank_budget(bank: Any, summary: pd.DataFrame) -> str:
    """The one-step budget in words, read from the bank itself (its rows' data configs and the study file its
    manifest names), never assumed: models, training rows, length, epochs per step, seeds per dataset."""
    rows = bank.rows
    configs = [json.loads(c) for c in rows["data_config"].unique() if isinstance(c, str) and c.startswith("{")]
    caps = sorted({int(c["train_cap"]) for c in configs if "train_cap" in c})
    val_caps = sorted({int(c["val_cap"]) for c in configs if "val_cap" in c})
    lengths = sorted({int(c["max_length"]) for c in configs if "max_length" in c})
    epochs = "epochs per step not recorded"
    name = f"profile bank (format v{bank.version})"  # the study file's name when it can be read
    study = bank.manifest.get("study")
    if study and (PROJECT_ROOT / study).is_file():
        try:
            cfg = StudyConfig.load(PROJECT_ROOT / study)
            epochs = f"{cfg.step_epochs:g} fine-tuning epoch(s) per step"
            name = cfg.name
        except (ValueError, OSError):
            pass
    seeds = summary.loc[summary["strategy"] != "oracle", "seeds"]
    lo, hi = (int(seeds.min()), int(seeds.max())) if len(seeds) else (0, 0)
    precision = bank.manifest.get("precision", "fp32")  # banks from before the precision setting ran in fp32
    splits = bank.manifest.get("split_version", 1)
    provenance = f"{precision}" + ("; splits drawn before the leak fix (split version 1)" if splits < 2 else "")
    train, val = ("/".join(f"{c:,}" for c in x) for x in (caps, val_caps))
    return (f"{name}: {', '.join(sorted(rows['model'].unique()))} oracle-path profiles, {train or '?'} training rows"
            f"{f', at most {val} validation rows' if val else ''}, length {'/'.join(map(str, lengths)) or '?'}, "
            f"{epochs}; {seeds_text(lo, hi, per_dataset=True)}; {provenance}")


def write_reference(table: pd.DataFrame, summary: pd.DataFrame, full: pd.DataFrame | None, claim_rows: list[Claim],
                    folder: Path | None = None, meta: Mapping[str, object] | None = None) -> Path:
    folder = folder or REFERENCE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / ONE_STEP_FILE, table.to_csv(index=False))
    atomic_write_text(folder / "one_step_summary.csv", summary.to_csv(index=False))
    atomic_write_text(folder / OVERALL_FILE, regret_over_datasets(table).to_csv(index=False))
    atomic_write_text(folder / DIRECTIONS_FILE, direction_table(table).to_csv(index=False))
    atomic_write_text(folder / DATASET_TESTS_FILE, dataset_comparisons(table).to_csv(index=False))
    if full is not None and not full.empty:
        atomic_write_text(folder / FULL_PATH_FILE, full.to_csv(index=False))
    elif (folder / FULL_PATH_FILE).is_file():
        (folder / FULL_PATH_FILE).unlink()  # never leave a table the claims no longer describe
    atomic_write_text(folder / CLAIMS_FILE, json.dumps({"claims": claim_rows, **(meta or {})}, indent=1))
    return folder
