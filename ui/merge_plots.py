"""Figures of the FFN merging page: stored merge tables in, Plotly figures out (no streamlit, no store).

* :func:`similarity_heatmap`: layers x layers linear CKA of the FFN activations, the merged window outlined.
* :func:`window_scores`: every candidate window's score, the chosen one highlighted.
* :func:`prune_vs_merge`: accuracy against parameters removed for both methods, one point per stage
  (no tuning -> fine-tuned -> distilled), the teacher at zero.
* :func:`merge_runs_overview`: the final model of every merge run (and its matched pruning) on one axis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from . import theme
from .plots import accuracy_axis, apply_layout, empty_figure, error_bars

METHOD_COLORS: dict[str, str] = {"merge": "#00838F", "prune": theme.FIXED_STRATEGY_COLORS["oracle"],
                                 "teacher": theme.PRIMARY}
METHOD_LABELS: dict[str, str] = {"merge": "FFN merging", "prune": "Layer pruning (greedy oracle)",
                                 "teacher": "Teacher"}
STAGE_LABELS: dict[str, str] = {"teacher": "teacher", "no_tuning": "no tuning", "finetuned": "fine-tuned",
                                "distilled": "distilled"}
STAGE_SYMBOLS: dict[str, str] = {"teacher": "diamond-wide", "no_tuning": "circle-open", "finetuned": "circle",
                                 "distilled": "star"}


def similarity_heatmap(similarity: pd.DataFrame, window: Sequence[int] | None = None,
                       title: str | None = "FFN similarity between layers (linear CKA)") -> go.Figure:
    """``similarity`` as stored (column ``layer`` plus one column per layer, original indices). Bright
    blocks on the diagonal are runs of layers whose FFNs compute alike: the mergeable ones."""
    if similarity is None or similarity.empty:
        return empty_figure("The FFN similarity appears once the activations are recorded")
    frame = similarity.set_index("layer") if "layer" in similarity else similarity
    layers = [int(c) for c in frame.columns]
    z = frame.to_numpy(dtype=float)
    ticks = [f"L{i}" for i in layers]
    fig = go.Figure(go.Heatmap(z=z, x=ticks, y=ticks, colorscale=theme.HEATMAP_SCALE, zmin=0, zmax=1, xgap=1,
                               ygap=1, colorbar=dict(title=dict(text="CKA"), thickness=14),
                               text=np.vectorize(lambda v: f"{v:.2f}")(z), texttemplate="%{text}",
                               textfont=dict(size=max(9, theme.FONT_SIZE - 5)),
                               hovertemplate="%{y} vs %{x}<br>CKA %{z:.3f}<extra></extra>"))
    if window:
        inside = [layers.index(i) for i in window if i in layers]
        if inside:
            a, b = min(inside) - 0.5, max(inside) + 0.5
            fig.add_shape(type="rect", x0=a, x1=b, y0=a, y1=b,
                          line=dict(color=theme.FIXED_STRATEGY_COLORS["rf_fusion"], width=4))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain")
    fig.update_xaxes(side="top", constrain="domain")
    return apply_layout(fig, title, height=520, margin=dict(l=10, r=10, t=70, b=10))


def window_scores(windows: pd.DataFrame, selection: str,
                  title: str | None = "Candidate windows") -> go.Figure:
    """One bar per candidate window (in layer order): validation accuracy after merging without tuning
    (``accuracy``) or mean CKA inside the window (``similarity``/``fixed``); rank 1 is highlighted."""
    if windows is None or windows.empty:
        return empty_figure("No windows scored yet")
    by_acc = selection == "accuracy" and "val_accuracy" in windows
    col = "val_accuracy" if by_acc else "mean_cka"
    frame = windows.sort_values("start")
    colors = [METHOD_COLORS["merge"] if int(r) == 1 else "#B0BEC5" for r in frame["rank"]]
    fig = go.Figure(go.Bar(x=[f"L{w}" for w in frame["window"]], y=frame[col], marker_color=colors,
                           text=[f"{v:.3f}" for v in frame[col]], textposition="outside",
                           customdata=np.stack([frame["mean_cka"], frame["rank"]], axis=-1),
                           hovertemplate="window %{x}<br>score %{y:.3f}<br>mean CKA %{customdata[0]:.3f}"
                                         "<br>rank %{customdata[1]}<extra></extra>"))
    fig.update_xaxes(title="window (first–last layer)", type="category")
    if by_acc:
        accuracy_axis(fig, frame[col], title="validation accuracy, merged, no tuning")
    else:
        fig.update_yaxes(title="mean CKA inside the window", range=[0, 1.08])
    return apply_layout(fig, title, height=400, showlegend=False)


def prune_vs_merge(comparison: pd.DataFrame, title: str | None = "Accuracy vs parameters removed") -> go.Figure:
    """The stored comparison table (method x stage). Each method is a path from the teacher through its
    stages, so the cost of the cut and what fine-tuning and distillation win back are both visible."""
    if comparison is None or comparison.empty:
        return empty_figure("The comparison appears when the run finishes")
    fig = go.Figure()
    teacher = comparison[comparison["method"] == "teacher"]
    for method in ("merge", "prune"):
        g = comparison[comparison["method"] == method]
        if g.empty:
            continue
        path = pd.concat([teacher, g], ignore_index=True)
        fig.add_trace(go.Scatter(
            x=path["params_removed"] / 1e6, y=path["test_accuracy"], mode="lines+markers",
            name=METHOD_LABELS[method], line=dict(color=METHOD_COLORS[method], width=3,
                                                  dash="solid" if method == "merge" else "dash"),
            marker=dict(size=[14 if s != "no_tuning" else 11 for s in path["stage"]],
                        symbol=[STAGE_SYMBOLS.get(s, "circle") for s in path["stage"]],
                        color=METHOD_COLORS[method], line=dict(color=METHOD_COLORS[method], width=2)),
            text=[STAGE_LABELS.get(s, s) for s in path["stage"]],
            error_y=error_bars(path, "test_accuracy", "test_low", "test_high", METHOD_COLORS[method]),
            customdata=np.stack([path["n_layers"], path["unique_ffns"], path["params_total"] / 1e6], axis=-1),
            hovertemplate="%{text}<br>%{x:.2f} M removed (%{customdata[2]:.2f} M left)<br>test accuracy %{y:.3f}"
                          "<br>%{customdata[0]} layers, %{customdata[1]} unique FFNs<extra>" +
                          METHOD_LABELS[method] + "</extra>"))
    for stage in ("no_tuning", "finetuned", "distilled"):  # legend entries for the stage symbols
        if stage in set(comparison["stage"]):
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=STAGE_LABELS[stage],
                                     marker=dict(size=12, symbol=STAGE_SYMBOLS[stage], color="#6B7280",
                                                 line=dict(color="#6B7280", width=2))))
    fig.update_xaxes(title="parameters removed (millions)", rangemode="tozero")
    bounds = [c for c in ("test_accuracy", "test_low", "test_high") if c in comparison]
    accuracy_axis(fig, comparison[bounds].to_numpy())
    return apply_layout(fig, title, height=440, legend=dict(orientation="h", y=-0.2, x=0))


def merge_runs_overview(rows: Sequence[Mapping[str, Any]],
                        title: str | None = "Every merge run on this model and dataset") -> go.Figure:
    """``rows``: one dict per (run, method) with ``params_removed``, ``test_accuracy``, ``label`` and
    ``method``; the teacher as ``method="teacher"``. A quick look at which method wins at which budget."""
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        return empty_figure("No finished merge runs yet")
    fig = go.Figure()
    for method in ("teacher", "merge", "prune"):
        g = frame[frame["method"] == method].sort_values("params_removed")
        if g.empty:
            continue
        fig.add_trace(go.Scatter(
            x=g["params_removed"] / 1e6, y=g["test_accuracy"], mode="lines+markers" if method != "teacher"
            else "markers", name=METHOD_LABELS[method],
            line=dict(color=METHOD_COLORS[method], width=2, dash="solid" if method == "merge" else "dash"),
            marker=dict(size=14, color=METHOD_COLORS[method],
                        symbol="diamond-wide" if method == "teacher" else "circle"),
            error_y=error_bars(g, "test_accuracy", "test_low", "test_high", METHOD_COLORS[method]),
            text=g["label"], hovertemplate="%{text}<br>%{x:.2f} M removed<br>test accuracy %{y:.3f}<extra></extra>"))
    fig.update_xaxes(title="parameters removed (millions)", rangemode="tozero")
    accuracy_axis(fig, frame[[c for c in ("test_accuracy", "test_low", "test_high") if c in frame]].to_numpy())
    return apply_layout(fig, title, height=400, legend=dict(orientation="h", y=-0.25, x=0))
