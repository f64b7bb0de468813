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
* :func:`summarise_one_step`: per dataset and strategy, mean over steps within a seed, then mean and spread
  (min-max) over seeds, with a 95 % bootstrap interval over the dataset's steps; ranks per dataset; the winner.
  :func:`regret_over_datasets`: each strategy's mean regret over datasets with a bootstrap interval over
  datasets and steps. Claims count a win only when a paired interval (:mod:`core.stats`) excludes 0.
* :func:`full_path_table`: every strategy's own finished run (removals with fine-tuning, then KD), from a store.
* :func:`claims`: the paper's statements next to ours, each with its numbers, budget and seed count.

``python -m core study paper`` writes the results to ``data/reference/`` (shipped, read by the Paper check page).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from core.paths import PROJECT_ROOT, atomic_write_text
from core.pruning.config import FUSION
from core.signals import STRATEGIES, get_info, rank_layers
from core.stats import Interval, beyond_noise, win_count
from core.studies.full_path import FULL_PATH_FILE, KD_VS_TEACHER, REFERENCE_DIR, seed_span, seeds_text
from core.studies.full_path import full_budget as full_budget  # re-exported: the paper check's callers
from core.studies.full_path import full_path_table as full_path_table
from core.studies.full_path import load_full_path as load_full_path
from core.studies.full_path import merge_full_path as merge_full_path
from core.studies.regret import (  # re-exported: the paper check's callers read them here
    HELD_OUT,
    NOISE_FLOOR,
    REFERENCE_ROWS,
    SAME_ROWS,
    SAME_ROWS_TEXT,
    held_out,
    paired_regret,
    regret_over_datasets,
)
from core.studies.regret import cluster_interval as cluster_interval
from core.studies.regret import scoring_text as scoring_text
from core.studies.regret import summarise_one_step as summarise_one_step

ONE_STEP_FILE = "one_step.csv"
CLAIMS_FILE = "claims.json"
OVERALL_FILE = "one_step_overall.csv"
ORACLE = "oracle_accuracy"

#: the paper's statements (published summaries of arXiv 2501.03273; no code or per-dataset numbers are public)
PAPER = {
    "rf_first": "RF fusion ranks first on 7 of 9 datasets (second on AG News, third on Amazon).",
    "rf_beats_lr": "RF fusion beats LR fusion on most datasets (non-linear interactions between signals).",
    "kd_beats_teacher": "After distillation the RF-pruned model surpasses the original accuracy on 6 of 9 datasets "
                        "and mitigates the drop on the other 3.",
    "no_universal_signal": "No universal single signal: the best single-signal strategy differs across datasets.",
    "boundary_layers": "Successful strategies keep the boundary layers (first and last) and prune middle layers first.",
    "ratio": "The accuracy-to-size ratio improves 18.84x on average (its formula is not published).",
}


#: bootstrap resamples of the paper check's intervals (steps are few: 4,000 as core.stats)
_RESAMPLES = 4000


#: what a claim about fusion says when the bank cannot score fusion fairly
NO_FUSION = ("not measured: fusion is scored leave-one-dataset-out, which needs profiles of at least two "
             "datasets in the bank")


def _step_groups(bank: pd.DataFrame) -> Any:
    return bank.groupby(["model", "dataset", "seed", "run_id", "step"], sort=True)


def _strategy_scores(step: pd.DataFrame, strategy: str, seed: int, step_no: int) -> np.ndarray:
    """Higher = removed first, for a single-signal strategy or baseline (exactly the order the runs use)."""
    order = rank_layers(step, strategy, seed=seed + step_no)
    position = {layer: i for i, layer in enumerate(order)}
    return np.array([-position[int(l)] for l in step["original_layer"]], dtype=float)


def _score(step: pd.DataFrame, scores: np.ndarray, strategy: str) -> dict[str, Any]:
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


def _held_out(correct: np.ndarray, halves: tuple[np.ndarray, np.ndarray], scores: np.ndarray) -> dict[str, float]:
    """Regret and top-1 of the choice ``argmax(scores)`` scored on each half against that half's best, both ways
    averaged (the choice never depends on the halves)."""
    chosen = int(np.argmax(scores))
    regret, top1 = [], []
    for score_on in halves:
        acc = correct[:, score_on].mean(axis=1)
        regret.append(100.0 * (acc.max() - acc[chosen]))
        top1.append(float(acc[chosen] >= acc.max() - 1e-12))
    return {"regret_points": float(np.mean(regret)), "top1": float(np.mean(top1))}


