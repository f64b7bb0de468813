"""The Paper check's data and figures: the shipped reference results (``data/reference/``, written by
``python -m core study paper``) read and checked, reshaped for the page's tables, and drawn with Plotly.

Nothing here computes a ranker or calls streamlit: :func:`load_reference` reads files (raising
:class:`ReferenceFilesError` with what to do, never a traceback), the other functions are pandas transforms
and figure builders.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from . import theme
from .plots import accuracy_axis, apply_layout, empty_figure

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
           "datasets")
OVERALL_COLUMNS = ("model", "strategy", "regret", "low", "high", "datasets")
NOISE_FLOOR = "noise_floor"  # the noise floor's strategy key in the files (core.studies.paper.NOISE_FLOOR)
FLOOR_LABEL = "Noise floor (oracle of the other half)"
FUSION = ("rf_fusion", "lr_fusion")
Label = Callable[[str], str]


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
        from core.studies.paper import seeds_text

        s = self.summary[(self.summary["model"] == model) & (self.summary["strategy"] != "oracle")]
        return seeds_text(int(s["seeds"].min()), int(s["seeds"].max())) if len(s) else seeds_text(0)


def reference_dir() -> Path:
    """``PRUNE_REFERENCE_DIR`` when set, else the shipped folder (``core.studies.paper.REFERENCE_DIR``)."""
    env = os.environ.get("PRUNE_REFERENCE_DIR")
    if env:
        return Path(env)
    from core.studies import paper

    return Path(paper.REFERENCE_DIR)


def _csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise ReferenceFilesError(f"`{path}` cannot be read as a table ({type(exc).__name__}). {MAKE}") from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ReferenceFilesError(f"`{path}` lacks the column(s) {missing}: it is damaged or from another "
                                  f"version. {MAKE}")
    for c in NUMERIC:
        if c in frame.columns:
            if frame[c].dtype == bool:
                frame[c] = frame[c].astype(float)
            values = pd.to_numeric(frame[c], errors="coerce")
            if values.isna().sum() > frame[c].isna().sum():
                raise ReferenceFilesError(f"`{path}`: column {c!r} holds values that are not numbers. {MAKE}")
            frame[c] = values
    if frame.empty:
        raise ReferenceFilesError(f"`{path}` has no rows. {MAKE}")
    return frame


def load_reference(folder: str | Path | None = None) -> Reference:
    """Read and check the reference files in ``folder`` (default :func:`reference_dir`)."""
    from core.studies.paper import CLAIMS_FILE, FULL_PATH_FILE, ONE_STEP_FILE

    folder = Path(folder) if folder is not None else reference_dir()
    needed = [folder / ONE_STEP_FILE, folder / SUMMARY_FILE, folder / CLAIMS_FILE]
    missing = [p.name for p in needed if not p.is_file()]
    if missing:
        raise ReferenceFilesError(f"The reference results are not in `{folder}` (missing: {', '.join(missing)}). "
                                  f"{MAKE}")
    one_step = _csv(folder / ONE_STEP_FILE, ONE_STEP_COLUMNS)
    summary = _csv(folder / SUMMARY_FILE, SUMMARY_COLUMNS)
    full = _csv(folder / FULL_PATH_FILE, FULL_COLUMNS) if (folder / FULL_PATH_FILE).is_file() else None
    try:
        raw = json.loads((folder / CLAIMS_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ReferenceFilesError(f"`{folder / CLAIMS_FILE}` is not valid JSON ({exc}). {MAKE}") from exc
    claims = raw.get("claims") if isinstance(raw, dict) else None
    if not isinstance(claims, list) or not all(isinstance(c, dict) and "paper" in c and "ours" in c for c in claims):
        raise ReferenceFilesError(f"`{folder / CLAIMS_FILE}` has no list of claims with 'paper' and 'ours'. {MAKE}")
    meta = {k: v for k, v in raw.items() if k != "claims"}
    from core.studies.paper import OVERALL_FILE

    overall = _csv(folder / OVERALL_FILE, OVERALL_COLUMNS) if (folder / OVERALL_FILE).is_file() else None
    return Reference(folder, one_step, summary, full, claims, meta, overall)


# ------------------------------------------------------------------------------------------------ tables
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
             "Measurement": c.get("measure", ""), "Budget": budget(c), "Seeds": _span(c),
             "Datasets": c.get("datasets")} for c in claims]
    return pd.DataFrame(rows)


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
    m.index = [FLOOR_LABEL if k == NOISE_FLOOR else theme.strategy_label(k) for k in m.index]
    m.columns = [label(d) for d in m.columns]
    return m


def metrics_table(summary: pd.DataFrame, model: str, label: Label = str) -> pd.DataFrame:
    """Every (dataset, strategy): regret with spread, top-1 hit rate, Spearman, seeds, steps, position."""
    s = _of(summary, model).sort_values(["dataset", "position"])
    out = pd.DataFrame({"dataset": [label(d) for d in s["dataset"]],
                        "strategy": [theme.strategy_label(k) for k in s["strategy"]],
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
        row = {"dataset": label(str(ds)), "winner": theme.strategy_label(str(best["strategy"])),
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


def full_rank_matrix(full: pd.DataFrame, model: str) -> pd.DataFrame:
    """Rank after KD per dataset (mean over seeds; 1 = most accurate after KD): strategies (rows, best on average
    first) x datasets."""
    f = full[full["model"] == model] if "rank_after_kd" in full.columns else full.iloc[0:0]
    if f.empty:
        return pd.DataFrame()
    m = f.pivot_table(index="strategy", columns="dataset", values="rank_after_kd", aggfunc="mean")
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


# ------------------------------------------------------------------------------------------------ figures
def rank_heatmap(matrix: pd.DataFrame, label: Label = str, title: str = "Rank per dataset (1 = lowest regret)"
                 ) -> go.Figure:
    """Strategies (rows) x datasets (columns), coloured by rank: dark = first."""
    if matrix.empty:
        return empty_figure("No strategies in the one-step table")
    z = matrix.to_numpy(dtype=float)
    text = [["" if np.isnan(v) else f"{v:.3g}" for v in row] for row in z]  # a mean rank over seeds: 3.5
    names = [theme.strategy_label(k) for k in matrix.index]
    columns = [label(d).split(" (")[0] for d in matrix.columns]  # "TREC questions (6 coarse types)" -> "TREC questions"
    fig = go.Figure(go.Heatmap(
        z=z, x=columns, y=names, text=text, customdata=[[label(d) for d in matrix.columns]] * len(names),
        texttemplate="%{text}", colorscale=theme.HEATMAP_SCALE, reversescale=True, zmin=1,
        zmax=float(np.nanmax(z)) if np.isfinite(z).any() else 1, colorbar=dict(title="rank"),
        hovertemplate="%{y}<br>%{customdata}: rank %{z}<extra></extra>"))
    # every strategy and dataset labelled (plotly thins crowded category ticks by default)
    fig.update_yaxes(autorange="reversed", tickmode="array", tickvals=names, ticktext=names)
    fig.update_xaxes(tickmode="array", tickvals=columns, ticktext=columns, tickangle=-35)
    return apply_layout(fig, title, height=max(380, 30 * len(matrix) + 200))


def regret_bars(frame: pd.DataFrame, title: str = "Regret per strategy, averaged over datasets") -> go.Figure:
    """One bar per strategy (mean regret over datasets); whiskers: the 95 % interval (or, for files from before
    intervals, the best to the worst dataset). The noise floor, when the files have one, is a grey bar of its own
    and a dashed line with its interval shaded: bars inside the band are as good as the measurement can tell."""
    fig = strategy_bars(frame, "regret", title, "regret (accuracy points)", "mean regret", higher_is_better=False)
    floor = frame[frame["strategy"] == NOISE_FLOOR]
    if len(floor):
        f = floor.iloc[0]
        fig.add_vrect(x0=float(f["low"]), x1=float(f["high"]), fillcolor="#999", opacity=0.15, line_width=0)
        fig.add_vline(x=float(f["regret"]), line=dict(color="#444", dash="dash", width=1.5),
                      annotation_text=f"noise floor {f['regret']:.2f}", annotation_position="top right")
    return fig


def strategy_bars(frame: pd.DataFrame, value: str, title: str, xtitle: str, what: str,
                  higher_is_better: bool) -> go.Figure:
    """One horizontal bar per strategy (``value``: a mean over datasets), the best on top; whiskers from ``low`` to
    ``high`` (its best and worst dataset)."""
    if frame.empty:
        return empty_figure("No strategies to show")
    frame = frame.sort_values(value, ascending=higher_is_better)  # horizontal bars: the best ends up on top
    names = [FLOOR_LABEL if k == NOISE_FLOOR else theme.strategy_label(k) for k in frame["strategy"]]
    colors = ["#9e9e9e" if k == NOISE_FLOOR else theme.strategy_color(k) for k in frame["strategy"]]
    spread = str(frame["whiskers"].iloc[0]) if "whiskers" in frame.columns and len(frame) else "datasets"
    between = "95 % interval" if spread.startswith("95") else "datasets: from"
    fig = go.Figure(go.Bar(
        y=names, x=frame[value], orientation="h", marker_color=colors,
        error_x=dict(type="data", symmetric=False, array=frame["high"] - frame[value],
                     arrayminus=frame[value] - frame["low"], color="#555"),
        customdata=np.stack([frame["low"], frame["high"], frame["datasets"]], axis=-1),
        hovertemplate=f"%{{y}}<br>{what} %{{x:.2f}} points<br>{between} %{{customdata[0]:.2f}} to "
                      "%{customdata[1]:.2f} (%{customdata[2]} datasets)<extra></extra>"))
    fig.update_xaxes(title=xtitle, rangemode="tozero")
    return apply_layout(fig, title, height=max(360, 26 * len(frame) + 120))


def depth_figure(frame: pd.DataFrame, title: str, ytitle: str, focus: set[str] | None = None,
                 teacher: float | None = None) -> go.Figure:
    """Accuracy against the number of layers left, one line per strategy; the oracle thick and dashed. With
    ``focus``, only those strategies are drawn at first (the others one legend click away: 18 lines are
    unreadable); ``teacher`` draws the unpruned model's accuracy as a dotted line."""
    if frame.empty:
        return empty_figure("No measured depth for this dataset")
    fig = go.Figure()
    order = sorted(frame["strategy"].unique(), key=lambda k: (k != "oracle", k not in FUSION, k))
    for key in order:
        g = frame[frame["strategy"] == key].sort_values("layers", ascending=False)
        oracle = key == "oracle"
        fig.add_trace(go.Scatter(
            visible=True if focus is None or key in focus else "legendonly",
            x=g["layers"], y=g["accuracy"], mode="lines+markers", name=theme.strategy_label(key),
            line=dict(color=theme.strategy_color(key), dash=theme.strategy_dash(key), width=5 if oracle else 2.5),
            marker=dict(size=10 if oracle else 7), customdata=g["seeds"],
            hovertemplate=f"{theme.strategy_label(key)}<br>%{{x}} layers: %{{y:.3f}} "
                          "(mean of %{customdata} seed(s))<extra></extra>"))
    if teacher is not None and np.isfinite(teacher):
        fig.add_hline(y=teacher, line=dict(color="#444", dash="dot", width=1.5),
                      annotation_text=f"teacher {teacher:.3f}", annotation_position="bottom left")
    fig.update_xaxes(title="layers left", autorange="reversed", dtick=1)
    if focus is None:
        accuracy_axis(fig, pd.concat([frame["accuracy"], pd.Series([teacher] if teacher is not None else [])]), ytitle)
    else:  # plotly's autorange follows the lines on show, so one that collapses zooms out only when added
        fig.update_yaxes(title=ytitle, autorange=True)
    return apply_layout(fig, title, height=400)


