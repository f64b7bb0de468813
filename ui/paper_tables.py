"""The Paper check's tables: the reference files (:mod:`ui.paper_data`) reshaped for the page, pandas only (no
streamlit, no figures)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.studies.full_path_tests import count_text

from . import theme
from .paper_data import FLOOR_LABEL, FUSION, NOISE_FLOOR, Label

#: random in the one-step tables: its exact expectation over each step's candidates (a run removes one seeded draw)
RANDOM_EXPECTED = "Random (expected over the candidates)"


def one_step_name(key: str) -> str:
    """A strategy's name in the one-step tables: the noise floor and random (scored as its expectation) say what
    they are; the others as everywhere (:func:`ui.theme.strategy_label`)."""
    if key == NOISE_FLOOR:
        return FLOOR_LABEL
    if key == "random":
        return RANDOM_EXPECTED
    return theme.strategy_label(key)


def _span(claim: dict[str, Any]) -> str:
    """A claim's seed count as text: "2", or "1-2" when its datasets were measured at different seed counts."""
    low, high = claim.get("seeds", 0), claim.get("seeds_max", claim.get("seeds", 0))
    return f"{low}" if low == high else f"{low}-{high}"


def claims_frame(claims: list[dict[str, Any]], page_budget: str = "") -> pd.DataFrame:
    """The claims side by side: the paper's statement | ours with numbers | measurement | budget | seeds. A budget
    equal to ``page_budget`` (stated once above the table) is written as a pointer to it, not repeated."""
    def budget(c: dict[str, Any]) -> str:
        b = c.get("budget", "") or "not recorded"
        return "as above" if page_budget and b == page_budget else b

    rows = [{"The paper says": c["paper"], "We measured": c["ours"],
             "Noise": c.get("noise", "no interval (files from before intervals)"),
             # "beyond noise" says some difference cleared its interval, not in whose favour: the counts do
             "Beyond noise: for / against, ties": (f"{c.get('wins', 0)} / {c.get('losses', 0)}, {c['ties']}"
                                                   if "ties" in c else ""),
             "Over datasets: sign-flip p": (f"{c['sign_flip_p']:.3f}" if isinstance(c.get("sign_flip_p"), float)
                                            else ""),
             "Measurement": c.get("measure", ""), "Budget": budget(c), "Seeds": _span(c),
             "Datasets": c.get("datasets")} for c in claims]
    return pd.DataFrame(rows)


def claims_shown(frame: pd.DataFrame) -> pd.DataFrame:
    """The claims table as the page shows it: the noise verdict with its counts and the sign-flip p in one "Noise"
    column, measurement, budget, seeds and datasets in one "Measured on" column, so the two columns of prose (the
    paper's words and ours) get the width."""
    def on(r: pd.Series) -> str:
        parts = [str(r["Measurement"]) or "?"]
        if pd.notna(r["Datasets"]) and str(r["Datasets"]):
            parts.append(f"{r['Datasets']} datasets")
        if str(r["Seeds"]) not in ("", "0", "nan"):
            parts.append(f"{r['Seeds']} seed(s)")
        parts.append(f"budget {r['Budget']}" if r["Budget"] != "as above" else "budget as above")
        return " · ".join(parts)

    def noise(r: pd.Series) -> str:
        parts = [str(r["Noise"])]
        if r["Beyond noise: for / against, ties"]:
            parts.append(f"for / against, ties: {r['Beyond noise: for / against, ties']}")
        if r["Over datasets: sign-flip p"]:
            parts.append(f"sign-flip p over datasets {r['Over datasets: sign-flip p']}")
        return " · ".join(parts)

    out = frame[["The paper says", "We measured"]].copy()
    out["Noise"] = frame.apply(noise, axis=1) if len(frame) else []
    out["Measured on"] = frame.apply(on, axis=1) if len(frame) else []
    return out


def _of(summary: pd.DataFrame, model: str) -> pd.DataFrame:
    """The ranked strategies of ``model`` (the oracle and the noise floor are reference rows)."""
    return summary[(summary["model"] == model) & ~summary["strategy"].isin(("oracle", NOISE_FLOOR))]


