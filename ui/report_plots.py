"""The compression chart that *NLP with Transformers* (chapter 8) made standard: test accuracy against latency,
bubble area the model's size on disk, one bubble per model, here one per step of a run from the teacher to the
distilled student, joined in order. Points come from :func:`core.runs.handout.compression_points`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from . import theme
from .plots import accuracy_axis, apply_layout, empty_figure, error_bars, label_positions

#: the largest bubble's diameter in pixels
MAX_BUBBLE_PX = 64
MIN_BUBBLE_PX = 10


def megabytes(n: float) -> str:
    return f"{n / 1e6:.2f} MB" if n < 1e8 else f"{n / 1e6:.0f} MB"


def compression_bubbles(points: pd.DataFrame, title: str = "Accuracy vs latency, bubble area = model size"
                        ) -> go.Figure:
    """One trace per run (coloured by strategy): its teacher (diamond), each step's fine-tuned model (circle)
    and the distilled student (star) at (latency, test accuracy) with the accuracy's interval as an error bar;
    bubble area proportional to the model's bytes (safetensors)."""
    pts = points.dropna(subset=["latency_ms", "accuracy", "bytes"]) if not points.empty else points
    if pts.empty:
        return empty_figure("No step of these runs stored its latency and size")
    size_ref = 2.0 * float(pts["bytes"].max()) / MAX_BUBBLE_PX ** 2  # plotly's area mode: diameter² ∝ value / ref
    symbols = {"teacher": "diamond", "pruned": "circle", "distilled": "star"}
    several = pts["run_id"].nunique() > 1
    fig = go.Figure()
    for run_id, g in pts.groupby("run_id", sort=False):
        strategy = str(g["strategy"].iloc[0])
        color = theme.strategy_color(strategy)
        ci = [f"{a:.3f} [{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) and np.isfinite(hi) else f"{a:.3f}"
              for a, lo, hi in zip(g["accuracy"], g["low"].astype(float), g["high"].astype(float))]
        text = [{"teacher": "teacher", "distilled": "KD"}.get(s, str(n).split(": ")[-1]) + f" · {int(layers)} L"
                for s, n, layers in zip(g["stage"], g["name"], g["n_layers"])]
        name = str(g["strategy_name"].iloc[0]) + (f" · {str(run_id)[-6:]}" if several else "")
        fig.add_trace(go.Scatter(
            x=g["latency_ms"], y=g["accuracy"], mode="lines+markers+text", name=name,
            text=text if not several else None,
            textposition=label_positions(g["latency_ms"], g["accuracy"], 0.12, 0.08) if not several else None,
            line=dict(color=color, width=1.5, dash="dot"),
            marker=dict(size=g["bytes"].astype(float), sizemode="area", sizeref=size_ref, sizemin=MIN_BUBBLE_PX / 2,
                        color=color, opacity=0.75, symbol=[symbols.get(s, "circle") for s in g["stage"]],
                        line=dict(color="#1B1F24", width=1)),
            error_y=error_bars(g, "accuracy", "low", "high", color),
            customdata=np.stack([g["name"], g["n_layers"].astype(str), ci, [megabytes(b) for b in g["bytes"]],
                                 [f"{int(p):,}" if pd.notna(p) else "" for p in g["params"]]], axis=-1),
            hovertemplate="%{customdata[0]} · %{customdata[1]} layers<br>test accuracy %{customdata[2]}<br>"
                          "latency %{x:.1f} ms<br>size %{customdata[3]} · %{customdata[4]} parameters"
                          f"<extra>{str(run_id)[-6:]}</extra>"))
    fig.update_xaxes(title="CPU latency of one 32 × 32 batch, measured while the run trained (ms)")
    accuracy_axis(fig, pts[["accuracy", "low", "high"]].to_numpy())
    low, high = fig.layout.yaxis.range
    fig.update_yaxes(range=[low, high + 0.12 * max(high - low, 0.2)])  # room for the top bubbles and their labels
    fig.update_traces(cliponaxis=False)  # a bubble at the edge is drawn whole
    fig.add_annotation(text="bubble area ∝ model size on disk; ◆ teacher, ● after each step's fine-tuning, "
                            "★ distilled; error bars: 95 % intervals", showarrow=False, xref="paper", yref="paper",
                       x=0, y=-0.28, xanchor="left", font=dict(size=theme.FONT_SIZE - 3, color="#4B5563"))
    return apply_layout(fig, title, height=480, legend=dict(orientation="h", y=-0.4, x=0),
                        margin=dict(l=60, r=20, t=60, b=120))
