"""Plot builders: stored tables in, Plotly figures (or SHAP's own matplotlib plots as PNG bytes) out.

Every builder uses the ``prune`` template and the colours of :mod:`ui.theme`, so one strategy or one
signal family has the same colour on every page. Builders never touch streamlit or the store.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from . import theme
from .tables import HeatmapData, ShapRows, pareto_mask

if TYPE_CHECKING:
    from core.fusion import FusionChoice

T = theme.TEMPLATE


def apply_layout(fig: go.Figure, title: str | None = None, height: int = 380, **kw: Any) -> go.Figure:
    fig.update_layout(template=T, title=title, height=height, **kw)
    return fig


def accuracy_axis(fig: go.Figure, values: Any, title: str = "test accuracy", row: int | None = None) -> None:
    """An accuracy y-axis zoomed on the data but never past [0, 1] (differences of a few points show)."""
    vals = pd.to_numeric(pd.Series(np.ravel(np.asarray(values, dtype=object))), errors="coerce").dropna()
    lo, hi = (float(vals.min()), float(vals.max())) if len(vals) else (0.0, 1.0)
    pad = max(0.02, 0.08 * (hi - lo))
    fig.update_yaxes(title=title, range=[max(0.0, lo - pad), min(1.0, hi) + pad])


def error_bars(frame: pd.DataFrame, y: str, low: str, high: str, color: str | None = None) -> dict[str, Any] | None:
    """Plotly ``error_y`` for the points of ``frame``: asymmetric bars from ``low``/``high`` (an interval per
    point, computed by ``core.stats``); None when the frame has no interval columns or none is known."""
    if low not in frame or high not in frame:
        return None
    lo, hi, v = (pd.to_numeric(frame[c], errors="coerce") for c in (low, high, y))
    if not (lo.notna() | hi.notna()).any():
        return None
    return dict(type="data", symmetric=False, array=(hi - v).clip(lower=0).fillna(0).tolist(),
                arrayminus=(v - lo).clip(lower=0).fillna(0).tolist(), thickness=1.5, width=4,
                **({"color": color} if color else {}))


def empty_figure(message: str, height: int = 300) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font=dict(size=theme.FONT_SIZE + 1, color="#6B7280"),
                       xref="paper", yref="paper", x=0.5, y=0.5)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return apply_layout(fig, height=height)


# ---------------------------------------------------------------------------------------- pruning curves
def accuracy_curve(steps: pd.DataFrame, strategy: str, max_removed: int | None = None,
                   title: str = "Accuracy as layers are removed") -> go.Figure:
    """Test accuracy after each step's fine-tuning, with the oracle's view of the same step beside it:
    the validation accuracy of the chosen removal and of the best possible removal, both *before*
    fine-tuning."""
    fig = go.Figure()
    if steps.empty:
        return empty_figure("Waiting for the teacher's accuracy…")
    x = steps["step"].astype(int)
    color = theme.strategy_color(strategy)
    if "test_accuracy" in steps:
        fig.add_trace(go.Scatter(x=x, y=steps["test_accuracy"], mode="lines+markers", name="after fine-tuning (test)",
                                 line=dict(color=color, width=4), marker=dict(size=11),
                                 error_y=error_bars(steps, "test_accuracy", "test_low", "test_high", color),
                                 customdata=steps["test_ci"] if "test_ci" in steps else None,
                                 hovertemplate="%{x} removed<br>test accuracy "
                                 + ("%{customdata}" if "test_ci" in steps else "%{y:.3f}") + "<extra></extra>"))
    pruned = steps[steps["step"] > 0]
    if "oracle_best_accuracy" in pruned and pruned["oracle_best_accuracy"].notna().any():
        fig.add_trace(go.Scatter(x=pruned["step"], y=pruned["oracle_best_accuracy"], mode="lines+markers",
                                 name="oracle: best removal, before tuning (val)",
                                 line=dict(color=theme.strategy_color("oracle"), dash="dash", width=2.5),
                                 marker=dict(symbol="diamond", size=9),
                                 hovertemplate="step %{x}<br>best removal: val %{y:.3f}<extra></extra>"))
    if "chosen_oracle_accuracy" in pruned and pruned["chosen_oracle_accuracy"].notna().any():
        fig.add_trace(go.Scatter(x=pruned["step"], y=pruned["chosen_oracle_accuracy"], mode="lines+markers",
                                 name="this strategy's removal, before tuning (val)",
                                 line=dict(color=color, dash="dot", width=2.5),
                                 marker=dict(size=8, symbol="circle-open"),
                                 hovertemplate="step %{x}<br>chosen removal: val %{y:.3f}<extra></extra>"))
    top = int(max_removed if max_removed is not None else max(int(x.max()), 1))
    fig.update_xaxes(title="layers removed", range=[-0.3, top + 0.3], dtick=1)
    cols = [c for c in ("test_accuracy", "oracle_best_accuracy", "chosen_oracle_accuracy", "test_low", "test_high")
            if c in steps]
    accuracy_axis(fig, steps[cols].to_numpy(), "accuracy")
    return apply_layout(fig, title, height=400, legend=dict(orientation="h", y=-0.25, x=0))


def curves_by_strategy(frame: pd.DataFrame, y: str = "test_accuracy", title: str = "Accuracy vs depth"
                       ) -> go.Figure:
    """One line per run, coloured by strategy; ``frame`` has run_id, strategy, step and ``y``."""
    if frame.empty or y not in frame:
        return empty_figure("No finished steps yet")
    fig = go.Figure()
    shown: set[str] = set()
    for run_id, g in frame.sort_values("step").groupby("run_id", sort=False):
        strategy = str(g["strategy"].iloc[0])
        fig.add_trace(go.Scatter(
            x=g["step"], y=g[y], mode="lines+markers", name=theme.strategy_label(strategy),
            legendgroup=strategy, showlegend=strategy not in shown,
            line=dict(color=theme.strategy_color(strategy), dash=theme.strategy_dash(strategy), width=3),
            error_y=error_bars(g, y, "test_low", "test_high", theme.strategy_color(strategy))
            if y == "test_accuracy" else None,
            marker=dict(size=8), customdata=np.stack([g["n_layers"]], axis=-1) if "n_layers" in g else None,
            hovertemplate=f"{theme.strategy_label(strategy)}<br>%{{x}} removed<br>{y} %{{y:.3f}}"
                          f"<extra>{run_id[-6:]}</extra>"))
        shown.add(strategy)
    fig.update_xaxes(title="layers removed", dtick=1)
    bars = [c for c in ("test_low", "test_high") if c in frame and y == "test_accuracy"]
    accuracy_axis(fig, frame[[y, *bars]].to_numpy(), y.replace("_", " "))
    return apply_layout(fig, title, height=420)


# ---------------------------------------------------------------------------------------- signals
def _signal_tick(key: str) -> str:
    fam = theme.strategy_family(key)
    return f"<span style='color:{theme.family_color(fam)}'><b>{theme.strategy_label(key)}</b></span>"


def signal_heatmap(data: HeatmapData, title: str | None = None, chosen: int | None = None,
                   height: int | None = None) -> go.Figure:
    """Signals (rows, coloured by family) x original layers; colour = value normalised per signal,
    hover = raw value. Removed layers are blank columns; the chosen layer is outlined."""
    if not data.keys:
        return empty_figure("No signal values stored for this step")
    labels = [_signal_tick(k) for k in data.keys]
    raw_text = np.where(np.isfinite(data.raw), np.vectorize(lambda v: f"{v:.4g}")(np.nan_to_num(data.raw)), "removed")
    fig = go.Figure(go.Heatmap(
        z=data.normalised, x=[f"L{j}" for j in data.layers], y=labels, colorscale=theme.HEATMAP_SCALE,
        zmin=0, zmax=1, customdata=raw_text, xgap=2, ygap=2,
        colorbar=dict(title=dict(text="per-signal<br>min → max"), thickness=14),
        hovertemplate="%{y}<br>layer %{x}<br>raw value %{customdata}<br>normalised %{z:.2f}<extra></extra>"))
    if chosen is not None and chosen in data.layers:
        j = data.layers.index(chosen)
        fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=-0.5, y1=len(data.keys) - 0.5,
                      line=dict(color=theme.FIXED_STRATEGY_COLORS["rf_fusion"], width=4))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(side="top", title=None)
    return apply_layout(fig, title, height=height or (90 + 32 * len(data.keys)), margin=dict(l=10, r=10, t=60, b=10))


#: where a point's label may go (Plotly ``textposition``), with the label centre's offset from the point in
#: units of one label (width, height); tried in this order
_LABEL_SPOTS = (("top center", 0.0, 1.0), ("bottom center", 0.0, -1.0), ("middle right", 1.0, 0.0),
                ("middle left", -1.0, 0.0), ("top right", 0.9, 0.9), ("top left", -0.9, 0.9),
                ("bottom right", 0.9, -0.9), ("bottom left", -0.9, -0.9))


def label_positions(x: Sequence[float], y: Sequence[float], label_w: float = 0.08, label_h: float = 0.06
                    ) -> list[str]:
    """A ``textposition`` per point so that labels of clustered points do not overlap each other or the
    markers: greedy, in the axes' unit square (``label_w``/``label_h``: one label's size there); a point whose
    every spot collides takes the least crowded one."""
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    if len(xs) == 0:
        return []

    def unit(v: np.ndarray) -> np.ndarray:
        finite = v[np.isfinite(v)]
        lo, hi = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
        return np.nan_to_num((v - lo) / (hi - lo) if hi > lo else np.full_like(v, 0.5), nan=0.5)

    ux, uy = unit(xs), unit(ys)
    placed: list[tuple[float, float]] = []
    out = []
    for i in np.argsort(-uy, kind="stable"):  # top to bottom: upper labels keep the default "top center"
        best, best_hits = _LABEL_SPOTS[0], None
        for spot in _LABEL_SPOTS:
            cx, cy = ux[i] + spot[1] * label_w, uy[i] + spot[2] * label_h
            hits = sum(abs(cx - px) < label_w and abs(cy - py) < label_h for px, py in placed)
            hits += sum(abs(cx - ux[j]) < label_w / 2 and abs(cy - uy[j]) < label_h / 2
                        for j in range(len(ux)) if j != i)
            if best_hits is None or hits < best_hits:
                best, best_hits = spot, hits
            if hits == 0:
                break
        placed.append((ux[i] + best[1] * label_w, uy[i] + best[2] * label_h))
        out.append((int(i), best[0]))
    return [pos for _, pos in sorted(out)]


def predicted_vs_measured(choice: FusionChoice, title: str | None = None) -> go.Figure:
    """For each candidate layer of a fusion choice: the ranker's predicted score (x) against the oracle's
    measured validation accuracy after removing it (y). The chosen layer is the magenta star; the oracle's
    best is ringed. A trained ranker's default target is an accuracy gap, shown in points; without a
    ranker (first step) the score is the signal vote."""
    cands, pred, meas, chosen = choice.candidates, choice.scores, choice.measured, choice.chosen_layer
    if not cands or meas is None:
        return empty_figure("This strategy stores no predictions")
    trained = choice.trained and choice.target == "gap"
    scale = 100.0 if trained else 1.0
    xtitle = ("predicted gap to the best (points)" if trained
              else "predicted change of the predictions (0 = least, -1 = most; scaled KL)"
              if choice.trained and choice.target == "kl" else "signal vote (no ranker yet)")
    cands, pred, meas = list(cands), np.asarray(pred, float) * scale, np.asarray(meas, float)
    best = set(np.flatnonzero(meas >= np.nanmax(meas) - 1e-12).tolist())
    colors = [theme.FIXED_STRATEGY_COLORS["rf_fusion"] if c == chosen else theme.PRIMARY for c in cands]
    fig = go.Figure(go.Scatter(
        x=pred, y=meas, mode="markers+text", text=[f"L{c}" for c in cands], textposition=label_positions(pred, meas),
        marker=dict(size=[22 if c == chosen else 14 for c in cands], color=colors,
                    symbol=["star" if c == chosen else "circle" for c in cands],
                    line=dict(width=[3 if i in best else 0 for i in range(len(cands))], color="#1B1F24")),
        hovertemplate="layer %{text}<br>predicted %{x:.3f}<br>measured val acc %{y:.3f}<extra></extra>",
        showlegend=False))
    fig.update_xaxes(title=xtitle)
    fig.update_yaxes(title="measured: val accuracy without it")
    return apply_layout(fig, title, height=380)


def oracle_bars(oracle: pd.DataFrame, chosen: int | None, title: str | None = None) -> go.Figure:
    """Validation accuracy after removing each remaining layer (no fine-tuning); chosen layer highlighted."""
    if oracle is None or oracle.empty:
        return empty_figure("Oracle not computed for this step")
    colors = [theme.FIXED_STRATEGY_COLORS["rf_fusion"] if int(l) == chosen else theme.PRIMARY
              for l in oracle["original_layer"]]
    fig = go.Figure(go.Bar(x=[f"L{int(l)}" for l in oracle["original_layer"]], y=oracle["accuracy"],
                           marker_color=colors, text=[f"{a:.3f}" for a in oracle["accuracy"]], textposition="outside",
                           hovertemplate="without %{x}: val accuracy %{y:.3f}<extra></extra>"))
    fig.update_yaxes(title="val accuracy without the layer", range=[0, 1.1])
    return apply_layout(fig, title, height=340)


def agreement_bars(frame: pd.DataFrame, title: str = "Agreement with the oracle (Spearman ρ, mean over steps)"
                   ) -> go.Figure:
    if frame.empty or frame["mean_rho"].isna().all():
        return empty_figure("Not enough profiled steps")
    frame = frame.sort_values("mean_rho")
    fig = go.Figure(go.Bar(
        y=[theme.strategy_label(k) for k in frame["signal"]], x=frame["mean_rho"], orientation="h",
        marker_color=[theme.family_color(theme.strategy_family(k)) for k in frame["signal"]],
        customdata=np.stack([frame["median_rho"], frame["top1"], frame["steps"]], axis=-1),
        hovertemplate="%{y}<br>mean ρ %{x:.2f}<br>median ρ %{customdata[0]:.2f}<br>first pick among oracle's "
                      "best: %{customdata[1]:.0%}<br>steps %{customdata[2]}<extra></extra>"))
    fig.add_vline(x=0, line_color="#6B7280")
    fig.update_xaxes(title="ρ(signal's remove-first order, oracle)", range=[-1, 1])
    return apply_layout(fig, title, height=90 + 34 * len(frame))


# ---------------------------------------------------------------------------------------- fusion / SHAP
def importance_bars(names: Sequence[str], values: Sequence[float], title: str, xtitle: str,
                    signed: bool = False) -> go.Figure:
    """Horizontal bars per feature (a signal), coloured by family, largest at the top."""
    if len(names) == 0:
        return empty_figure("Nothing to show")
    order = np.argsort(np.abs(values) if signed else values)
    names = [names[i] for i in order]
    vals = np.asarray(values, float)[order]
    fig = go.Figure(go.Bar(
        y=[theme.strategy_label(n) for n in names], x=vals, orientation="h",
        marker_color=[theme.family_color(theme.strategy_family(n)) for n in names],
        marker_line=dict(width=0), hovertemplate="%{y}: %{x:.4f}<extra></extra>"))
    if signed:
        fig.add_vline(x=0, line_color="#6B7280")
    fig.update_xaxes(title=xtitle)
    return apply_layout(fig, title, height=90 + 30 * len(names))


def shap_explanation(rows: ShapRows, index: Sequence[int] | int | None = None, scale: float = 1.0) -> Any:
    """A ``shap.Explanation`` built from stored values (the ranker is not re-run); ``scale`` multiplies
    values and base values (e.g. 100: an accuracy gap shown in percentage points)."""
    import shap  # noqa: PLC0415 deferred: cost (shap)

    idx = slice(None) if index is None else index
    names = [theme.strategy_label(n) for n in rows.feature_names]
    return shap.Explanation(values=rows.values[idx] * scale, base_values=rows.base_values[idx] * scale,
                            data=rows.data[idx], feature_names=names)


def _png(draw: Any, width: float = 9.0, height: float = 6.0) -> bytes:
    import matplotlib  # noqa: PLC0415 deferred: cost (matplotlib)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 deferred: cost (matplotlib), after the Agg backend is set

    plt.rcParams.update({"font.size": 13})
    fig = plt.figure(figsize=(width, height))
    try:
        draw()
        fig = plt.gcf()
        fig.set_size_inches(width, height)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        return buf.getvalue()
    finally:
        plt.close("all")


def shap_beeswarm_png(rows: ShapRows, scale: float = 1.0) -> bytes:
    """SHAP's own beeswarm over every (step, layer) row of a run."""
    import shap  # noqa: PLC0415 deferred: cost (shap)

    exp = shap_explanation(rows, scale=scale)
    return _png(lambda: shap.plots.beeswarm(exp, max_display=len(rows.feature_names), show=False), 9.5, 6.5)