def _floor(correct: np.ndarray, halves: tuple[np.ndarray, np.ndarray], layers: np.ndarray) -> dict[str, Any]:
    """The noise floor of one step: the layer best on one half, scored on the other against its best, both ways."""
    regret, top1, picks = [], [], []
    for pick_on, score_on in (halves, halves[::-1]):
        pick = int(np.argmax(correct[:, pick_on].mean(axis=1)))
        acc = correct[:, score_on].mean(axis=1)
        regret.append(100.0 * (acc.max() - acc[pick]))
        top1.append(float(acc[pick] >= acc.max() - 1e-12))
        picks.append(int(layers[pick]))
    return {"regret_points": float(np.mean(regret)), "top1": float(np.mean(top1)), "chosen_layer": picks[0]}


def one_step_table(bank: pd.DataFrame, strategies: tuple[str, ...] | None = None,
                   fusion_profiles: pd.DataFrame | None = None, outcomes: pd.DataFrame | None = None,
                   split_seed: int = 0) -> pd.DataFrame:
    """One row per (model, dataset, seed, step, strategy). ``fusion_profiles`` (default: ``bank``) is what the
    fusion rankers may train on; leave-one-dataset-out removes the dataset being scored from it.

    With ``outcomes`` (the bank's per-example companion), every step that has them is scored on held-out halves
    (see the module doc) and gets a ``noise_floor`` row; column ``scoring`` says which way each row was scored.
    The ``oracle`` row always uses every validation row (it is the path's own choice, shown for reference)."""
    from core.fusion import FusionConfig, rank_step

    strategies = strategies or (*STRATEGIES, *FUSION)
    fusion_profiles = bank if fusion_profiles is None else fusion_profiles
    rows = []
    for (model, dataset, seed, run_id, step_no), step in _step_groups(bank):
        step = step.sort_values("layer")
        base = {"model": model, "dataset": dataset, "seed": int(seed), "step": int(step_no),
                "n_layers": int(len(step))}
        layers = step["original_layer"].to_numpy()
        correct = _step_outcomes(outcomes, str(run_id), int(step_no), layers)
        halves = split_halves(correct.shape[1], int(seed) + split_seed, str(dataset), int(step_no)) \
            if correct is not None else None
        base["scoring"] = HELD_OUT if correct is not None else SAME_ROWS
        for strategy in strategies:
            if strategy in FUSION:
                cfg = FusionConfig(kind="forest" if strategy == "rf_fusion" else "linear", random_state=int(seed),
                                   explain=False)
                choice = rank_step(fusion_profiles, step, cfg)
                if not choice.protocol.name.startswith("leave_one_dataset_out"):
                    continue  # strictly leave-one-dataset-out: no other dataset profiled, so fusion is not scored
                scores = np.asarray(choice.scores, dtype=float)
                extra = {"protocol": choice.protocol.name, "train_rows": choice.protocol.n_rows}
            else:
                scores = _strategy_scores(step, strategy, int(seed), int(step_no))
                extra = {}
            row = {**base, **_score(step, scores, strategy), **extra}
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


def _boundary(table: pd.DataFrame, winners: pd.DataFrame) -> dict[str, Any]:
    """How often the winning strategy (per dataset) removed the first or the last layer, over its steps."""
    hits = table.merge(winners[["model", "dataset", "strategy"]], on=["model", "dataset", "strategy"])
    first_last = hits.apply(lambda r: r["chosen_layer"] in (0, r["n_layers"] + r["step"] - 2), axis=1)
    oracle = table[table["strategy"] == "oracle"]
    oracle_fl = oracle.apply(lambda r: r["chosen_layer"] in (0, r["n_layers"] + r["step"] - 2), axis=1)
    return {"winner_steps": int(len(hits)), "winner_removed_boundary": int(first_last.sum()),
            "oracle_steps": int(len(oracle)), "oracle_removed_boundary": int(oracle_fl.sum())}


