"""Links that reopen a view: each page's state in the URL query, a "Copy link" control, and the instructor switches.

A page keeps its view in the URL with one line per piece of state, just before the widget that shows it::

    links.number("step", "sig_step", steps, "step")        # ?step=3 -> the step slider, nearest valid step
    links.choice("run", "sig_run", run_ids, "run")          # ?run=<id> -> the run picker
    links.layers_off("off", f"pg_layers_{choice}", layers)  # ?off=3,7 -> the layer pills (switched off)
    links.text("text", "pg_text")                           # ?text=... -> the playground's text

Each call applies the URL's value to the widget's session key once (when the link is opened, or the URL changed),
checked against what exists now: a value that is not valid (a deleted run, a step out of range, an unknown layer)
opens the nearest valid view with a one-line notice at the top of the page, never an exception. From then on the
session is the truth: the widget's value is written back into the URL on every run, so the address bar (and the
"Copy link" box in the sidebar) always reopens what is on screen.

``app.py`` calls :func:`begin` (instructor switches, the dataset, unknown parameters), :func:`slot` (where notices
go) and :func:`finish` (publish, notices, the Copy link box, the presenter and hide styles). The parameters:
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st
import streamlit.components.v1 as components

from . import router, state

#: every URL parameter the app reads, and what it holds (the README lists these)
PARAMS: dict[str, str] = {
    "run": "run id(s), comma-separated (Live, Signals, Fusion, Playground, Merging, Runs)",
    "study": "a study id (Studies)",
    "dataset": "the dataset selected in the sidebar",
    "step": "the pruning step shown (Signals, Fusion, Live's replay, Lesson)",
    "signal": "the selected signal (Signals, Lesson)",
    "off": "layers switched off, comma-separated original indices (Playground, Lesson)",
    "text": "the playground's text",
    "chapter": "the lesson's chapter (1 = the first)",
    "hide": "'controls': hide Setup, the sidebar selectors and the advanced expanders (for a class)",
    "present": "'1': presenter mode, larger text and the sidebar folded (for a projector)",
}
__doc__ = (__doc__ or "") + "\n" + "\n".join(f"* ``{k}``: {v}" for k, v in PARAMS.items())

#: parameters other modules write themselves (widgets.set_query_runs, the Studies page): never removed here
EXTERNAL = ("run", "study")
#: pages left out of the navigation when controls are hidden (their url_path)
HIDDEN_PAGES = ("setup",)
#: what a page puts in an expander's key so that ``hide=controls`` hides it (``key="advanced_live_start"``)
ADVANCED_PREFIX = "advanced_"
TEXT_LIMIT = 500

_APPLIED = "_links_applied"  # session key -> the raw URL value last applied or published for it
_FLAGS = "_links_flags"  # {"hide": bool, "present": bool}, kept for the session
_BOUND = "_links_bound"  # this run: param -> (session key, encode)
_NOTICES = "_links_notices"  # this run's notices
_SLOT = "_links_slot"

PRESENT_CSS = """<style>
html { font-size: 21px; }
[data-testid="stMain"] h1 { font-size: 2.6rem; }
[data-testid="stMain"] p, [data-testid="stMain"] li { font-size: 1.2rem; line-height: 1.55; }
</style>"""
#: the Copy link box: the browser's own address (every widget above writes its value into it, fragments included, so
#: it is never a stale copy), refreshed twice a second, and a Copy button (the clipboard, else the text selected)
COPY_HTML = """<div style="font-family: 'Source Sans Pro', sans-serif; font-size: 14px">
<input id="link" readonly aria-label="Link to this view" style="width: 100%; box-sizing: border-box; padding: 6px;
 border: 1px solid #d1d5db; border-radius: 6px; font-family: monospace; font-size: 12px">
<button id="copy" style="margin-top: 6px; padding: 4px 14px; border-radius: 6px; border: 1px solid #3949AB;
 background: #3949AB; color: white; cursor: pointer">Copy</button><span id="said" style="margin-left: 8px;
 color: #6B7280"></span></div>