def shap_waterfall_png(rows: ShapRows, i: int, scale: float = 1.0) -> bytes:
    """SHAP's own waterfall for one (step, layer) row: how each signal moved the score from the base."""
    import shap  # noqa: PLC0415 deferred: cost (shap)

    exp = shap_explanation(rows, i, scale)
    return _png(lambda: shap.plots.waterfall(exp, max_display=len(rows.feature_names), show=False), 9.5, 6.5)


def quality_lines(frame: pd.DataFrame, title: str = "Ranker quality per step") -> go.Figure:
    """Spearman with the oracle and top-1 hit per step, one line per fusion run."""
    if frame.empty or "ranker_spearman" not in frame:
        return empty_figure("No ranker quality stored yet")
    fig = go.Figure()
    for run_id, g in frame.groupby("run_id", sort=False):
        strategy = str(g["strategy"].iloc[0])
        color = theme.strategy_color(strategy)
        fig.add_trace(go.Scatter(x=g["step"], y=g["ranker_spearman"], mode="lines+markers",
                                 name=f"{theme.strategy_label(strategy)} · ρ", line=dict(color=color, width=3),
                                 hovertemplate="step %{x}: ρ %{y:.2f}<extra>" + run_id[-6:] + "</extra>"))
        if "ranker_top1" in g:
            hit = g["ranker_top1"].astype(float)
            fig.add_trace(go.Scatter(x=g["step"], y=hit, mode="markers", name=f"{theme.strategy_label(strategy)}"
                                     " · top-1 hit", marker=dict(symbol="square", size=13, color=color,
                                                                  line=dict(color="#1B1F24", width=1)),
                                     hovertemplate="step %{x}: top-1 hit %{y:.0f}<extra></extra>"))
    fig.update_yaxes(range=[-1.05, 1.1], title="Spearman ρ / hit (1 = yes)")
    fig.update_xaxes(title="step", dtick=1)
    return apply_layout(fig, title, height=360, legend=dict(orientation="h", y=-0.3))


