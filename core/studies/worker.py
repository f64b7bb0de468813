"""The app's study worker: ``python -m core.studies.worker STORE_ROOT STUDY_ID`` runs a study's pending cells
(:func:`core.studies.execute.run_local`) in a fresh interpreter at low priority, so the Streamlit server stays
responsive and a page reload never stops it. :func:`launch` starts one."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

from core.paths import PROJECT_ROOT


def launch(store_root: str, study_id: str, *, resume: bool = False) -> subprocess.Popen:
    """Start the worker for ``study_id`` in its own session; the caller keeps the handle to reap it. ``resume``
    runs a cancelled study's missing cells (without it, a study cancelled before its worker started stays so)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH"))
                                                         if p)}
    return subprocess.Popen([sys.executable, "-m", "core.studies.worker", str(store_root), study_id,
                             *(["--resume"] if resume else [])],
                            cwd=str(PROJECT_ROOT), env=env, stdin=subprocess.DEVNULL, start_new_session=True)


def main(store_root: str, study_id: str, resume: bool = False) -> None:
    import torch

    from core.runs.store import RunStore
    from core.studies.execute import run_local
    from core.studies.records import set_status

    torch.set_num_threads(max(1, os.cpu_count() or 2))
    with contextlib.suppress(OSError, AttributeError):
        os.nice(5)
    store = RunStore(store_root)
    try:
        run_local(store, study_id, resume=resume)
    except Exception as exc:  # recorded for the page; the runs themselves are already marked
        set_status(store, study_id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], resume="--resume" in sys.argv[3:])
