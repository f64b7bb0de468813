"""The paper check: arXiv 2501.03273's claims re-measured on this app's own profiles and runs.

* :func:`one_step_table`: at every profiled step of the bank (the oracle's own pruning path), each strategy's
  choice scored against the oracle of that step: top-1 hit, regret (accuracy points lost against the best
  removal), Spearman between the strategy's ranking and the oracle's. Fusion is strictly leave-one-dataset-out
  (the same :func:`core.fusion.rank_step` the runs use).
* :func:`summarise_one_step`: per dataset and strategy, mean over steps within a seed, then mean and spread
  (min-max) over seeds; ranks per dataset; the winner.
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

REFERENCE_DIR = PROJECT_ROOT / "data" / "reference"
ONE_STEP_FILE = "one_step.csv"
FULL_PATH_FILE = "full_path.csv"
CLAIMS_FILE = "claims.json"
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


def one_step_table(bank: pd.DataFrame, strategies: tuple[str, ...] | None = None,
                   fusion_profiles: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (model, dataset, seed, step, strategy). ``fusion_profiles`` (default: ``bank``) is what the
    fusion rankers may train on; leave-one-dataset-out removes the dataset being scored from it."""
    from core.fusion import FusionConfig, rank_step

    strategies = strategies or (*STRATEGIES, *FUSION)
    fusion_profiles = bank if fusion_profiles is None else fusion_profiles
    rows = []
    for (model, dataset, seed, run_id, step_no), step in _step_groups(bank):
        step = step.sort_values("layer")
        base = {"model": model, "dataset": dataset, "seed": int(seed), "step": int(step_no),
                "n_layers": int(len(step))}
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
            rows.append({**base, **_score(step, scores, strategy), **extra})
        acc = step[ORACLE].to_numpy(dtype=float)
        rows.append({**base, **_score(step, acc, "oracle")})
    return pd.DataFrame(rows)


def summarise_one_step(table: pd.DataFrame) -> pd.DataFrame:
    """Per (model, dataset, strategy): mean over steps within each seed, then mean, min and max over seeds, the
    number of seeds and steps, and the rank by mean regret among non-oracle strategies (1 = best)."""
    per_seed = table.groupby(["model", "dataset", "strategy", "seed"]).agg(
        regret=("regret_points", "mean"), top1=("top1", "mean"), spearman=("spearman", "mean"),
        steps=("step", "nunique")).reset_index()
    g = per_seed.groupby(["model", "dataset", "strategy"])
    out = g.agg(regret=("regret", "mean"), regret_min=("regret", "min"), regret_max=("regret", "max"),
                top1=("top1", "mean"), top1_min=("top1", "min"), top1_max=("top1", "max"),
                spearman=("spearman", "mean"), seeds=("seed", "nunique"), steps=("steps", "sum")).reset_index()
    ranked = out[out["strategy"] != "oracle"].copy()
    ranked["rank"] = ranked.groupby(["model", "dataset"])["regret"].rank(method="min")
    # ties on regret are broken by top-1 then Spearman, so the rank is the one a reader would give
    ranked = ranked.sort_values(["model", "dataset", "regret", "top1", "spearman"], ascending=[True, True, True,
                                                                                              False, False])
    ranked["position"] = ranked.groupby(["model", "dataset"]).cumcount() + 1
    out = out.merge(ranked[["model", "dataset", "strategy", "rank", "position"]], how="left",
                    on=["model", "dataset", "strategy"])
    return out.sort_values(["model", "dataset", "position"]).reset_index(drop=True)