def noise_floor(summary: pd.DataFrame, model: str, label: Label = str) -> pd.DataFrame:
    """The noise floor per dataset (mean regret of the oracle of the other half, with its interval over steps);
    empty for files scored on the same rows."""
    f = summary[(summary["model"] == model) & (summary["strategy"] == NOISE_FLOOR)]
    if f.empty:
        return pd.DataFrame()
    return pd.DataFrame({"dataset": [label(d) for d in f["dataset"]],
                         "noise floor (points)": [_ci(r.regret, r.regret_low, r.regret_high) for r in f.itertuples()],
                         "top-1 hit rate": f["top1"].to_numpy(), "steps": f["steps"].astype(int).to_numpy()})


def _ci(value: float, low: float, high: float, digits: int = 2) -> str:
    """``1.70 [1.20, 2.25]``; the value alone when the bounds are missing."""
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _vs_floor(value: float, low: float, high: float) -> str:
    """The paired distance to the noise floor with its verdict."""
    if not np.isfinite(value):
        return ""
    word = "within noise" if low <= 0 <= high else ("above the floor, beyond noise" if value > 0 else
                                                    "below the floor, beyond noise")
    return f"{value:+.2f} [{low:+.2f}, {high:+.2f}] {word}"


def strategy_order(summary: pd.DataFrame, model: str) -> list[str]:
    """Strategies by their mean position over datasets (best first)."""
    s = _of(summary, model)
    return list(s.groupby("strategy")["position"].mean().sort_values(kind="stable").index)


def rank_matrix(summary: pd.DataFrame, model: str) -> pd.DataFrame:
    """Position per dataset (1 = lowest one-step regret): strategies (rows, best on average first) x datasets."""
    s = _of(summary, model)
    if s.empty:
        return pd.DataFrame()
    m = s.pivot_table(index="strategy", columns="dataset", values="position", aggfunc="first")
    return m.reindex(strategy_order(summary, model))


def one_step_matrix(summary: pd.DataFrame, model: str, label: Label = str) -> pd.DataFrame:
    """Mean regret in accuracy points with its 95 % interval over steps (files from before intervals: its min-max
    over seeds in round brackets), as text: strategy names x dataset names; the noise floor as the first row
    when the files have one."""
    s = _of(summary, model)
    if s.empty:
        return pd.DataFrame()
    floor = summary[(summary["model"] == model) & (summary["strategy"] == NOISE_FLOOR)]
    s = pd.concat([floor, s], ignore_index=True)
    if "regret_low" in s.columns:
        cell = [_ci(r.regret, r.regret_low, r.regret_high) for r in s.itertuples()]
    else:
        cell = [f"{r.regret:.2f} ({r.regret_min:.2f}–{r.regret_max:.2f})" for r in s.itertuples()]
    m = s.assign(cell=cell).pivot_table(index="strategy", columns="dataset", values="cell", aggfunc="first")
    m = m.reindex(([NOISE_FLOOR] if len(floor) else []) + strategy_order(summary, model))
    m.index = [one_step_name(k) for k in m.index]
    m.columns = [label(d) for d in m.columns]
    return m


def metrics_table(summary: pd.DataFrame, model: str, label: Label = str) -> pd.DataFrame:
    """Every (dataset, strategy): regret with spread, top-1 hit rate, Spearman, seeds, steps, position."""
    s = _of(summary, model).sort_values(["dataset", "position"])
    out = pd.DataFrame({"dataset": [label(d) for d in s["dataset"]],
                        "strategy": [one_step_name(k) for k in s["strategy"]],
                        "position": s["position"].astype(int).to_numpy(), "regret (points)": s["regret"].to_numpy(),
                        "regret min": s["regret_min"].to_numpy(), "regret max": s["regret_max"].to_numpy(),
                        "top-1 hit rate": s["top1"].to_numpy(), "Spearman": s["spearman"].to_numpy(),
                        "seeds": s["seeds"].astype(int).to_numpy(), "steps": s["steps"].astype(int).to_numpy()})
    if "regret_low" in s.columns:
        out.insert(4, "95 % interval", [_ci(r.regret, r.regret_low, r.regret_high).split(" ", 1)[1]
                                        if " " in _ci(r.regret, r.regret_low, r.regret_high) else ""
                                        for r in s.itertuples()])
    if "vs_floor" in s.columns and s["vs_floor"].notna().any():
        out.insert(5, "minus the noise floor", [_vs_floor(r.vs_floor, r.vs_floor_low, r.vs_floor_high)
                                                for r in s.itertuples()])
    return out


