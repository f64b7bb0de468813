"""The paper check's claims: arXiv 2501.03273's statements next to ours, each with its numbers (from the one-step
table and, where measured, the full-path table), its noise verdict and its budget and seed count.

A comparison counts a win only when its paired interval excludes 0 (:mod:`core.stats`); claims over datasets also
carry the dataset-level test (:mod:`core.studies.dataset_tests`: an exact sign-flip test over dataset means and,
for a difference within noise, how many datasets x seeds would separate it).
"""

from __future__ import annotations

from typing import TypedDict

import pandas as pd

from core.pruning.config import FUSION
from core.signals import get_info
from core.stats import Interval, beyond_noise, win_count
from core.studies.dataset_tests import DatasetComparison, best_single, compare, comparison_text, registry_end
from core.studies.full_path import KD_VS_TEACHER, seed_span
from core.studies.regret import (
    NOISE_FLOOR,
    REFERENCE_ROWS,
    SAME_ROWS_TEXT,
    held_out,
    paired_regret,
    regret_over_datasets,
)

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


class Claim(TypedDict, total=False):
    """One claim of ``claims.json``: the paper's statement (``paper``) next to ours (``ours``), what it was measured
    on (``measure``: one-step or full path), its noise verdict (``noise``: "beyond noise", "within noise" or why there
    is no interval), the wins, losses and ties counted beyond noise where it counts any, the dataset-level test where
    it has one (``sign_flip_p``, ``power``, ``power_short``), and the budget, seeds and datasets it stands on. The
    helpers below return the parts they measure; :func:`claims` adds the rest."""

    key: str
    paper: str
    ours: str
    measure: str
    noise: str
    wins: int
    losses: int
    ties: int
    sign_flip_p: float | None
    power: str
    power_short: str
    budget: str
    seeds: int
    seeds_max: int
    datasets: int


class Boundary(TypedDict):
    """How often the per-dataset winners and the oracle removed the first or the last layer, over their steps."""

    winner_steps: int
    winner_removed_boundary: int
    oracle_steps: int
    oracle_removed_boundary: int


#: what a claim about fusion says when the bank cannot score fusion fairly
NO_FUSION = ("not measured: fusion is scored leave-one-dataset-out, which needs profiles of at least two "
             "datasets in the bank")


def _boundary(table: pd.DataFrame, winners: pd.DataFrame) -> Boundary:
    """How often the winning strategy (per dataset) removed the first or the last layer, over its steps."""
    hits = table.merge(winners[["model", "dataset", "strategy"]], on=["model", "dataset", "strategy"])
    first_last = hits.apply(lambda r: r["chosen_layer"] in (0, r["n_layers"] + r["step"] - 2), axis=1)
    oracle = table[table["strategy"] == "oracle"]
    oracle_fl = oracle.apply(lambda r: r["chosen_layer"] in (0, r["n_layers"] + r["step"] - 2), axis=1)
    return {"winner_steps": int(len(hits)), "winner_removed_boundary": int(first_last.sum()),
            "oracle_steps": int(len(oracle)), "oracle_removed_boundary": int(oracle_fl.sum())}


_FUSION_NAMES = {"rf_fusion": "RF fusion", "lr_fusion": "LR fusion"}


def _name(key: str) -> str:
    """A strategy's display name (the registry's; ours for the fusion rankers, the noise floor and random, which the
    paper check scores as its expectation)."""
    if key == NOISE_FLOOR:
        return "the noise floor"
    if key == "random":
        return "Random (expected)"
    return _FUSION_NAMES.get(key) or get_info(key).display_name


def _noise(beyond: bool) -> str:
    return "beyond noise" if beyond else "within noise"


def _pts(i: Interval) -> str:
    return f"{i.estimate:+.2f} [{i.low:+.2f}, {i.high:+.2f}] points"


def _scored(table: pd.DataFrame) -> str:
    return "" if held_out(table) else f"; {SAME_ROWS_TEXT}"


def _rf_first(s: pd.DataFrame, table: pd.DataFrame, datasets: list[str]) -> Claim:
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


def _rf_beats_lr(s: pd.DataFrame, table: pd.DataFrame, datasets: list[str]) -> Claim:
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
            f"datasets (mean regret RF {rf['regret'].mean():.2f}, LR {lr['regret'].mean():.2f}): ")
    c = compare(table, "rf_fusion", "lr_fusion")
    if c is None:  # no shared step over datasets: the bootstrap alone
        text += f"LR − RF = {_pts(overall)}: {_noise(beyond_noise(overall))}"
        verdict = _noise(beyond_noise(overall))
    else:
        text += comparison_text(c, "RF fusion", "LR fusion")
        verdict = c.verdict
    return {"ours": text + _scored(table), "noise": verdict, "wins": w.wins, "losses": w.losses, "ties": w.ties,
            **_dataset_test(c)}