def full_path_table(store: Any, study_ids: list[str] | None = None) -> pd.DataFrame:
    """Every finished study run (a strategy's own pruning path, then KD): accuracy at each depth, the maximum
    over depth, after KD, the accuracy-to-size ratio, and the rank per (model, dataset, seed, budget)."""
    runs = [r for r in store.list_runs(kind="prune", status="done")
            if r.group_id and (study_ids is None or r.group_id in study_ids) and r.cell_id]
    rows = []
    for r in runs:
        s, c = r.summary, r.config
        steps = store.steps(r.id)
        row = {"run_id": r.id, "study": r.group_id, "model": r.model, "dataset": r.dataset,
               "strategy": r.strategy, "seed": c.get("seed", 0), "train_cap": c.get("data", {}).get("train_cap"),
               "val_cap": c.get("data", {}).get("val_cap"), "max_length": c.get("data", {}).get("max_length"),
               "layers_removed": len(s.get("removed_order", [])), "removed": json.dumps(s.get("removed_order", [])),
               "teacher_accuracy": s.get("teacher", {}).get("test_accuracy"),
               "max_accuracy_over_depth": (s.get("max_accuracy_over_depth") or {}).get("accuracy"),
               "before_kd": (s.get("before_kd") or {}).get("test_accuracy"),
               "after_kd": (s.get("after_kd") or {}).get("test_accuracy"),
               "ratio": s.get("ratio"), "weak_teacher": bool(s.get("weak_teacher"))}
        for _, st in steps.iterrows():
            if int(st["step"]) > 0:
                row[f"acc_{int(st['n_layers'])}_layers"] = st["test_accuracy"]
        rows.append(row)
    return _ranked(pd.DataFrame(rows))


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


def load_full_path(folder: Path | None = None) -> pd.DataFrame | None:
    path = (folder or REFERENCE_DIR) / FULL_PATH_FILE
    return pd.read_csv(path) if path.is_file() else None


def _boundary(table: pd.DataFrame, winners: pd.DataFrame) -> dict[str, Any]:
    """How often the winning strategy (per dataset) removed the first or the last layer, over its steps."""
    hits = table.merge(winners[["model", "dataset", "strategy"]], on=["model", "dataset", "strategy"])
    first_last = hits.apply(lambda r: r["chosen_layer"] in (0, r["n_layers"] + r["step"] - 2), axis=1)
    oracle = table[table["strategy"] == "oracle"]
    oracle_fl = oracle.apply(lambda r: r["chosen_layer"] in (0, r["n_layers"] + r["step"] - 2), axis=1)
    return {"winner_steps": int(len(hits)), "winner_removed_boundary": int(first_last.sum()),
            "oracle_steps": int(len(oracle)), "oracle_removed_boundary": int(oracle_fl.sum())}


def claims(summary: pd.DataFrame, table: pd.DataFrame, full: pd.DataFrame | None = None,
           budget: str = "", full_budget: str = "") -> list[dict[str, Any]]:
    """The paper's claims next to ours, each with its numbers (from the one-step table, and the full-path table
    where it has the runs)."""
    s = summary[summary["strategy"] != "oracle"]
    datasets = sorted(s["dataset"].unique())
    n = len(datasets)
    seeds = int(s["seeds"].min()) if len(s) else 0
    winners = s[s["position"] == 1]
    rf = s[s["strategy"] == "rf_fusion"].set_index("dataset")
    lr = s[s["strategy"] == "lr_fusion"].set_index("dataset")
    singles = s[~s["strategy"].isin((*FUSION, "random", "top_down", "block_influence"))]
    best_single = singles.sort_values(["dataset", "position"]).groupby("dataset").head(1)
    both = [d for d in datasets if d in rf.index and d in lr.index]
    out = [
        {"key": "rf_first", "paper": PAPER["rf_first"],
         "ours": (f"RF fusion ranks first (lowest one-step regret) on {int((rf['position'] == 1).sum())} of {n} "
                  "datasets; its positions: " + ", ".join(f"{d} {int(rf.loc[d, 'position'])}" for d in datasets
                                                        if d in rf.index)) if len(rf) else NO_FUSION,
         "measure": "one-step"},
        {"key": "rf_beats_lr", "paper": PAPER["rf_beats_lr"],
         "ours": (f"RF regret below LR on {int(sum(rf.loc[d, 'regret'] < lr.loc[d, 'regret'] for d in both))} of "
                  f"{len(both)} datasets (mean regret RF {rf['regret'].mean():.2f} vs LR {lr['regret'].mean():.2f} "
                  "points)") if both else NO_FUSION,
         "measure": "one-step"},
        {"key": "no_universal_signal", "paper": PAPER["no_universal_signal"],
         "ours": f"{best_single['strategy'].nunique()} different single signals are best across {n} datasets: " +
                 ", ".join(f"{r.dataset} {get_info(r.strategy).display_name}" for r in best_single.itertuples()),
         "measure": "one-step"},
    ]
    b = _boundary(table, winners)
    out.append({"key": "boundary_layers", "paper": PAPER["boundary_layers"],
                "ours": f"the per-dataset winners removed the original first or last layer in {b['winner_removed_boundary']} "
                        f"of {b['winner_steps']} steps; the oracle itself in {b['oracle_removed_boundary']} of "
                        f"{b['oracle_steps']}", "measure": "one-step"})
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
                            else "RF fusion has no finished full-path run", "measure": "full path"})
        better = int((rf_full["after_kd"] > rf_full["teacher_accuracy"]).sum())
        out.append({"key": "kd_beats_teacher", "paper": PAPER["kd_beats_teacher"],
                    "ours": f"distilled RF-pruned model above its teacher on {better} of {len(rf_full)} measured "
                            f"dataset-seed runs", "measure": "full path"})
        out.append({"key": "ratio", "paper": PAPER["ratio"],
                    "ours": f"mean accuracy-to-size ratio {full['ratio'].mean():.2f} over {len(full)} runs (our "
                            "definition: (accuracy / teacher accuracy) / (parameters / teacher parameters), after KD)",
                    "measure": "full path"})
    else:
        for key in ("kd_beats_teacher", "ratio"):
            out.append({"key": key, "paper": PAPER[key], "ours": "not measured yet: needs the full-path study "
                        "(data/studies/paper-small.toml here, paper-full.toml on a cluster)", "measure": "full path"})
    one_span = (seeds, int(s["seeds"].max()) if len(s) else 0)
    full_span = seed_span(full)
    full_n = int(full["dataset"].nunique()) if full is not None and not full.empty else 0
    for c in out:
        one = c["measure"] == "one-step"
        c["budget"] = budget if one else (full_budget or "see the study's config")
        c["seeds"], c["seeds_max"] = one_span if one else full_span
        c["datasets"] = n if one else full_n
    return out


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


