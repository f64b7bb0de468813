"""Export a run's model as a plain Hugging Face folder (or a zip of one) that
``AutoModelForSequenceClassification.from_pretrained`` loads with no code from this project."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

from core.runs import artifacts
from core.runs.store import RunStore


def run_model_dir(store: RunStore, run_id: str) -> Path:
    folder = store.run_dir(run_id) / artifacts.MODEL_DIR
    if not (store.run_dir(run_id) / artifacts.MODEL_CONFIG).exists():
        run = store.get_run(run_id)
        status = run.status if run else "missing"
        raise ValueError(f"run {run_id} has no saved model (status: {status}); only finished runs export a model")
    return folder


def export_model(store: RunStore, run_id: str, dest: str | Path) -> Path:
    src = run_model_dir(store, run_id)
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ValueError(f"{dest} exists and is not empty: choose a new folder")
    shutil.copytree(src, dest, dirs_exist_ok=True)
    return dest


def model_zip_bytes(store: RunStore, run_id: str) -> bytes:
    """The model folder as an in-memory zip (files at the top level of a folder named after the run)."""
    src = run_model_dir(store, run_id)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(src.rglob("*")):
            if path.is_file():
                zf.write(path, f"{run_id}/{path.relative_to(src)}")
    return buf.getvalue()