<script>
const box = document.getElementById("link");
const here = () => { try { return window.parent.location.href; } catch (e) { return document.referrer; } };
const refresh = () => { if (document.activeElement !== box) box.value = here(); };
refresh(); setInterval(refresh, 500);
document.getElementById("copy").onclick = async () => {
  box.value = here(); box.select();
  let done = false;
  try { await navigator.clipboard.writeText(box.value); done = true; }
  catch (e) { done = document.execCommand("copy"); }
  document.getElementById("said").textContent = done ? "copied" : "press Ctrl+C";
};
</script>"""
HIDE_CSS = f"""<style>
[class*="st-key-{ADVANCED_PREFIX}"] {{ display: none !important; }}
[data-testid="stToolbar"] {{ display: none !important; }}
</style>"""


# ------------------------------------------------------------------------------------------ session helpers
def _applied() -> dict[str, str | None]:
    return st.session_state.setdefault(_APPLIED, {})


def _flags() -> dict[str, bool]:
    return st.session_state.setdefault(_FLAGS, {"hide": False, "present": False})


def _raw(param: str) -> str | None:
    value = st.query_params.get(param)
    return None if value is None else str(value)


def _fresh(param: str, key: str) -> str | None:
    """The URL's value of ``param`` when it has not been applied to ``key`` yet (a link just opened), else None."""
    raw = _raw(param)
    if raw is None or _applied().get(key) == raw:
        return None
    _applied()[key] = raw
    return raw


def notice(text: str) -> None:
    """A one-line notice about the link (inside the app's frame: at the top of the page; alone: here)."""
    if router.is_routed():
        st.session_state.setdefault(_NOTICES, []).append(text)
    else:
        st.warning(text, icon=":material/link_off:")


def _publish(param: str, key: str, raw: str | None) -> None:
    _applied()[key] = raw
    if raw is None:
        if param in st.query_params:
            del st.query_params[param]
    elif st.query_params.get(param) != raw:
        st.query_params[param] = raw


def _bind(param: str, key: str, encode: Callable[[Any], str | None]) -> None:
    """Write the widget's current value into the URL now and (inside the frame) again after the page ran."""
    if router.is_routed():
        st.session_state.setdefault(_BOUND, {})[param] = (key, encode)
    if key in st.session_state:
        _publish(param, key, encode(st.session_state[key]))


# ------------------------------------------------------------------------------------------ what pages call
def choice(param: str, key: str, options: Sequence[Any], what: str, label: Callable[[Any], str] = str) -> None:
    """``?param=`` selects one of ``options`` (matched as text) in the widget ``key``; an unknown value keeps the
    widget's default and says so."""
    raw = _fresh(param, key)
    if raw is not None:
        by_text = {str(o): o for o in options}
        if raw in by_text:
            st.session_state[key] = by_text[raw]
        else:
            shown = label(st.session_state[key]) if key in st.session_state else (label(options[0]) if options else "")
            notice(f"The link's {what} {raw!r} is not available here" + (f": showing {shown}." if shown else "."))
    _bind(param, key, lambda v: None if v is None else str(v))


def number(param: str, key: str, options: Sequence[int], what: str) -> None:
    """``?param=`` selects one of the integer ``options`` in the widget ``key``; out of range opens the nearest."""
    raw = _fresh(param, key)
    if raw is not None and options:
        try:
            asked = int(raw)
        except ValueError:
            notice(f"The link's {what} {raw!r} is not a number: showing the default.")
        else:
            near = min(options, key=lambda o: (abs(int(o) - asked), o))
            if near != asked:
                notice(f"The link's {what} {asked} does not exist here ({what}s {min(options)}–{max(options)}): "
                       f"showing {what} {near}.")
            st.session_state[key] = near
    _bind(param, key, lambda v: None if v is None else str(int(v)))


def parse_layers(raw: str) -> tuple[list[int], list[str]]:
    """``"3, 7,x"`` -> ([3, 7], ["x"]): the integers and what did not read as one."""
    good, bad = [], []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            good.append(int(part))
        except ValueError:
            bad.append(part)
    return good, bad


def layers_off(param: str, key: str, layers: Sequence[int], *, state_is_on: bool = True) -> None:
    """``?off=3,7`` switches those layers off in the widget ``key`` (which holds the layers switched **on**, as the
    Playground's pills do, or with ``state_is_on=False`` those switched off); unknown layers are left out, said so."""
    raw = _fresh(param, key)
    if raw is not None:
        asked, bad = parse_layers(raw)
        unknown = [str(i) for i in asked if i not in layers] + bad
        off = [i for i in layers if i in asked]
        if unknown:
            notice(f"The link switches off layer(s) {', '.join(unknown)}, which this model does not have "
                   f"(layers {min(layers)}–{max(layers)}): left out.")
        st.session_state[key] = [i for i in layers if i not in off] if state_is_on else off

    def encode(value: Any) -> str | None:
        chosen = [int(i) for i in (value or [])]
        off = [i for i in layers if i not in chosen] if state_is_on else sorted(chosen)
        return ",".join(map(str, off)) or None
    _bind(param, key, encode)