_FUSION_NAMES = {"rf_fusion": "RF fusion", "lr_fusion": "LR fusion"}


def _name(key: str) -> str:
    """A strategy's display name (the registry's; ours for the fusion rankers)."""
    return _FUSION_NAMES.get(key) or get_info(key).display_name


def _noise(beyond: bool) -> str:
    return "beyond noise" if beyond else "within noise"


def _pts(i: Interval) -> str:
    return f"{i.estimate:+.2f} [{i.low:+.2f}, {i.high:+.2f}] points"


def _scored(table: pd.DataFrame) -> str:
    return "" if held_out(table) else f"; {SAME_ROWS_TEXT}"


def _rf_first(s: pd.DataFrame, table: pd.DataFrame, datasets: list[str]) -> dict[str, Any]:
    """RF against the best other strategy of each dataset, paired over that dataset's steps."""
    rf = s[s["strategy"] == "rf_fusion"].set_index("dataset")
    if not len(rf):
        return {"ours": NO_FUSION, "noise": "not measured"}
    diffs, behind = [], []
    for d in datasets:
        if d not in rf.index:
            continue
        others = s[(s["dataset"] == d) & (s["strategy"] != "rf_fusion")].sort_values("regret")
        if others.empty:
            continue
        best = str(others["strategy"].iloc[0])
        diff = paired_regret(table, "rf_fusion", best, d)  # best's regret - RF's: > 0, RF loses fewer points
        if diff is not None:
            diffs.append(diff)
            if beyond_noise(diff) and diff.estimate < 0:
                behind.append(f"{d} (behind {_name(best)} by {-diff.estimate:.2f})")
    lowest = int((rf["position"] == 1).sum())
    positions = ", ".join(f"{d} {int(rf.loc[d, 'position'])}" for d in datasets if d in rf.index)
    if not diffs:
        return {"ours": f"RF fusion has the lowest mean one-step regret on {lowest} of {len(datasets)} datasets "
                        f"(positions: {positions}); no paired interval{_scored(table)}", "noise": "no interval"}
    w = win_count(diffs)
    text = (f"RF fusion has the lowest mean one-step regret on {lowest} of {len(datasets)} datasets (positions: "
            f"{positions}). Counted beyond noise (paired over each dataset's steps, against its best other "
            f"strategy): first on {w.wins} of {w.n}, behind on {w.losses}, {w.ties} ties within noise"
            + (f"; behind: {', '.join(behind)}" if behind else "") + _scored(table))
    return {"ours": text, "noise": _noise(w.wins + w.losses > 0), "wins": w.wins, "losses": w.losses,
            "ties": w.ties}


def _rf_beats_lr(s: pd.DataFrame, table: pd.DataFrame, datasets: list[str]) -> dict[str, Any]:
    rf = s[s["strategy"] == "rf_fusion"].set_index("dataset")
    lr = s[s["strategy"] == "lr_fusion"].set_index("dataset")
    both = [d for d in datasets if d in rf.index and d in lr.index]
    if not both:
        return {"ours": NO_FUSION, "noise": "not measured"}
    lower = int(sum(rf.loc[d, "regret"] < lr.loc[d, "regret"] for d in both))
    diffs = [i for i in (paired_regret(table, "rf_fusion", "lr_fusion", d) for d in both) if i is not None]
    overall = paired_regret(table, "rf_fusion", "lr_fusion")
    if not diffs or overall is None:
        return {"ours": f"RF regret below LR on {lower} of {len(both)} datasets (no paired interval)",
                "noise": "no interval"}
    w = win_count(diffs)
    text = (f"RF regret below LR's on {lower} of {len(both)} datasets by the means; beyond noise (paired over "
            f"steps): RF better on {w.wins}, LR better on {w.losses}, {w.ties} ties within noise. Over all "
            f"datasets LR − RF = {_pts(overall)} (mean regret RF {rf['regret'].mean():.2f}, LR "
            f"{lr['regret'].mean():.2f}; bootstrap over datasets and steps): {_noise(beyond_noise(overall))}"
            + _scored(table))
    return {"ours": text, "noise": _noise(beyond_noise(overall)), "wins": w.wins, "losses": w.losses,
            "ties": w.ties}


