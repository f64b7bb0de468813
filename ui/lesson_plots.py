"""The lesson's own figures (the others are the pages' builders, reused): the readings as a frame the Playground's
formation chart reads, the oracle's reliability by validation rows, the validation accuracy around each step's
fine-tuning, and the guess's cost on every seed. Builders never touch streamlit or the store."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.lesson.guesses import LayerReveal
from core.lesson.readings import Reading
from core.runs.handout import StepStory
from core.signals import SIGNALS

from . import theme
from .plots import apply_layout, empty_figure
from .tables import HeatmapData

SCORE_NAMES = {"accuracy": "accuracy", "kl": "KL to the unpruned model", "loss": "loss"}


def lens_frame(reading: Reading, label_names: Sequence[str]) -> pd.DataFrame:
    """A shipped reading in the shape of :class:`core.playground.LayerTrace`'s ``lens``."""
    frame = pd.DataFrame(list(reading.lens), columns=[str(n) for n in label_names])
    frame.insert(0, "after", list(reading.after))
    frame.insert(1, "depth", range(len(frame)))
    frame["predicted"] = frame[[str(n) for n in label_names]].idxmax(axis=1)
    return frame


def reliability_lines(curve: pd.DataFrame | None, marked: int | None = None) -> go.Figure:
    """Spearman of the step-1 oracle's order between two seeds and (projected to n rows) between two halves, by
    validation rows, for accuracy and KL."""
    if curve is None or curve.empty:
        return empty_figure("The reliability study's file is not shipped here")
    fig = go.Figure()
    for score, color in (("accuracy", theme.PRIMARY), ("kl", theme.FAMILY_COLORS["fusion"])):
        part = curve[curve["score"] == score].sort_values("val_rows")
        if part.empty:
            continue
        name = SCORE_NAMES[score]
        fig.add_scatter(x=part["val_rows"], y=part["spearman_seeds"], mode="lines+markers", name=f"{name}: two seeds",
                        line=dict(color=color, width=3))
        fig.add_scatter(x=part["val_rows"], y=part["spearman_n"], mode="lines+markers",
                        name=f"{name}: two halves (projected to n rows)", line=dict(color=color, width=2, dash="dot"))
    sizes = sorted(int(v) for v in curve["val_rows"].unique())
    if marked is not None:
        fig.add_vline(x=marked, line=dict(color="#9CA3AF", dash="dash"))
        fig.add_annotation(x=np.log10(marked), y=0.05, text=f"the app's default: {marked:,} rows", showarrow=False,
                           xanchor="left", xshift=6, font=dict(color="#6B7280"))
    fig.update_xaxes(title="validation rows the oracle measures on", type="log", tickvals=sizes,
                     ticktext=[f"{v:,}" for v in sizes])
    fig.update_yaxes(title="Spearman ρ of the order", range=[0, 1.02])
    return apply_layout(fig, "Does the oracle's order of the removals repeat?", height=400,
                        legend=dict(orientation="h", y=-0.3, x=0), margin=dict(b=120))


def recovery_bars(stories: Sequence[StepStory], shown: int | None = None) -> go.Figure:
    """Per step: validation accuracy right after the removal and after fine-tuning, with their intervals."""
    if not stories:
        return empty_figure("No step of this run is stored")
    x = [f"step {s.step}: −L{s.removed}" for s in stories]
    fig = go.Figure()
    for name, pick, color in (("right after the removal", lambda s: s.chosen_val, "#9CA3AF"),
                              ("after fine-tuning", lambda s: s.val_after, theme.PRIMARY)):
        values = [pick(s) for s in stories]
        y = [v.accuracy if v is not None else None for v in values]
        hi = [(v.interval.high - v.accuracy) if v is not None and v.interval is not None else 0 for v in values]
        lo = [(v.accuracy - v.interval.low) if v is not None and v.interval is not None else 0 for v in values]
        fig.add_bar(x=x, y=y, name=name, marker_color=color,
                    error_y=dict(type="data", symmetric=False, array=hi, arrayminus=lo, thickness=1.5, width=4),
                    marker_line=dict(width=[3 if s.step == shown else 0 for s in stories], color="#111827"))
    ys = [v for s in stories for v in (s.chosen_val, s.val_after) if v is not None]
    low = min((v.interval.low if v.interval else v.accuracy) for v in ys) if ys else 0.0
    fig.update_yaxes(title="validation accuracy", range=[max(0.0, low - 0.05), 1.0])
    return apply_layout(fig, "Each step: the removal's cost, then fine-tuning's recovery", height=380,
                        barmode="group", legend=dict(orientation="h", y=-0.25, x=0))