def winners(summary: pd.DataFrame, model: str, label: Label = str) -> pd.DataFrame:
    """Per dataset: the winning strategy with its numbers, and where each fusion ranker stands among all."""
    s = _of(summary, model)
    rows = []
    for ds, g in s.groupby("dataset"):
        best = g.sort_values("position").iloc[0]
        row = {"dataset": label(str(ds)), "winner": one_step_name(str(best["strategy"])),
               "regret (points)": float(best["regret"]), "top-1 hit rate": float(best["top1"]),
               "Spearman": float(best["spearman"])}
        if "regret_low" in g.columns:
            row["regret [95 %]"] = _ci(float(best["regret"]), best["regret_low"], best["regret_high"])
        if "vs_floor" in g.columns and np.isfinite(best["vs_floor"]):
            row["winner minus the noise floor"] = _vs_floor(best["vs_floor"], best["vs_floor_low"],
                                                            best["vs_floor_high"])
        for key in FUSION:
            f = g[g["strategy"] == key]
            row[theme.strategy_label(key)] = (f"{int(f['position'].iloc[0])} of {len(g)}" if len(f)
                                              else "not in the table")
        rows.append(row)
    return pd.DataFrame(rows)


def regret_by_strategy(summary: pd.DataFrame, model: str, overall: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per strategy: mean regret over datasets with ``low``/``high``: its 95 % bootstrap interval over datasets
    and steps from ``overall`` (``one_step_overall.csv``, the noise floor included as a row), else (files from
    before intervals) the lowest and highest per-dataset mean. Column ``whiskers`` says which."""
    if overall is not None and len(overall[overall["model"] == model]):
        o = overall[overall["model"] == model]
        keep = ["strategy", "regret", "low", "high", "datasets"] + [c for c in ("vs_floor", "vs_floor_low",
                                                                                 "vs_floor_high") if c in o.columns]
        return o[keep].assign(whiskers="95 % interval").sort_values("regret").reset_index(drop=True)
    s = _of(summary, model)
    g = s.groupby("strategy")["regret"]
    out = pd.DataFrame({"regret": g.mean(), "low": g.min(), "high": g.max(), "datasets": g.size()})
    return out.sort_values("regret").reset_index().assign(whiskers="best and worst dataset")


def full_path_depth(full: pd.DataFrame, model: str) -> pd.DataFrame:
    """The full-path runs' test accuracy at each depth, mean over seeds: dataset, strategy, layers, accuracy,
    seeds."""
    f = full[full["model"] == model]
    cols = [c for c in f.columns if c.startswith("acc_") and c.endswith("_layers")]
    if f.empty or not cols:
        return pd.DataFrame(columns=["dataset", "strategy", "layers", "accuracy", "seeds"])
    long = f.melt(id_vars=["dataset", "strategy", "seed"], value_vars=cols, var_name="col", value_name="accuracy")
    long = long.dropna(subset=["accuracy"])
    long["layers"] = long["col"].str.slice(4, -7).astype(int)
    out = long.groupby(["dataset", "strategy", "layers"]).agg(accuracy=("accuracy", "mean"),
                                                              seeds=("seed", "nunique")).reset_index()
    return out


def full_path_summary(full: pd.DataFrame, model: str, label: Label = str) -> pd.DataFrame:
    """Per dataset and strategy (mean over seeds): maximum accuracy over depth, after KD, the accuracy-to-size
    ratio, the rank after KD; with the training rows and seed count each number stands on."""
    f = full[full["model"] == model]
    if f.empty:
        return pd.DataFrame()
    agg = {c: (c, "mean") for c in ("teacher_accuracy", "max_accuracy_over_depth", "after_kd", "ratio",
                                     "rank_after_kd") if c in f.columns}
    g = f.groupby(["dataset", "strategy"]).agg(seeds=("seed", "nunique"), **agg).reset_index()
    if "train_cap" in f.columns:
        caps = f.groupby(["dataset", "strategy"])["train_cap"].agg(lambda v: ", ".join(sorted({f"{int(x):,}" for x in
                                                                                             v.dropna()})))
        g = g.merge(caps.rename("training rows").reset_index(), on=["dataset", "strategy"])
    sort = ["dataset", "rank_after_kd"] if "rank_after_kd" in g.columns else ["dataset"]
    g = g.sort_values(sort)
    g["dataset"] = [label(d) for d in g["dataset"]]
    g["strategy"] = [theme.strategy_label(k) for k in g["strategy"]]
    return g.rename(columns={"teacher_accuracy": "teacher", "max_accuracy_over_depth": "best over depth",
                             "after_kd": "after KD", "ratio": "acc-to-size ratio", "rank_after_kd": "rank after KD"})


def full_rank_matrix(full: pd.DataFrame, model: str, by_tree: bool = False) -> pd.DataFrame:
    """Rank after KD per dataset (mean over seeds; 1 = most accurate after KD): strategies (rows, best on average
    first) x datasets; ``by_tree``: one column per tree, ``(dataset, seed)``, where a seed's own winner shows."""
    f = full[full["model"] == model] if "rank_after_kd" in full.columns else full.iloc[0:0]
    if f.empty:
        return pd.DataFrame()
    m = f.pivot_table(index="strategy", columns=["dataset", "seed"] if by_tree else "dataset",
                      values="rank_after_kd", aggfunc="mean")
    return m.reindex(m.mean(axis=1).sort_values(kind="stable").index)


def depth_focus(full: pd.DataFrame, dataset: str) -> tuple[set[str], float | None]:
    """What a full-path depth figure draws at first (the oracle, the fusion rankers, random, and the dataset's best
    strategy after KD) and its teacher's accuracy (mean over seeds)."""
    mine = full[full["dataset"] == dataset]
    best = set(mine.sort_values("rank_after_kd")["strategy"].head(1)) if "rank_after_kd" in mine.columns else set()
    teacher = pd.to_numeric(mine.get("teacher_accuracy", pd.Series(dtype=float)), errors="coerce").mean()
    return {"oracle", "random", *FUSION} | best, (float(teacher) if np.isfinite(teacher) else None)


def kd_gain(full: pd.DataFrame, model: str) -> pd.DataFrame:
    """Per strategy: accuracy after KD minus the unpruned teacher's, in points (mean over datasets and seeds), with
    the lowest and highest per-dataset value; what "distillation wins accuracy back" looks like per strategy."""
    f = full[(full["model"] == model)].dropna(subset=["after_kd", "teacher_accuracy"])
    if f.empty:
        return pd.DataFrame(columns=["strategy", "gain", "low", "high", "datasets"])
    per = (f.assign(gap=100.0 * (f["after_kd"] - f["teacher_accuracy"]))
           .groupby(["strategy", "dataset"])["gap"].mean().groupby("strategy"))
    out = pd.DataFrame({"gain": per.mean(), "low": per.min(), "high": per.max(), "datasets": per.size()})
    return out.sort_values("gain", ascending=False).reset_index()


def oracle_path(one_step: pd.DataFrame, summary: pd.DataFrame, model: str) -> pd.DataFrame:
    """From the one-step table (the oracle's own path): per dataset and depth, the best removal's validation
    accuracy (before fine-tuning), and what the fusion rankers and each dataset's winner would have kept at the
    same step (best - regret), mean over seeds. Empty when the files hold no ``best_accuracy`` column."""
    t = one_step[one_step["model"] == model]
    if t.empty or "best_accuracy" not in t.columns:
        return pd.DataFrame(columns=["dataset", "strategy", "layers", "accuracy", "seeds"])
    win = _of(summary, model).sort_values("position").groupby("dataset").head(1)
    keep = {(d, k) for d in t["dataset"].unique() for k in ("oracle", *FUSION)}
    keep |= set(zip(win["dataset"], win["strategy"]))
    t = t[[(d, k) in keep for d, k in zip(t["dataset"], t["strategy"])]]
    t = t.assign(accuracy=t["best_accuracy"] - t["regret_points"] / 100.0, layers=t["n_layers"] - 1)
    return t.groupby(["dataset", "strategy", "layers"]).agg(accuracy=("accuracy", "mean"),
                                                            seeds=("seed", "nunique")).reset_index()


# ------------------------------------------------------------------------------------------- fair baselines
def directions_frame(directions: pd.DataFrame | None, model: str) -> pd.DataFrame:
    """Per single signal (lowest regret first): the registry's a priori end, what leave-one-dataset-out learning
    picked on each dataset, and the mean regret with its 95 % interval of the picked end and of each fixed end."""
    if directions is None:
        return pd.DataFrame()
    d = directions[directions["model"] == model].sort_values("regret")
    rows = []
    for r in d.itertuples():
        n, low = int(r.datasets), int(r.learned_lowest)
        picked = ("lowest" if low == n else "highest" if low == 0 else f"lowest on {low}, highest on {n - low}")
        rows.append({"signal": theme.strategy_label(str(r.strategy)),
                     "a priori (registry)": str(r.registry),
                     f"learned (on the other datasets; {n} folds)": picked,
                     "regret, learned end": _ci(r.regret, r.regret_low, r.regret_high),
                     "regret, lowest first": _ci(r.regret_lowest, r.regret_lowest_low, r.regret_lowest_high),
                     "regret, highest first": _ci(r.regret_highest, r.regret_highest_low, r.regret_highest_high),
                     "regret, registry's end": (_ci(r.regret_lowest, r.regret_lowest_low, r.regret_lowest_high)
                                                if r.registry == "lowest" else
                                                _ci(r.regret_highest, r.regret_highest_low, r.regret_highest_high))})
    return pd.DataFrame(rows)


def side_name(key: str, best: str | None, apriori: str | None = None) -> str:
    """A comparison side's name, saying which signal is the best single one (by the learned end, or by the
    registry's a-priori end)."""
    name = one_step_name(key)
    if best is not None and key == best:
        return f"{name}, the best single signal"
    if apriori is not None and key == apriori:
        return f"{name}, the best single signal by the registry's end"
    return name


def dataset_tests_frame(tests: pd.DataFrame | None, model: str) -> pd.DataFrame:
    """The comparisons over datasets: B − A with the two-level bootstrap, the exact sign-flip test over dataset
    means, how many datasets favour A, the verdict (beyond noise only when both tests say so) and, within noise, the
    datasets x seeds that would separate the observed difference (an estimate, see the page)."""
    if tests is None:
        return pd.DataFrame()
    t = tests[tests["model"] == model]
    rows = []
    for r in t.to_dict("records"):
        best = r.get("best_single") if isinstance(r.get("best_single"), str) else None
        apriori = r.get("best_apriori") if isinstance(r.get("best_apriori"), str) else None
        needed = {k: v for k, v in r.items() if str(k).startswith("needed_")}
        sep = ", ".join(f"{int(v)} × {k.split('_')[1]} seeds" if pd.notna(v) else f"> 1000 × {k.split('_')[1]} seeds"
                        for k, v in needed.items()) if r.get("verdict") == "within noise" and needed else ""
        rows.append({"A": side_name(str(r["a"]), best, apriori), "B": side_name(str(r["b"]), best, apriori),
                     "B − A (points) [95 %]": f"{r['estimate']:+.2f} [{r['low']:+.2f}, {r['high']:+.2f}]",
                     "bootstrap (datasets, steps)": r["bootstrap"], "sign-flip p": round(float(r["sign_flip_p"]), 4),
                     "datasets favouring A": f"{int(r['favour_a'])} of {int(r['datasets'])}",
                     "verdict": r["verdict"], "would be separated at (datasets × seeds)": sep})
    return pd.DataFrame(rows)



# ------------------------------------------------------------------------------------------- full-path tests
#: the stages of the full-path comparisons, in words
FULL_STAGES = {"after_kd": "after KD", "before_kd": "before KD"}
SPREAD = "spread"  # core.studies.full_path_tests.SPREAD


def full_path_name(key: str) -> str:
    """A strategy's name in the full-path comparisons: random is one seeded draw per run (a run removes layers)."""
    return "Random (one seeded draw per run)" if key == "random" else theme.strategy_label(key)


def of_budget(frame: pd.DataFrame | None, model: str, cap: int | None) -> pd.DataFrame:
    if frame is None or frame.empty:
        return pd.DataFrame()
    f = frame[frame["model"] == model]
    return f[f["train_cap"] == cap] if cap is not None else f


def seeds_of(r: dict[str, Any]) -> str:
    low, most = int(r["seeds"]), r.get("seeds_max")
    high = int(most) if most is not None and pd.notna(most) else low
    return f"{low}" if low == high else f"{low}-{high}"


def full_tests_frame(tests: pd.DataFrame | None, model: str, cap: int | None) -> pd.DataFrame:
    """The full-path comparisons of one budget: the spread between strategies against test-row noise, then A − B
    in accuracy points after and before KD (two-level bootstrap interval, exact sign-flip p over dataset means,
    per-tree verdicts, the verdict and, within noise, the datasets x seeds that would separate it)."""
    t = of_budget(tests, model, cap)
    if t.empty:
        return pd.DataFrame()

    rows = []
    t = pd.concat([t[t["a"] == SPREAD], t[t["a"] != SPREAD]])  # whether the choice matters first
    for (a, b), g in t.groupby(["a", "b"], sort=False):
        by = {str(r["stage"]): r for r in g.to_dict("records")}
        after, before = by.get("after_kd"), by.get("before_kd")
        main = after or before
        if main is None:
            continue
        where = f"{int(main['trees'])} ({int(main['datasets'])} × {seeds_of(main)})"
        if a == SPREAD:
            def spread(r: dict[str, Any] | None) -> str:
                return "" if r is None else (f"{r['estimate']:.2f} (noise {r['null_mean']:.2f}, 95 % ≤ "
                                             f"{r['null_high']:.2f}; p = {r['permutation_p']:.4f})")
            rows.append({"A": "the most accurate strategy of each tree", "B": "the least accurate (spread; "
                         f"{count_text(main['strategies'])} strategies)", "A − B after KD (points)": spread(after),
                         "verdict after KD": after["verdict"] if after else "",
                         "A − B before KD (points)": spread(before),
                         "verdict before KD": before["verdict"] if before else "",
                         "test over datasets": "permutation: each test row's outcomes shuffled among the "
                                               "strategies (p in brackets)",
                         "trees (datasets × seeds)": where,
                         "trees beyond noise": f"{int(main['trees_beyond'])} of {int(main['trees'])}",
                         "would be separated at": ""})
            continue

        def cell(r: dict[str, Any] | None) -> str:
            return "" if r is None else f"{r['estimate']:+.2f} [{r['low']:+.2f}, {r['high']:+.2f}]"
        power = main.get("power_short")
        rows.append({"A": full_path_name(str(a)), "B": full_path_name(str(b)),
                     "A − B after KD (points)": cell(after), "verdict after KD": after["verdict"] if after else "",
                     "A − B before KD (points)": cell(before),
                     "verdict before KD": before["verdict"] if before else "",
                     "test over datasets": (f"sign-flip p = {main['sign_flip_p']:.3f} ({int(main['favour_a'])} of "
                                            f"{int(main['datasets'])} favour A; lowest possible "
                                            f"{main['sign_flip_min_p']:.3f})"),
                     "trees (datasets × seeds)": where,
                     "trees beyond noise": (f"A ahead {int(main['trees_a_ahead'])}, behind {int(main['trees_b_ahead'])}"
                                            f" of {int(main['trees'])}"),
                     "would be separated at": (power.replace("would be separated at about ", "").replace(
                         "; a power estimate", "").replace(" (a power estimate)", "")
                         if after is not None and after["verdict"] == "within noise" and isinstance(power, str)
                         else "")})
    return pd.DataFrame(rows)


def tree_differences(trees: pd.DataFrame | None, model: str, cap: int | None, stage: str = "after_kd",
                     a: str = "rf_fusion") -> pd.DataFrame:
    """Per tree, ``a`` minus each other strategy at ``stage`` (accuracy points, paired interval): the rows of the
    full-path figure."""
    t = of_budget(trees, model, cap)
    if t.empty:
        return pd.DataFrame()
    return t[(t["stage"] == stage) & (t["a"] == a)].reset_index(drop=True)