#: the claims Home shows on first open, in this order (one-step from the shipped bank; full path where measured)
HOME_CLAIMS = ("rf_first", "rf_first_full", "rf_beats_lr", "no_universal_signal", "boundary_layers",
               "kd_beats_teacher")


def first_open_lines(bank: Any | None, bank_problem: str | None, ref: Reference | None,
                     ref_problem: str | None, label: Label) -> list[str]:
    """Markdown bullets for Home: what the shipped bank holds (fusion learns from it before the first run) and
    the paper's claims next to ours (one-step, and the full path where measured), each with its measurement, seed
    and dataset count (and a full-path claim with its budget: it is smaller than the app's)."""
    from core.studies.paper import seeds_text

    lines = []
    if bank is not None:
        cov = bank.coverage()
        names = ", ".join(label(d) for d in sorted(cov["dataset"].unique()))
        seeds = sorted(int(s) for s in bank.rows["seed"].unique())
        m = bank.manifest
        made = (f"{m.get('precision', 'fp32')}, " + ("leak-free splits" if m.get("split_version", 1) >= 2 else
                                                     "splits from before the leak fix")
                + (", per-example oracle outcomes" if m.get("outcomes") else ""))
        lines.append(f"**Profile bank** ({made}): {len(bank.rows):,} layer-steps of "
                     f"{', '.join(sorted(cov['model'].unique()))} on {cov['dataset'].nunique()} dataset(s) ({names}), "
                     f"seed(s) {', '.join(map(str, seeds))}. The fusion rankers train on it from your first step, "
                     "never on the dataset being pruned.")
    else:
        lines.append(f"**No profile bank** ({bank_problem}): the fusion rankers start from the signal vote.")
    if ref is None:
        lines.append(f"**Paper check**: {ref_problem}")
        return lines
    shown: set[str] = set()
    for claim in sorted((c for c in ref.claims if c.get("key") in HOME_CLAIMS),
                        key=lambda c: HOME_CLAIMS.index(c["key"])):
        full = claim.get("measure") == "full path"
        where = (f"{claim.get('measure', '?')}, {seeds_text(claim.get('seeds', 0), claim.get('seeds_max'))}, "
                 f"{claim.get('datasets', '?')} "
                 f"dataset(s)" + (f"; {str(claim.get('budget')).split(';')[0]}" if full and claim.get("seeds") else ""))
        paper = "" if claim["paper"] in shown else f"*Paper:* {claim['paper']}  \n"
        shown.add(claim["paper"])
        lines.append(f"{paper}*Here* ({where}): {claim['ours']}")
    return lines
