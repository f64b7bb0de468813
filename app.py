"""The layer-pruning explorer: ``streamlit run app.py``.

This entry point is the router and the shared frame: page config (wide), the navigation with sections,
and the shared model/dataset selectors in the sidebar. Every page lives in ``pages/`` and only reads the
run store and draws; long jobs run in worker processes started by the job layer (:mod:`core.jobs`).
"""

from __future__ import annotations

import os

# Worker processes inherit this: idle OpenMP threads sleep instead of spinning, so the page stays responsive
# while a run trains on the same cores (spinning threads slow a busy 2-core machine down by an order of
# magnitude). Set before torch is imported anywhere; an explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import streamlit as st  # noqa: E402

from ui import links, router, state, warmup  # noqa: E402

st.set_page_config(page_title="Layer-pruning explorer", page_icon="✂️", layout="wide",
                   initial_sidebar_state="collapsed" if links.presenting() else "expanded")

PAGES = {
    "Start": [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/lesson.py", title="Lesson", icon=":material/school:"),
        st.Page("pages/setup.py", title="Setup", icon=":material/tune:"),
    ],
    "Prune": [
        st.Page("pages/live.py", title="Live pruning", icon=":material/play_circle:"),
        st.Page("pages/signals.py", title="Signals", icon=":material/insights:"),
        st.Page("pages/fusion.py", title="Fusion & SHAP", icon=":material/account_tree:"),
        st.Page("pages/study.py", title="Studies", icon=":material/grid_view:"),
    ],
    "Results": [
        st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
        st.Page("pages/runs.py", title="Runs & export", icon=":material/folder_zip:"),
        st.Page("pages/playground.py", title="Playground", icon=":material/science:"),
        st.Page("pages/paper.py", title="Paper check", icon=":material/fact_check:"),
    ],
    "Merge": [
        st.Page("pages/merging.py", title="FFN merging", icon=":material/merge:"),
    ],
}

links.begin()  # the link's instructor switches, dataset and unknown parameters (ui/links.py)
page = st.navigation(links.visible(PAGES), position="sidebar", expanded=True)
try:
    with router.routing():
        links.slot()  # where a link's notices go: the top of the page
        page.run()
except router.PageDone:  # the page ended early (an empty state); the frame below still draws
    pass
except Exception as exc:  # a page must never end the session (st.stop/st.rerun are not Exceptions)
    st.error(f"This page hit an unexpected error ({type(exc).__name__}: {exc}). Your runs are safe in the run "
             "store. Reload the page; if the error stays, open another page and report the details below.")
    with st.expander("Details"):
        st.exception(exc)
finally:  # after the page, so its first lines paint before the engine's imports
    if not links.controls_hidden():
        state.sidebar()
    links.finish()  # the view into the URL, the Copy link box, presenter and hide styles
    warmup.start()
