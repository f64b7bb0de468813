"""The ONNX part of ``python -m core export RUN_ID DIR --onnx`` (the deploy benchmark is ``python -m benchmarks
deploy RUN_ID``)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from core.deploy.onnx_export import export_run, offered_onnx, parity_text
from core.deploy.records import ParityRecord
from core.runs.store import RunStore


def export_onnx_to(store: RunStore, run_id: str, dest: str | Path,
                   quiet: bool = False) -> tuple[ParityRecord, Path | None]:
    """Export (or reuse) the run's checked ONNX file and copy it to ``dest/model.onnx`` with its parity record
    (``dest/onnx_parity.json``). A failing export copies nothing; returns the record and the copied path."""
    record = export_run(store, run_id, on_progress=None if quiet else _print_progress)
    src = offered_onnx(store, run_id)
    if src is None:
        return record, None
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "model.onnx"
    shutil.copyfile(src, target)
    (dest / "onnx_parity.json").write_text(json.dumps(record.to_dict(), indent=1, default=str))
    return record, target


def _print_progress(fraction: float, message: str) -> None:
    print(f"[{100 * fraction:3.0f} %] {message}", file=sys.stderr, flush=True)


def print_parity(record: ParityRecord, path: Path | None, as_json: bool) -> int:
    """Print an ONNX export's outcome; returns the exit status (1 when parity failed)."""
    if as_json:
        print(json.dumps({**record.to_dict(), "path": str(path) if path else None}, indent=1, default=str))
    else:
        print(parity_text(record) + (f"\nwrote {path}" if path else ""))
    return 0 if path is not None else 1