def seed_costs(reveal: LayerReveal, here: str) -> go.Figure:
    """The guessed layer's regret where it was guessed (``here``) and on the bank's other seeds, with intervals."""
    rows = [(here, reveal.guess.regret_points, reveal.guess.regret)]
    rows += [(f"bank, seed {s.seed}", s.regret_points, s.regret) for s in reveal.seeds]
    fig = go.Figure(go.Bar(
        x=[r[0] for r in rows], y=[r[1] for r in rows], marker_color=[theme.PRIMARY] + ["#9CA3AF"] * len(reveal.seeds),
        text=[f"{r[1]:.1f}" for r in rows], textposition="outside", cliponaxis=False,
        error_y=dict(type="data", symmetric=False, thickness=1.5, width=4,
                     array=[(100 * r[2].high - r[1]) if r[2] is not None else 0 for r in rows],
                     arrayminus=[(r[1] - 100 * r[2].low) if r[2] is not None else 0 for r in rows])))
    fig.update_yaxes(title="regret (accuracy points)", rangemode="tozero")
    return apply_layout(fig, f"Your pick L{reveal.guess.layer}: its cost against the best removal, seed by seed",
                        height=340, showlegend=False)


def pick_heatmap(data: HeatmapData, title: str, picked: int | None = None) -> go.Figure:
    """The step's signals as a grid of tiles one can click (a Plotly heatmap cannot be selected; a scatter of square
    markers can): x the layer (``L3``), y the signal, colour its value normalised across the layers."""
    xs, ys, zs, raw = [], [], [], []
    for i, key in enumerate(data.keys):
        for j, layer in enumerate(data.layers):
            if np.isfinite(data.normalised[i, j]):
                xs.append(f"L{layer}")
                ys.append(SIGNALS[key].display_name if key in SIGNALS else key)
                zs.append(float(data.normalised[i, j]))
                raw.append(f"{data.raw[i, j]:.4g}")
    fig = go.Figure(go.Scatter(
        x=xs, y=ys, mode="markers", customdata=raw,
        marker=dict(symbol="square", size=27, color=zs, colorscale=theme.HEATMAP_SCALE, cmin=0, cmax=1,
                    line=dict(width=0), colorbar=dict(title=dict(text="per-signal<br>min → max"), thickness=14)),
        selected=dict(marker=dict(opacity=1.0)), unselected=dict(marker=dict(opacity=1.0)),
        hovertemplate="%{y}<br>layer %{x}<br>raw value %{customdata}<br>normalised %{marker.color:.2f}"
                      "<br><b>click to pick this layer</b><extra></extra>"))
    fig.update_xaxes(side="top", type="category", categoryorder="array",
                     categoryarray=[f"L{j}" for j in data.layers], showgrid=False)
    fig.update_yaxes(type="category", autorange="reversed", showgrid=False)
    if picked is not None and picked in data.layers:
        j = data.layers.index(picked)
        fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=-0.5, y1=len(data.keys) - 0.5,
                      line=dict(color=theme.FIXED_STRATEGY_COLORS["rf_fusion"], width=4))
    return apply_layout(fig, title, height=90 + 32 * len(data.keys), clickmode="event+select", dragmode=False,
                        margin=dict(l=10, r=10, t=70, b=10))