def bank_budget(bank: Any, summary: pd.DataFrame) -> str:
    """The one-step budget in words, read from the bank itself (its rows' data configs and the study file its
    manifest names), never assumed: models, training rows, length, epochs per step, seeds per dataset."""
    rows = bank.rows
    configs = [json.loads(c) for c in rows["data_config"].unique() if isinstance(c, str) and c.startswith("{")]
    caps = sorted({int(c["train_cap"]) for c in configs if "train_cap" in c})
    lengths = sorted({int(c["max_length"]) for c in configs if "max_length" in c})
    epochs = "epochs per step not recorded"
    study = bank.manifest.get("study")
    if study and (PROJECT_ROOT / study).is_file():
        from core.studies.config import StudyConfig

        try:
            cfg = StudyConfig.load(PROJECT_ROOT / study)
            epochs = f"{cfg.step_epochs:g} fine-tuning epoch(s) per step"
        except (ValueError, OSError):
            pass
    seeds = summary.loc[summary["strategy"] != "oracle", "seeds"]
    lo, hi = (int(seeds.min()), int(seeds.max())) if len(seeds) else (0, 0)
    return (f"profile bank v{bank.version}: {', '.join(sorted(rows['model'].unique()))} oracle-path profiles, "
            f"{'/'.join(f'{c:,}' for c in caps) or '?'} training rows, length {'/'.join(map(str, lengths)) or '?'}, "
            f"{epochs}; {seeds_text(lo, hi, per_dataset=True)}")


def write_reference(table: pd.DataFrame, summary: pd.DataFrame, full: pd.DataFrame | None, claim_rows: list[dict],
                    folder: Path | None = None, meta: dict[str, Any] | None = None) -> Path:
    folder = folder or REFERENCE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / ONE_STEP_FILE, table.to_csv(index=False))
    atomic_write_text(folder / "one_step_summary.csv", summary.to_csv(index=False))
    if full is not None and not full.empty:
        atomic_write_text(folder / FULL_PATH_FILE, full.to_csv(index=False))
    elif (folder / FULL_PATH_FILE).is_file():
        (folder / FULL_PATH_FILE).unlink()  # never leave a table the claims no longer describe
    atomic_write_text(folder / CLAIMS_FILE, json.dumps({"claims": claim_rows, **(meta or {})}, indent=1))
    return folder