# ---------------------------------------------------------------------------------------- compare
def kd_bars(frame: pd.DataFrame, title: str = "Before and after distillation") -> go.Figure:
    if frame.empty:
        return empty_figure("No run has finished distillation yet")
    fig = go.Figure()
    for when, pattern in (("before KD", ""), ("after KD", "/")):
        g = frame[frame["when"] == when]
        fig.add_trace(go.Bar(
            x=[f"{theme.strategy_label(s)}<br><sub>{d} · {r[-6:]}</sub>"
               for s, d, r in zip(g["strategy"], g["dataset"], g["run_id"])],
            y=g["accuracy"], name=when, marker_color=[theme.strategy_color(s) for s in g["strategy"]],
            marker_pattern_shape=pattern, opacity=0.55 if when == "before KD" else 1.0,
            error_y=error_bars(g, "accuracy", "low", "high", "#374151"),
            text=[f"{a:.3f}" for a in g["accuracy"]], textposition="outside",
            hovertemplate=f"{when}: %{{y:.3f}}<extra></extra>"))
    fig.update_layout(barmode="group")
    crowded = frame["run_id"].nunique() > 4  # long labels would overlap: tilt them
    fig.update_xaxes(tickangle=-35 if crowded else 0, automargin=True)
    if crowded:
        fig.update_traces(textposition="none")  # values on hover: printed values would collide
    fig.update_yaxes(title="test accuracy", range=[0, 1.08])
    return apply_layout(fig, title, height=500 if crowded else 420)


