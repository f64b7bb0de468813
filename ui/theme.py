"""One colour mapping for the whole app: per signal family and per strategy, plus the Plotly template.

Every page colours a strategy with :func:`strategy_color` and a family with :func:`family_color`, so
"gradient" is the same blue on the Live, Signals, Fusion and Compare pages. Strategies of one family get
shades of the family colour; baselines are greys, the oracle is black, the fusion rankers magenta.
Fonts are sized for a projector. A strategy's name and family come from the signal registry
(``core.signals``); the oracle and the fusion rankers, which are not in it, are named here.
"""

from __future__ import annotations

import colorsys

import plotly.graph_objects as go
import plotly.io as pio

from core.signals import BASELINES, FAMILIES, SIGNALS

FAMILY_COLORS: dict[str, str] = {
    "activation": "#E4572E",
    "mutual_information": "#8E44AD",
    "gradient": "#1F77B4",
    "weight": "#17A589",
    "attention": "#D4A000",
    "baseline": "#7F8C8D",
    "fusion": "#D81B60",
    "oracle": "#1B1F24",
    "other": "#95A5A6",
}

#: names of the colour groups that are not signal families (those are named by ``core.signals.FAMILIES``)
GROUP_LABELS: dict[str, str] = {
    "baseline": "Baseline",
    "fusion": "Fusion ranker",
    "oracle": "Oracle",
    "other": "Other",
}

FIXED_STRATEGY_COLORS: dict[str, str] = {
    "rf_fusion": "#D81B60",
    "lr_fusion": "#F48FB1",
    "oracle": "#1B1F24",
    "random": "#AAB7B8",
    "top_down": "#7F8C8D",
    "block_influence": "#4D5656",
}

#: line dash per family in curves, so colour-blind viewers can still tell groups apart
FAMILY_DASH: dict[str, str] = {"baseline": "dot", "oracle": "dash", "fusion": "solid"}

FUSION_LABELS: dict[str, str] = {"rf_fusion": "Random-forest fusion", "lr_fusion": "Linear-regression fusion"}
ORACLE_LABEL = "Oracle (measured best)"

PRIMARY = "#3949AB"
TEMPLATE = "prune"
FONT_SIZE = 16

# a sequential scale for heatmaps that reads well on a projector (low = pale, high = dark)
HEATMAP_SCALE = "Viridis"


def family_color(family: str) -> str:
    return FAMILY_COLORS.get(family, FAMILY_COLORS["other"])


def family_label(family: str) -> str:
    return FAMILIES.get(family) or GROUP_LABELS.get(family) or family.replace("_", " ").capitalize()


def strategy_family(key: str) -> str:
    """The colour group of a strategy: a signal's family, or baseline / oracle / fusion / other."""
    if key in FUSION_LABELS:
        return "fusion"
    if key == "oracle":
        return "oracle"
    info = SIGNALS.get(key) or BASELINES.get(key)
    return info.family if info is not None else "other"


def strategy_label(key: str) -> str:
    """A strategy's (or signal's) display name: the registry's, or ours for the oracle and fusion."""
    if key in FUSION_LABELS:
        return FUSION_LABELS[key]
    if key == "oracle":
        return ORACLE_LABEL
    info = SIGNALS.get(key) or BASELINES.get(key)
    return info.display_name if info is not None else key.replace("_", " ").capitalize()


def _shade(hex_color: str, index: int, count: int) -> str:
    """The ``index``-th of ``count`` shades of ``hex_color`` (darker to lighter, same hue)."""
    r, g, b = (int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5))
    h, l, s = colorsys.rgb_to_hls(r, g, b)
    if count <= 1:
        return hex_color
    lo, hi = max(0.22, l - 0.16), min(0.72, l + 0.16)
    new_l = lo + (hi - lo) * index / (count - 1)
    r, g, b = colorsys.hls_to_rgb(h, new_l, s)
    return f"#{round(r * 255):02X}{round(g * 255):02X}{round(b * 255):02X}"


def strategy_color(key: str) -> str:
    """The colour of a strategy on every page (a shade of its family's colour)."""
    if key in FIXED_STRATEGY_COLORS:
        return FIXED_STRATEGY_COLORS[key]

    family = strategy_family(key)
    members = [k for k, info in SIGNALS.items() if info.family == family]
    if key in members:
        return _shade(family_color(family), members.index(key), len(members))
    return family_color(family)


def strategy_dash(key: str) -> str:
    return FAMILY_DASH.get(strategy_family(key), "solid")


def _register_template() -> None:
    # plotly_white's layout plus its defaults for the three trace types we draw only: the full template
    # carries defaults for ~25 trace types, and every figure validates a copy of it (twice as slow per chart)
    base = pio.templates["plotly_white"]
    tpl = go.layout.Template(layout=base.layout, data={k: base.data[k] for k in ("scatter", "bar", "heatmap")})
    tpl.layout.font = dict(size=FONT_SIZE, family="'Source Sans 3', 'Source Sans Pro', 'Segoe UI', sans-serif",
                           color="#1B1F24")
    tpl.layout.title = dict(font=dict(size=FONT_SIZE + 3))
    tpl.layout.legend = dict(font=dict(size=FONT_SIZE - 1))
    tpl.layout.margin = dict(l=60, r=20, t=50, b=55)
    tpl.layout.hoverlabel = dict(font=dict(size=FONT_SIZE))
    tpl.layout.colorway = [PRIMARY, "#E4572E", "#17A589", "#D4A000", "#8E44AD", "#1F77B4", "#D81B60"]
    pio.templates[TEMPLATE] = tpl


_register_template()

CSS = """
<style>
/* readable on a projector: bigger metric numbers, tighter page top, visible tab labels */
[data-testid="stMetricValue"] { font-size: 2.0rem; }
/* an accuracy with its interval ("0.894 [0.882, 0.905]") and a paired delta wrap instead of being cut off */
[data-testid="stMetricValue"] *, [data-testid="stMetricDelta"] * { white-space: normal !important;
  overflow: visible !important; text-overflow: clip !important; }
[data-testid="stMetricValue"] p { line-height: 1.15; }
[data-testid="stMetricDelta"] { height: auto; }
[data-testid="stMetricLabel"] p { font-size: 1.0rem; }
.block-container { padding-top: 2.2rem; }
button[data-baseweb="tab"] p { font-size: 1.05rem; }
.layer-strip { display: flex; gap: 6px; flex-wrap: wrap; margin: 0.3rem 0 0.8rem 0; }
.layer-cell { flex: 1 1 0; min-width: 44px; border-radius: 8px; padding: 8px 2px; text-align: center;
              font-weight: 600; line-height: 1.15; border: 2px solid transparent; }
.layer-cell .idx { font-size: 1.05rem; }
.layer-cell .tag { font-size: 0.78rem; font-weight: 500; display: block; min-height: 1em; }
.layer-kept { background: #3949AB; color: white; }
.layer-removed { background: #E3E6EA; color: #8A939C; }
.layer-removed .idx { text-decoration: line-through; }
.layer-next { border-color: #D81B60; box-shadow: 0 0 0 2px #D81B6055; }
.legend-chip { display: inline-block; padding: 2px 10px; border-radius: 12px; color: white;
               font-size: 0.85rem; margin: 0 6px 4px 0; }
</style>
"""
