"""The Playground page's figures: predictions side by side, the prediction forming layer by layer, each layer's change
on the text, and the error analysis (confusion matrices, per-class accuracy, accuracy by length). Builders take
what :mod:`core.playground` returns and never touch streamlit or the store."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import theme
from .plots import apply_layout

#: one colour per model, the same in every figure of the page
TEACHER = theme.PRIMARY
COMPRESSED = theme.FAMILY_COLORS["fusion"]
TEACHER_OFF = theme.FAMILY_COLORS["attention"]


def probability_bars(label_names: Sequence[str], rows: Sequence[tuple[str, Sequence[float], str]],
                     title: str = "Class probabilities") -> go.Figure:
    """Grouped horizontal bars: per class, each model's probability. ``rows`` are (model name, probabilities,
    colour)."""
    fig = go.Figure()
    names = [str(n) for n in label_names]
    for name, probs, color in rows:
        fig.add_bar(y=names, x=list(probs), name=name, orientation="h", marker_color=color,
                    text=[f"{p:.2f}" for p in probs], textposition="outside", cliponaxis=False)
    fig.update_xaxes(title="probability", range=[0, 1.12])
    fig.update_yaxes(autorange="reversed")
    return apply_layout(fig, title, height=max(220, 70 + 38 * len(names) * max(1, len(rows))), barmode="group",
                        legend=dict(orientation="h", y=-0.25))


def formation_lines(lens: pd.DataFrame, label_names: Sequence[str], removed: Sequence[int] = (),
                    title: str = "How the prediction forms, layer by layer (our definition)") -> go.Figure:
    """Each class's probability as read after the embeddings and after each layer that ran (a row of ``lens`` per
    depth); the x axis names the layer just run."""
    fig = go.Figure()
    x = list(lens["after"])
    for i, name in enumerate(label_names):
        fig.add_scatter(x=x, y=lens[str(name)], mode="lines+markers", name=str(name),
                        line=dict(width=3, color=_class_color(i, len(label_names))))
    fig.update_xaxes(title="read after layer", type="category", tickangle=0,
                     ticktext=["emb." if v == "embeddings" else v for v in x], tickvals=x)
    fig.update_yaxes(title="probability", range=[0, 1.02])
    if removed:
        title += "<br><sup>layers switched off: " + ", ".join(map(str, removed)) + "</sup>"
    return apply_layout(fig, title, height=400, legend=dict(orientation="h", y=-0.28, x=0),
                        margin=dict(b=110))


def change_bars(change: pd.DataFrame, title: str = "Each layer's change on this text (1 − cosine)") -> go.Figure:
    """Block Influence of each layer that ran, on this text."""
    fig = go.Figure()
    fig.add_bar(x=[str(v) for v in change["layer"]], y=change["change"], marker_color=theme.FAMILY_COLORS["baseline"],
                text=[f"{v:.3f}" for v in change["change"]], textposition="outside", cliponaxis=False)
    fig.update_xaxes(title="layer", type="category")
    fig.update_yaxes(title="1 − cos(input, output)", rangemode="tozero")
    return apply_layout(fig, title, height=360, showlegend=False)


def _class_color(i: int, n: int) -> str:
    palette = ["#3949AB", "#D81B60", "#17A589", "#E4572E", "#D4A000", "#8E44AD", "#1F77B4", "#7F8C8D"]
    return palette[i % len(palette)] if n <= len(palette) else f"hsl({int(360 * i / n)}, 60%, 45%)"


def confusion_pair(label_names: Sequence[str], teacher: np.ndarray, compressed: np.ndarray, compressed_name: str,
                   title: str = "Confusion matrices on the test split") -> go.Figure:
    """The two confusion matrices side by side (rows: true class, columns: predicted), one colour scale."""
    names = [str(n) for n in label_names]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("teacher", compressed_name), horizontal_spacing=0.12)
    zmax = max(int(teacher.max()), int(compressed.max()), 1)
    for col, matrix in ((1, teacher), (2, compressed)):
        fig.add_heatmap(z=matrix, x=names, y=names, colorscale="Blues", zmin=0, zmax=zmax, showscale=col == 2,
                        text=matrix, texttemplate="%{text}", hovertemplate="true %{y}<br>predicted %{x}<br>"
                        "%{z} examples<extra></extra>", row=1, col=col)
        fig.update_xaxes(title="predicted", row=1, col=col, type="category")
        fig.update_yaxes(title="true" if col == 1 else None, autorange="reversed", row=1, col=col, type="category")
    side = 260 + 28 * len(names)
    return apply_layout(fig, title, height=min(side, 900))


def class_accuracy(per_class: pd.DataFrame, compressed_name: str,
                   title: str = "Accuracy per class (95 % intervals)") -> go.Figure:
    """Each class's accuracy (recall) for both models with Wilson intervals as error bars."""
    return _paired_bars(per_class, "class", compressed_name, title)


def length_accuracy(by_length: pd.DataFrame, compressed_name: str,
                    title: str = "Accuracy by text length (thirds of the test split)") -> go.Figure:
    frame = by_length.assign(group=[f"{t}<br>{w} words" for t, w in zip(by_length["third"], by_length["words"])])
    return _paired_bars(frame, "group", compressed_name, title)


def _paired_bars(frame: pd.DataFrame, key: str, compressed_name: str, title: str) -> go.Figure:
    fig = go.Figure()
    for model, name, color in (("teacher", "teacher", TEACHER), ("compressed", compressed_name, COMPRESSED)):
        acc = frame[f"{model}_accuracy"].to_numpy(dtype=float)
        fig.add_bar(x=[str(v) for v in frame[key]], y=acc, name=name, marker_color=color,
                    error_y=dict(type="data", symmetric=False, array=frame[f"{model}_high"].to_numpy(dtype=float) - acc,
                                 arrayminus=acc - frame[f"{model}_low"].to_numpy(dtype=float), thickness=1.5),
                    customdata=np.stack([frame["n"], frame[f"{model}_low"], frame[f"{model}_high"]], axis=1),
                    hovertemplate="%{x}: %{y:.3f} [%{customdata[1]:.3f}, %{customdata[2]:.3f}], "
                                  "n=%{customdata[0]}<extra>" + name + "</extra>")
    fig.update_yaxes(title="accuracy", range=[0, 1.05])
    fig.update_xaxes(type="category", tickangle=0)
    return apply_layout(fig, title, height=400, barmode="group", legend=dict(orientation="h", y=-0.3, x=0),
                        margin=dict(b=110))
