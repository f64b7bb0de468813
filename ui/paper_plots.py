"""The Paper check's figures, drawn with Plotly from the reference files.

The files are read by :mod:`ui.paper_data`, reshaped by :mod:`ui.paper_tables` and put in words by
:mod:`ui.paper_prose`; their names are re-exported here, so ``from ui import paper_plots as pp`` reaches all of
it. Nothing here computes a ranker or calls streamlit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from . import theme
from .paper_data import (  # noqa: F401  (re-exported: the page and Home read them as pp.*)
    FLOOR_LABEL,
    FULL_COLUMNS,
    FUSION,
    MAKE,
    NOISE_FLOOR,
    NUMERIC,
    ONE_STEP_COLUMNS,
    OVERALL_COLUMNS,
    SUMMARY_COLUMNS,
    SUMMARY_FILE,
    Label,
    Reference,
    ReferenceFilesError,
    direction_line,
    load_reference,
    reference_dir,
    short,
    shown_path,
)
from .paper_prose import HOME_CLAIMS, first_open_lines  # noqa: F401
from .paper_tables import (  # noqa: F401
    RANDOM_EXPECTED,
    claims_frame,
    claims_shown,
    dataset_tests_frame,
    depth_focus,
    directions_frame,
    full_path_depth,
    full_path_name,
    full_path_summary,
    full_rank_matrix,
    full_tests_frame,
    kd_gain,
    metrics_table,
    noise_floor,
    one_step_matrix,
    one_step_name,
    oracle_path,
    rank_matrix,
    regret_by_strategy,
    strategy_order,
    tree_differences,
    winners,
)
from .plots import accuracy_axis, apply_layout, empty_figure


def rank_heatmap(matrix: pd.DataFrame, label: Label = str, title: str = "Rank per dataset (1 = lowest regret)",
                 name: Label = theme.strategy_label) -> go.Figure:
    """Strategies (rows) x datasets (columns), coloured by rank: dark = first. Columns ``(dataset, seed)`` (a
    matrix per tree) read "TREC questions · s1"."""
    if matrix.empty:
        return empty_figure("No strategies in the one-step table")
    z = matrix.to_numpy(dtype=float)
    text = [["" if np.isnan(v) else f"{v:.3g}" for v in row] for row in z]  # a mean rank over seeds: 3.5

    def column(d: Any) -> str:  # "TREC questions (6 coarse types)" -> "TREC questions"; a tree adds its seed
        return f"{short(label(d[0]))} · s{int(d[1])}" if isinstance(d, tuple) else short(label(d))
    names = [name(k) for k in matrix.index]
    columns = [column(d) for d in matrix.columns]
    hover = [f"{label(d[0])}, seed {int(d[1])}" if isinstance(d, tuple) else label(d) for d in matrix.columns]
    fig = go.Figure(go.Heatmap(
        z=z, x=columns, y=names, text=text, customdata=[hover] * len(names),
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
    fig = strategy_bars(frame, "regret", title, "regret (accuracy points)", "mean regret", higher_is_better=False,
                        name=one_step_name)
    floor = frame[frame["strategy"] == NOISE_FLOOR]
    if len(floor):
        f = floor.iloc[0]
        fig.add_vrect(x0=float(f["low"]), x1=float(f["high"]), fillcolor="#999", opacity=0.15, line_width=0)
        fig.add_vline(x=float(f["regret"]), line=dict(color="#444", dash="dash", width=1.5),
                      annotation_text=f"noise floor {f['regret']:.2f}", annotation_position="top right")
    return fig


def strategy_bars(frame: pd.DataFrame, value: str, title: str, xtitle: str, what: str,
                  higher_is_better: bool, name: Label = theme.strategy_label) -> go.Figure:
    """One horizontal bar per strategy (``value``: a mean over datasets), the best on top; whiskers from ``low`` to
    ``high`` (its best and worst dataset)."""
    if frame.empty:
        return empty_figure("No strategies to show")
    frame = frame.sort_values(value, ascending=higher_is_better)  # horizontal bars: the best ends up on top
    names = [FLOOR_LABEL if k == NOISE_FLOOR else name(k) for k in frame["strategy"]]
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


def tree_difference_figure(per_tree: pd.DataFrame, tests: pd.DataFrame | None, label: Label = str,
                           title: str = "RF fusion minus each other strategy, per tree") -> go.Figure:
    """The full-path comparisons of one stage: per other strategy (x), RF fusion's accuracy minus its own on each
    tree (one marker per dataset and seed, whiskers: the tree's paired 95 % interval over its test rows), and the
    mean over datasets with its two-level bootstrap interval (black diamond). Above 0: RF fusion more accurate."""
    if per_tree.empty:
        return empty_figure("No paired full-path trees at this budget")
    order = list(dict.fromkeys(per_tree["b"]))
    names = {k: full_path_name(k) for k in order}
    fig = go.Figure()
    datasets = sorted(per_tree["dataset"].unique())
    for ds in datasets:
        g = per_tree[per_tree["dataset"] == ds]
        fig.add_trace(go.Scatter(
            x=[names[k] for k in g["b"]], y=g["estimate"], mode="markers", name=short(label(ds)),
            marker=dict(size=10, symbol=[["circle", "square", "triangle-up"][int(s) % 3] for s in g["seed"]]),
            error_y=dict(type="data", symmetric=False, array=g["high"] - g["estimate"],
                         arrayminus=g["estimate"] - g["low"], thickness=1.2, width=3),
            customdata=np.stack([g["seed"], g["low"], g["high"], g["p"]], axis=-1),
            hovertemplate=f"{label(ds)}, seed %{{customdata[0]}}<br>RF fusion − %{{x}}: %{{y:+.2f}} points "
                          "[%{customdata[1]:+.2f}, %{customdata[2]:+.2f}]<br>McNemar p %{customdata[3]:.3f}"
                          "<extra></extra>"))
    if tests is not None and not tests.empty:
        m = tests[tests["b"].isin(order)].set_index("b").reindex(order).dropna(subset=["estimate"])
        fig.add_trace(go.Scatter(
            x=[names[k] for k in m.index], y=m["estimate"], mode="markers", name="mean over datasets (95 %)",
            marker=dict(size=15, symbol="diamond", color="#111", line=dict(color="white", width=1)),
            error_y=dict(type="data", symmetric=False, array=m["high"] - m["estimate"],
                         arrayminus=m["estimate"] - m["low"], color="#111", thickness=2.5, width=8),
            customdata=np.stack([m["low"], m["high"], m["sign_flip_p"], m["datasets"]], axis=-1),
            hovertemplate="mean over %{customdata[3]} datasets: RF fusion − %{x}: %{y:+.2f} points<br>bootstrap "
                          "[%{customdata[0]:+.2f}, %{customdata[1]:+.2f}], sign-flip p %{customdata[2]:.3f}"
                          "<extra></extra>"))
    fig.add_hline(y=0, line=dict(color="#444", dash="dash", width=1.2))
    fig.update_layout(scattermode="group", scattergap=0.5)
    fig.update_xaxes(title="RF fusion minus …", tickmode="array", tickvals=list(names.values()))
    fig.update_yaxes(title="points (> 0: RF fusion ahead)", zeroline=False)
    return apply_layout(fig, title, height=440)
