"""Import the heavy libraries in a background thread once the first page has painted.

The first visit to Setup (transformers), Fusion & SHAP (shap, matplotlib) or any page that reads the
signal registry (torch, scikit-learn) would otherwise pay seconds of imports while the user waits. The
thread only imports modules; it computes nothing and touches no session.
"""

from __future__ import annotations

import importlib
import threading

import streamlit as st

#: what the pages import later (``ui.state`` already loads the model and dataset registries, and torch)
MODULES = ("core.signals", "core.pruning.loop", "transformers", "shap", "matplotlib.pyplot")


def _import_all() -> None:
    import matplotlib  # noqa: PLC0415 deferred: cost (matplotlib: the warm-up thread imports it)

    matplotlib.use("Agg")  # no GUI backend in a server thread
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # a broken optional import shows up, with a message, on the page that needs it
            pass


@st.cache_resource(show_spinner=False)
def start() -> threading.Thread:
    """Start the warm-up once per server process (later calls return the same thread)."""
    thread = threading.Thread(target=_import_all, name="import-warmup", daemon=True)
    thread.start()
    return thread