def text(param: str, key: str, limit: int = TEXT_LIMIT) -> None:
    """``?text=`` fills the text widget ``key`` (cut at ``limit`` characters, said so)."""
    raw = _fresh(param, key)
    if raw is not None:
        if len(raw) > limit:
            notice(f"The link's text was cut to its first {limit} characters.")
        st.session_state[key] = raw[:limit]
    _bind(param, key, lambda v: (str(v)[:limit] or None) if v else None)


def value(param: str, key: str, parse: Callable[[str], Any], encode: Callable[[Any], str | None], what: str) -> None:
    """A plain session value (not a widget): ``parse`` raises ValueError for a value it refuses."""
    raw = _fresh(param, key)
    if raw is not None:
        try:
            st.session_state[key] = parse(raw)
        except ValueError as exc:
            notice(f"The link's {what} {raw!r} does not open here ({exc}): showing the nearest view.")
    _bind(param, key, encode)


# ------------------------------------------------------------------------------------------ instructor switches
def controls_hidden() -> bool:
    """``?hide=controls``: Setup, the sidebar's selectors and the advanced expanders are hidden."""
    return bool(_flags()["hide"]) or _raw("hide") == "controls"


def presenting() -> bool:
    """``?present=1``: larger text for a projector, the sidebar folded."""
    return bool(_flags()["present"]) or _raw("present") in ("1", "true", "on")


def advanced_key(name: str) -> str:
    """An expander's key that ``hide=controls`` hides: ``st.expander(..., key=links.advanced_key("live_start"))``."""
    return ADVANCED_PREFIX + name


def visible(pages: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The navigation without :data:`HIDDEN_PAGES` when controls are hidden."""
    if not controls_hidden():
        return pages
    return {section: [p for p in group if getattr(p, "url_path", "") not in HIDDEN_PAGES]
            for section, group in pages.items()}


# ------------------------------------------------------------------------------------------ the frame
def begin() -> None:
    """Start of every run of ``app.py``: the instructor switches, the sidebar's dataset, unknown parameters."""
    st.session_state[_BOUND] = {}
    st.session_state[_NOTICES] = []
    flags = _flags()
    for name, on in (("hide", ("controls",)), ("present", ("1", "true", "on"))):
        raw = _fresh(name, f"_flag_{name}")
        if raw is not None:
            flags[name] = raw in on
            if raw not in on and raw not in ("", "0", "off", "false", "none"):
                notice(f"The link's {name}={raw!r} is not known ({name} takes {' or '.join(on)}): ignored.")
    raw = _fresh("dataset", state.DATASET_KEY)
    if raw is not None:
        options = state.dataset_options()
        if raw in options:
            state.set_dataset(raw)
        else:
            notice(f"The link's dataset {raw!r} is not available here: showing {state.dataset_label(state.dataset())}.")
    unknown = [k for k in st.query_params.keys() if k not in PARAMS]
    if unknown:
        notice(f"The link has parameter(s) this app does not know, ignored: {', '.join(sorted(unknown))}.")
        for k in unknown:
            del st.query_params[k]


def slot() -> None:
    """Where this run's notices go: the top of the page (call first inside the routed page)."""
    st.session_state[_SLOT] = st.empty()


def finish() -> None:
    """End of every run of ``app.py``: publish each bound widget's value, clear parameters no page kept, show the
    notices, the instructor styles and the Copy link box."""
    bound = st.session_state.get(_BOUND) or {}
    for param, (key, encode) in bound.items():
        if key in st.session_state:
            _publish(param, key, encode(st.session_state[key]))
    for param in [k for k in st.query_params.keys() if k in PARAMS and k not in EXTERNAL]:
        if param not in bound and param not in ("dataset", "hide", "present"):
            del st.query_params[param]
    st.query_params["dataset"] = state.dataset()
    _applied()[state.DATASET_KEY] = state.dataset()
    flags = _flags()
    for name, on in (("hide", "controls"), ("present", "1")):
        _publish(name, f"_flag_{name}", on if flags[name] else None)
    notes = st.session_state.get(_NOTICES) or []
    spot = st.session_state.get(_SLOT)
    if notes and spot is not None:
        with spot.container():
            for text_ in notes:
                st.warning(text_, icon=":material/link_off:")
    if flags["present"]:
        st.markdown(PRESENT_CSS, unsafe_allow_html=True)
    if flags["hide"]:
        st.markdown(HIDE_CSS, unsafe_allow_html=True)
    with st.sidebar:
        with st.popover("Copy link", icon=":material/link:", width="stretch",
                        help="The address of exactly this view: page, dataset, run, step, layers, text."):
            components.html(COPY_HTML, height=80)
            st.caption("Copy it with the button at the box's right. Add `&hide=controls` for a class, "
                       "`&present=1` for a projector, `&chapter=N` to open the lesson at chapter N.")