def pareto_plot(points: pd.DataFrame, x: str, xtitle: str, title: str, log_x: bool = False) -> go.Figure:
    """Accuracy against a cost (parameters or latency) for every model the runs produced; the Pareto
    front (no other model is both cheaper and more accurate) is drawn as a step line."""
    pts = points.dropna(subset=[x, "accuracy"])
    if pts.empty:
        return empty_figure("No measured models yet")
    fig = go.Figure()
    symbols = {"teacher": "diamond-wide", "pruned": "circle", "after KD": "star"}
    for strategy, g in pts.groupby("strategy", sort=False):  # one trace per strategy: stages by symbol
        fig.add_trace(go.Scatter(
            x=g[x], y=g["accuracy"], mode="markers", name=theme.strategy_label(strategy),
            marker=dict(color=theme.strategy_color(strategy), symbol=[symbols.get(s, "circle") for s in g["stage"]],
                        size=[15 if s != "pruned" else 11 for s in g["stage"]], line=dict(color="white", width=1)),
            error_y=error_bars(g, "accuracy", "low", "high", theme.strategy_color(strategy)),
            customdata=np.stack([g["stage"], g["layers_removed"], g["dataset"], g["run_id"].str[-6:]], axis=-1),
            hovertemplate="%{customdata[0]} · %{customdata[1]} removed · %{customdata[2]}<br>" + xtitle +
                          " %{x:,.4g}<br>accuracy %{y:.3f}<extra>%{customdata[3]}</extra>"))
    mask = pareto_mask(pts[x].to_numpy(), pts["accuracy"].to_numpy())
    front = pts[mask].sort_values(x)
    fig.add_trace(go.Scatter(x=front[x], y=front["accuracy"], mode="lines", name="Pareto front",
                             line=dict(color="#1B1F24", dash="dash", width=1.5, shape="hv"), hoverinfo="skip"))
    fig.update_xaxes(title=xtitle, type="log" if log_x else "linear")
    accuracy_axis(fig, pts[[c for c in ("accuracy", "low", "high") if c in pts]].to_numpy())
    return apply_layout(fig, title, height=440, legend=dict(orientation="h", y=-0.22, x=0))