def _dataset_test(c: DatasetComparison | None) -> Claim:
    """A claim's dataset-level test, as fields of claims.json (empty without one)."""
    if c is None:
        return {}
    return {"sign_flip_p": c.sign_flip_p, "power": c.power or "", "power_short": c.power_short or ""}


def _rf_lowest(table: pd.DataFrame) -> Claim:
    """The headline, with fair baselines: which strategy has the lowest mean regret over datasets, and RF fusion
    against the best single signal (direction learned leave-one-dataset-out), the best by the registry's a-priori
    end when that is another signal, and random (its expectation), each with the bootstrap and the dataset-level
    test."""
    overall = regret_over_datasets(table)
    ranked = overall[~overall["strategy"].isin(REFERENCE_ROWS)].reset_index(drop=True)
    if "rf_fusion" not in set(ranked["strategy"]):
        return {"ours": NO_FUSION, "noise": "not measured"}
    place = int(ranked.index[ranked["strategy"] == "rf_fusion"][0]) + 1

    def mean(key: str) -> str:
        r = overall[overall["strategy"] == key]
        return f"{r['regret'].iloc[0]:.2f} [{r['low'].iloc[0]:.2f}, {r['high'].iloc[0]:.2f}]" if len(r) else "—"
    best, apriori = best_single(table), best_single(table, "registry")
    lead = (f"RF fusion has the lowest mean one-step regret of {len(ranked)} strategies" if place == 1 else
            f"{_name(str(ranked['strategy'].iloc[0]))} has the lowest mean one-step regret; RF fusion is {place} "
            f"of {len(ranked)}")
    text = (f"{lead}: {mean('rf_fusion')} points (noise floor {mean(NOISE_FLOOR)}; LR fusion {mean('lr_fusion')}; "
            + (f"best single signal, its end learned on the other datasets: {_name(best)} {mean(best)}; " if best
               else "")
            + f"random, expected over the candidates: {mean('random')}). ")
    out: Claim = {"noise": "within noise"}
    others: list[tuple[str | None, str]] = [(best, _name(best) if best else "")]
    at_end = table  # the a-priori best is compared from the registry's end, whatever was learned
    if apriori is not None and apriori != best:
        others.append((apriori, f"{_name(apriori)} (the registry's a-priori best, {get_info(apriori).direction} "
                                "first)"))
        at_end = registry_end(table, apriori)
    for other, label in (*others, ("random", "random")):
        c = compare(at_end if other == apriori else table, "rf_fusion", other) if other else None
        if c is None:
            continue
        text += f"Against {label}: {comparison_text(c, 'RF fusion', _name(str(other)))}. "
        if other == best:
            out.update({"noise": c.verdict, **_dataset_test(c)})
    return {**out, "ours": text.strip() + _scored(table)}


#: strategies that are not single signals (left out of "the best single signal")
_NOT_SINGLE = (*FUSION, "random", "top_down", "block_influence", *REFERENCE_ROWS)
_DIRECTION = " (each single signal pruned from the end learned on the other datasets)"


def _no_universal(s: pd.DataFrame, table: pd.DataFrame, datasets: list[str]) -> Claim:
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
            f"datasets ({names}){_DIRECTION if 'direction' in table.columns else ''}; the best is ahead of every "
            f"other single signal beyond noise on {separated} of {len(tied_sets)}, tied with at least one within "
            f"noise on {len(tied_sets) - separated}. ")
    if universal:
        text += ("Within noise, a universal signal is not ruled out: "
                 + ", ".join(get_info(k).display_name for k in universal) + " is tied for best on every dataset")
    else:
        text += "Beyond noise: no single signal is within noise of the best on every dataset"
    return {"ours": text + _scored(table), "noise": _noise(not universal), "ties": len(tied_sets) - separated,
            "wins": separated}


def claims(summary: pd.DataFrame, table: pd.DataFrame, full: pd.DataFrame | None = None,
           budget: str = "", full_budget: str = "") -> list[Claim]:
    """The paper's claims next to ours, each with its numbers (from the one-step table, and the full-path table
    where it has the runs). A comparison counts a win only when its paired interval excludes 0 (:mod:`core.stats`);
    each claim says how many were ties and carries ``noise``: "beyond noise", "within noise" or why there is no
    interval."""
    s = summary[~summary["strategy"].isin(REFERENCE_ROWS)]
    datasets = sorted(s["dataset"].unique())
    n = len(datasets)
    seeds = int(s["seeds"].min()) if len(s) else 0
    winners = s[s["position"] == 1]
    out: list[Claim] = [
        {"key": "rf_first", "paper": PAPER["rf_first"], **_rf_first(s, table, datasets), "measure": "one-step"},
        {"key": "rf_lowest_mean", "paper": PAPER["rf_first"], **_rf_lowest(table), "measure": "one-step"},
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


def _kd_beats_teacher(rf_full: pd.DataFrame) -> Claim:
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