#: strategies that are not single signals (left out of "the best single signal")
_NOT_SINGLE = (*FUSION, "random", "top_down", "block_influence", *REFERENCE_ROWS)


def _no_universal(s: pd.DataFrame, table: pd.DataFrame, datasets: list[str]) -> dict[str, Any]:
    """The best single signal per dataset, and which single signals are tied with it within noise; a signal
    tied for best on every dataset means a universal signal is not ruled out."""
    singles = s[~s["strategy"].isin(_NOT_SINGLE)]
    best = singles.sort_values(["dataset", "regret"]).groupby("dataset").head(1)
    tied_sets, separated = [], 0
    for r in best.itertuples():
        tied = {r.strategy}
        others = singles[(singles["dataset"] == r.dataset) & (singles["strategy"] != r.strategy)]
        for o in others["strategy"]:
            diff = paired_regret(table, r.strategy, str(o), str(r.dataset))
            if diff is None or not beyond_noise(diff):
                tied.add(str(o))
        tied_sets.append(tied)
        separated += len(tied) == 1
    names = ", ".join(f"{r.dataset} {get_info(r.strategy).display_name}" for r in best.itertuples())
    universal = sorted(set.intersection(*tied_sets)) if tied_sets else []
    text = (f"{best['strategy'].nunique()} different single signals have the lowest regret across {len(datasets)} "
            f"datasets ({names}); the best is ahead of every other single signal beyond noise on {separated} of "
            f"{len(tied_sets)}, tied with at least one within noise on {len(tied_sets) - separated}. ")
    if universal:
        text += ("Within noise, a universal signal is not ruled out: "
                 + ", ".join(get_info(k).display_name for k in universal) + " is tied for best on every dataset")
    else:
        text += "Beyond noise: no single signal is within noise of the best on every dataset"
    return {"ours": text + _scored(table), "noise": _noise(not universal), "ties": len(tied_sets) - separated,
            "wins": separated}


def claims(summary: pd.DataFrame, table: pd.DataFrame, full: pd.DataFrame | None = None,
           budget: str = "", full_budget: str = "") -> list[dict[str, Any]]:
    """The paper's claims next to ours, each with its numbers (from the one-step table, and the full-path table
    where it has the runs). A comparison counts a win only when its paired interval excludes 0 (:mod:`core.stats`);
    each claim says how many were ties and carries ``noise``: "beyond noise", "within noise" or why there is no
    interval."""
    s = summary[~summary["strategy"].isin(REFERENCE_ROWS)]
    datasets = sorted(s["dataset"].unique())
    n = len(datasets)
    seeds = int(s["seeds"].min()) if len(s) else 0
    winners = s[s["position"] == 1]
    out = [
        {"key": "rf_first", "paper": PAPER["rf_first"], **_rf_first(s, table, datasets), "measure": "one-step"},
        {"key": "rf_beats_lr", "paper": PAPER["rf_beats_lr"], **_rf_beats_lr(s, table, datasets),
         "measure": "one-step"},
        {"key": "no_universal_signal", "paper": PAPER["no_universal_signal"], **_no_universal(s, table, datasets),
         "measure": "one-step"},
    ]
    b = _boundary(table, winners)
    out.append({"key": "boundary_layers", "paper": PAPER["boundary_layers"],
                "ours": f"the per-dataset winners removed the original first or last layer in "
                        f"{b['winner_removed_boundary']} of {b['winner_steps']} steps; the oracle itself in "
                        f"{b['oracle_removed_boundary']} of {b['oracle_steps']}",
                "measure": "one-step", "noise": "counts of choices (no interval)"})
    if full is not None and not full.empty:
        rf_full = full[full["strategy"] == "rf_fusion"]
        rf_rank = rf_full.groupby("dataset")["rank_after_kd"].mean()
        n_strategies = int(full.groupby(["dataset", "seed"])["strategy"].nunique().max())
        several = seed_span(rf_full)[1] > 1
        out.append({"key": "rf_first_full", "paper": PAPER["rf_first"],
                    "ours": (f"after the full path and KD, RF fusion is the most accurate of {n_strategies} strategies "
                             f"on {int((rf_rank == 1).sum())} of {len(rf_rank)} datasets"
                             + (" (first at every seed)" if several else "")
                             + f"; its {'mean ' if several else ''}rank after KD: "
                             + ", ".join(f"{d} {r:g}" for d, r in rf_rank.items())) if len(rf_rank)
                            else "RF fusion has no finished full-path run", "measure": "full path",
                    "noise": "ranks of test accuracies (no interval between runs)"})
        out.append({"key": "kd_beats_teacher", "paper": PAPER["kd_beats_teacher"], **_kd_beats_teacher(rf_full),
                    "measure": "full path"})
        out.append({"key": "ratio", "paper": PAPER["ratio"],
                    "ours": f"mean accuracy-to-size ratio {full['ratio'].mean():.2f} over {len(full)} runs (our "
                            "definition: (accuracy / teacher accuracy) / (parameters / teacher parameters), after KD)",
                    "measure": "full path", "noise": "a mean of ratios (no interval)"})
    else:
        for key in ("kd_beats_teacher", "ratio"):
            out.append({"key": key, "paper": PAPER[key], "ours": "not measured yet: needs the full-path study "
                        "(data/studies/paper-small.toml here, paper-full.toml on a cluster)", "measure": "full path",
                        "noise": "not measured"})
    one_span = (seeds, int(s["seeds"].max()) if len(s) else 0)
    full_span = seed_span(full)
    full_n = int(full["dataset"].nunique()) if full is not None and not full.empty else 0
    for c in out:
        one = c["measure"] == "one-step"
        c["budget"] = budget if one else (full_budget or "see the study's config")
        c["seeds"], c["seeds_max"] = one_span if one else full_span
        c["datasets"] = n if one else full_n
    return out