# ---------------------------------------------------------------------------------------- setup
def class_balance(frame: pd.DataFrame, label_names: Sequence[str], title: str = "Class balance") -> go.Figure:
    counts = frame["label"].value_counts().reindex(range(len(label_names)), fill_value=0)
    fig = go.Figure(go.Bar(x=[str(n) for n in label_names], y=counts.to_numpy(), marker_color=theme.PRIMARY,
                           text=counts.to_numpy(), textposition="outside",
                           hovertemplate="%{x}: %{y} rows<extra></extra>"))
    fig.update_yaxes(title="rows")
    return apply_layout(fig, title, height=340)


def text_lengths(words: pd.Series, max_length: int | None = None, title: str = "Text length (words)"
                 ) -> go.Figure:
    fig = go.Figure(go.Histogram(x=words, nbinsx=40, marker_color=theme.FAMILY_COLORS["weight"],
                                 hovertemplate="%{x} words: %{y} rows<extra></extra>"))
    if max_length:
        fig.add_vline(x=max_length, line_dash="dash", line_color="#D81B60",
                      annotation_text=f"max length {max_length} tokens", annotation_position="top right")
    fig.update_xaxes(title="words per text")
    fig.update_yaxes(title="rows")
    return apply_layout(fig, title, height=340)


def per_layer_params(counts: Sequence[int], title: str = "Parameters per encoder layer") -> go.Figure:
    fig = go.Figure(go.Bar(x=[f"L{i}" for i in range(len(counts))], y=list(counts), marker_color=theme.PRIMARY,
                           hovertemplate="%{x}: %{y:,} parameters<extra></extra>"))
    fig.update_yaxes(title="parameters")
    return apply_layout(fig, title, height=300)


def deploy_speedups(rows: Sequence[dict[str, Any]] | pd.DataFrame,
                    title: str = "Speedup of the compressed model over its teacher") -> go.Figure:
    """The deploy benchmark's speedups per input shape (batch × tokens): one bar per runtime it measured
    (PyTorch, ONNX Runtime, int8), the ideal (teacher layers / compressed layers) as a dashed line, 1× dotted."""
    frame = pd.DataFrame(rows)
    shapes = [f"{b} × {s}" for b, s in zip(frame["batch"], frame["seq"])]
    fig = go.Figure()
    for col, name in (("speedup_torch", "PyTorch"), ("speedup_ort", "ONNX Runtime"),
                      ("speedup_int8", "ONNX Runtime int8")):
        if col in frame:
            fig.add_bar(x=shapes, y=frame[col], name=name)
    fig.add_scatter(x=shapes, y=frame["ideal"], mode="lines+markers", name="ideal (encoder only)",
                    line=dict(dash="dash", color="#6B7280"))
    fig.add_hline(y=1.0, line_dash="dot", line_color="#9CA3AF")
    return apply_layout(fig, title, barmode="group", xaxis_title="batch × tokens",
                        yaxis_title="speedup (×, same runtime)")
