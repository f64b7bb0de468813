"""The router guard: every page runs inside ``app.py``'s frame, even on a cold server's first deep link.

Streamlit discovers the ``pages/`` folder next to ``app.py`` before ``st.navigation`` has ever run. So on a
freshly started server, the first request to a page URL (``/merging?run=...``, e.g. a reload after a
restart) runs that page file directly: no wide layout, no shared sidebar, and the raw file list as
navigation. :func:`ensure_routed`, the first call of every page, notices this and runs ``app.py`` instead;
the router then runs the page (the same URL) inside the frame. ``app.py`` marks its own page runs with
:func:`routing`. A page run on its own as the main script (``AppTest.from_file("pages/x.py")``) is left as
it is.
"""

from __future__ import annotations

import runpy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

ENTRYPOINT = "app.py"
_local = threading.local()  # one script run = one thread of the session's script runner


class PageDone(Exception):
    """Raised by :func:`stop_page` inside the frame; ``app.py`` catches it and still draws the sidebar."""


def is_routed() -> bool:
    return bool(getattr(_local, "routed", False))


def stop_page() -> None:
    """End the page here (an empty state, a blocking error). Inside ``app.py``'s frame this unwinds to the
    router, which still draws the shared sidebar: ``st.stop()`` would also cancel everything after it,
    the sidebar included. A page run on its own stops with ``st.stop()``."""
    if is_routed():
        raise PageDone
    st.stop()


@contextmanager
def routing() -> Iterator[None]:
    """Mark the page run that ``app.py`` starts (``page.run()``) as routed."""
    _local.routed = True
    try:
        yield
    finally:
        _local.routed = False


def ensure_routed() -> None:
    """Run ``app.py`` in place of this page when the page was started without it (see the module doc)."""
    if is_routed():
        return
    ctx = get_script_run_ctx()
    entry = Path(ctx.main_script_path) if ctx is not None and ctx.main_script_path else None
    if entry is None or entry.name != ENTRYPOINT or not entry.is_file():
        return  # not under the app's server (a page tested on its own)
    runpy.run_path(str(entry), run_name="__main__")
    st.stop()