#: the full-path columns of the distilled model minus its teacher on the test rows (core.runs.noise)


def _kd_beats_teacher(rf_full: pd.DataFrame) -> dict[str, Any]:
    """The distilled RF-pruned model against its teacher, per run: above or below beyond noise where the run's
    difference interval is recorded, else counted by the accuracies alone and said so."""
    n = len(rf_full)
    better = int((rf_full["after_kd"] > rf_full["teacher_accuracy"]).sum())
    has = rf_full.dropna(subset=list(KD_VS_TEACHER[:3])) if set(KD_VS_TEACHER[:3]) <= set(rf_full.columns) \
        else rf_full.iloc[0:0]
    if has.empty:
        return {"ours": f"distilled RF-pruned model above its teacher on {better} of {n} measured dataset-seed runs "
                        "(accuracies only: these runs' test intervals are not in the reference files)",
                "noise": "no interval"}
    w = win_count([Interval(float(r.kd_vs_teacher), float(r.kd_vs_teacher_low), float(r.kd_vs_teacher_high))
                   for r in has.itertuples()])
    paired = int(has["kd_vs_teacher_paired"].astype(bool).sum()) if "kd_vs_teacher_paired" in has else 0
    rest = n - len(has)
    return {"ours": f"distilled RF-pruned model above its teacher beyond noise on {w.wins} of {w.n} runs with a test "
                    f"interval, below on {w.losses}, {w.ties} ties within noise ({paired} paired on the same test "
                    f"rows, the rest unpaired)" + (f"; {rest} more run(s) without an interval" if rest else ""),
            "noise": _noise(w.wins + w.losses > 0), "wins": w.wins, "losses": w.losses, "ties": w.ties}


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
        from core.studies.config import StudyConfig

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


def write_reference(table: pd.DataFrame, summary: pd.DataFrame, full: pd.DataFrame | None, claim_rows: list[dict],
                    folder: Path | None = None, meta: dict[str, Any] | None = None) -> Path:
    folder = folder or REFERENCE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / ONE_STEP_FILE, table.to_csv(index=False))
    atomic_write_text(folder / "one_step_summary.csv", summary.to_csv(index=False))
    atomic_write_text(folder / OVERALL_FILE, regret_over_datasets(table).to_csv(index=False))
    if full is not None and not full.empty:
        atomic_write_text(folder / FULL_PATH_FILE, full.to_csv(index=False))
    elif (folder / FULL_PATH_FILE).is_file():
        (folder / FULL_PATH_FILE).unlink()  # never leave a table the claims no longer describe
    atomic_write_text(folder / CLAIMS_FILE, json.dumps({"claims": claim_rows, **(meta or {})}, indent=1))
    return folder
