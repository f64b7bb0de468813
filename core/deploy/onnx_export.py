"""ONNX export of a finished run's model, checked against PyTorch on the run's own test texts.

Export: ``torch.onnx.export(..., dynamo=True)`` (the exporter PyTorch maintains; no hand-written graph code)
of a wrapper that returns the logits, inputs ``input_ids`` and ``attention_mask`` (int64) with a dynamic
batch and sequence length, weights inside the one ``.onnx`` file.

Tied feed-forward sublayers (FFN merging). The exporter's graph optimiser folds each layer's weight transpose
into a new constant, once per *use*: a window of three tied FFNs comes out as three equal copies (measured on
the tiny model: 12 FFN weight matrices of each kind for 10 distinct ones). :func:`export_onnx` therefore runs
onnx_ir's ``DeduplicateInitializersPass`` (every size) before saving, which points every use of equal
constants at one initializer; :func:`ffn_weight_census` counts what the file holds by content, and the parity
record reports both counts.

Parity (:func:`check_parity`): ONNX Runtime's logits against PyTorch's on every test text of the run's task
(re-created from the run's stored config): the maximum absolute logit difference must stay within
``atol`` (default :data:`PARITY_ATOL`) and every prediction must be identical. :func:`export_run` writes the
file to the run folder (``deploy/model.onnx``) only when parity holds; the record (``deploy/onnx_parity.json``)
is written either way, and :func:`offered_onnx` offers a file only with a passing record.
"""

from __future__ import annotations

import hashlib
import os
import platform
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from core.config import DataConfig, from_dict
from core.data.batches import Batch, batches
from core.data.ref import load_dataset_ref
from core.data.task import prepare_task
from core.deploy.records import ExportInfo, FfnCensus, Parity, ParityRecord
from core.merging.ffn import ffn_linears, load_merged, unique_ffn_count
from core.models.registry import encoder_layers
from core.runs.export import run_model_dir
from core.runs.record import Run
from core.runs.store import RunStore
from core.stats import LEVEL, wilson_interval

if TYPE_CHECKING:
    from core.data.task import Task

#: the largest absolute logit difference between ONNX Runtime and PyTorch that passes (float32 exports
#: here differ by ~1e-6; 1e-3 still leaves every prediction unchanged unless two logits nearly tie)
PARITY_ATOL = 1e-3
DEPLOY_DIR = "deploy"
ONNX_FILE = f"{DEPLOY_DIR}/model.onnx"
PARITY_FILE = f"{DEPLOY_DIR}/onnx_parity.json"
INPUT_NAMES = ("input_ids", "attention_mask")
EXPORTER = "torch.onnx.export(dynamo=True) + onnx_ir DeduplicateInitializersPass"

Progress = Callable[[float, str], None]


class LogitsOnly(nn.Module):
    """A sequence classifier called with (input_ids, attention_mask) that returns the logits tensor only."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


# ------------------------------------------------------------------------------------------ export
def export_onnx(model: nn.Module, path: str | Path) -> tuple[ExportInfo, int]:
    """Export ``model`` (a BERT-family classifier, on the CPU) to one ``.onnx`` file at ``path``; returns
    the exporter used, the seconds taken, the file size and how many duplicate constants were merged, and how
    many FFN weight matrices the exporter itself wrote (before the merge)."""
    import onnx_ir.passes.common as ir_passes  # noqa: PLC0415 deferred: cost (onnx_ir)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    wrapper = LogitsOnly(model).eval()
    ids = torch.full((2, 8), 5, dtype=torch.long)
    example = (ids, torch.ones_like(ids))
    dims = {0: "batch", 1: "seq"}
    with torch.no_grad():
        program = torch.onnx.export(wrapper, example, None, dynamo=True, verbose=False, input_names=list(INPUT_NAMES),
                                    output_names=["logits"], dynamic_shapes=(dims, dims))
    if program is None:  # the dynamo exporter always returns its program; None is the legacy exporter's
        raise RuntimeError("torch.onnx.export returned no ONNXProgram")
    inits = program.model.graph.initializers
    before = len(inits)
    raw_ffn = count_ffn_weights((v.const_value.numpy() for v in inits.values() if v.const_value is not None), model)
    ir_passes.DeduplicateInitializersPass(size_limit=2**62)(program.model)
    program.save(str(path), external_data=False)
    info = ExportInfo(EXPORTER, round(time.perf_counter() - start, 2), path.stat().st_size,
                      before - len(program.model.graph.initializers))
    return info, raw_ffn


def _digest(array: np.ndarray) -> str:
    a = np.ascontiguousarray(array)
    return hashlib.sha1(f"{a.dtype}{a.shape}".encode() + a.tobytes()).hexdigest()


def count_ffn_weights(arrays: Iterable[np.ndarray], model: nn.Module) -> int:
    """How many of ``arrays`` (a graph's initializers) equal some encoder layer's first or second FFN weight
    of ``model``, as is or transposed (the exporter folds the transpose into the constant)."""
    targets: set[str] = set()
    for layer in encoder_layers(model):
        for linear in ffn_linears(layer):
            w = linear.weight.detach().cpu().numpy()
            targets |= {_digest(w), _digest(w.T)}
    return sum(1 for a in arrays if a.ndim == 2 and _digest(a) in targets)


def ffn_weight_census(onnx_path: str | Path, model: nn.Module) -> FfnCensus:
    """The FFN weight matrices the ONNX file holds, counted by content (:func:`count_ffn_weights`).
    ``expected`` is two per distinct FFN of ``model`` (tied FFNs once); ``per_layer`` is two per layer (what a
    file that duplicates tied FFNs holds)."""
    import onnx  # noqa: PLC0415 deferred: cost (onnx)
    from onnx import numpy_helper  # noqa: PLC0415 deferred: cost (onnx)

    proto = onnx.load(str(onnx_path))
    found = count_ffn_weights((numpy_helper.to_array(init) for init in proto.graph.initializer), model)
    distinct = unique_ffn_count(model)
    n_layers = len(encoder_layers(model))
    return FfnCensus(layers=n_layers, distinct_ffns=distinct, ffn_weight_initializers=found, expected=2 * distinct,
                     per_layer=2 * n_layers, tied_kept_once=found == 2 * distinct, duplicated=found > 2 * distinct)


# ------------------------------------------------------------------------------------------ runtime
def ort_session(path: str | Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session for ``path`` with ``threads`` intra-op threads (default: torch's count).
    Idle threads do not spin, so a session timed next to PyTorch does not steal its CPU between calls."""
    import onnxruntime as ort  # noqa: PLC0415 deferred: cost (onnxruntime)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def ort_logits(session: Any, batch: Mapping[str, Any]) -> np.ndarray:
    """Logits from an ONNX Runtime session for a batch holding ``input_ids`` and ``attention_mask``."""
    feed = {name: np.asarray(batch[name].numpy() if isinstance(batch[name], torch.Tensor) else batch[name],
                             dtype=np.int64) for name in INPUT_NAMES}
    return session.run(["logits"], feed)[0]


@torch.no_grad()
def torch_logits(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> np.ndarray:
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float().numpy()


def parity_logits(model: nn.Module, session: Any, data: Batch, batch_size: int = 64
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PyTorch's and ONNX Runtime's logits for every row of ``data`` (an encoded split with ``labels``), in the
    split's order (row ``i`` is example ``i`` of :func:`core.train.per_example`), and the labels."""
    model.eval()
    refs, gots, labels = [], [], []
    for batch in batches(data, batch_size):
        refs.append(torch_logits(model, batch))
        gots.append(ort_logits(session, batch))
        labels.append(batch["labels"].numpy())
    if not labels:
        raise ValueError("The parity check needs at least one test text; the run's test split is empty.")
    return np.concatenate(refs), np.concatenate(gots), np.concatenate(labels)


def parity_of(ref: np.ndarray, got: np.ndarray, labels: np.ndarray, atol: float = PARITY_ATOL) -> Parity:
    """The parity record of ONNX Runtime's logits ``got`` against PyTorch's ``ref`` on rows labelled ``labels``."""
    n = int(len(labels))
    if n == 0:
        raise ValueError("The parity check needs at least one test text; the run's test split is empty.")
    diff = np.abs(ref - got).reshape(-1)
    p_ref, p_got = ref.argmax(-1), got.argmax(-1)
    agree = int((p_ref == p_got).sum())
    max_abs = float(diff.max())
    identical = agree == n
    return Parity(texts=n, max_abs_diff=max_abs, mean_abs_diff=float(diff.mean()), atol=atol,
                  predictions_identical=identical, prediction_mismatches=n - agree,
                  torch_accuracy=int((p_ref == labels).sum()) / n, onnx_accuracy=int((p_got == labels).sum()) / n,
                  passed=bool(identical and max_abs <= atol))


def check_parity(model: nn.Module, session: Any, data: Batch, atol: float = PARITY_ATOL,
                 batch_size: int = 64) -> Parity:
    """ONNX Runtime vs PyTorch on every row of ``data`` (an encoded split with ``labels``)."""
    return parity_of(*parity_logits(model, session, data, batch_size), atol)


# ------------------------------------------------------------------------------------------ runs
def load_run_model(store: RunStore, run_id: str) -> nn.Module:
    """A finished run's model in eval mode on the CPU; merged FFNs are tied again (:func:`load_merged`)."""
    return load_merged(run_model_dir(store, run_id)).to("cpu").eval()


def run_task(store: RunStore, run: Run) -> Task:
    """The run's task re-created from its stored config (same model, dataset, data config, hence the same
    test texts in the same order)."""
    cfg = run.config
    return prepare_task(cfg["model"], load_dataset_ref(cfg["dataset"], store),
                        from_dict(DataConfig, cfg.get("data") or {}))


def _versions() -> dict[str, str]:
    import onnx  # noqa: PLC0415 deferred: cost (onnx)
    import onnxruntime  # noqa: PLC0415 deferred: cost (onnxruntime)
    import onnxscript  # noqa: PLC0415 deferred: cost (onnxscript)

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "onnxscript": onnxscript.__version__, "python": platform.python_version()}


def export_run(store: RunStore, run_id: str, *, atol: float = PARITY_ATOL, force: bool = False,
               on_progress: Progress | None = None) -> ParityRecord:
    """Export ``run_id``'s model to ``deploy/model.onnx`` in its run folder and check parity on its test
    texts; returns (and stores as ``deploy/onnx_parity.json``) the record. A passing export already on disk
    is reused unless ``force``. A failing one leaves no file behind: ``record.file`` is ``None``."""
    report = on_progress or (lambda _f, _m: None)
    run = store.get_run(run_id)
    if run is None:
        raise ValueError(f"no run {run_id!r}")
    kept = None if force else read_parity(store, run_id)
    if kept is not None and offered_onnx(store, run_id) is not None:
        report(1.0, "ONNX export already checked")
        return kept
    report(0.05, "Loading the run's model")
    model = load_run_model(store, run_id)
    final = store.run_dir(run_id) / ONNX_FILE
    tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
    final.unlink(missing_ok=True)  # an older file must not outlive a new record
    try:
        report(0.1, "Exporting to ONNX (torch.onnx, dynamo)")
        export, from_exporter = export_onnx(model, tmp)
        report(0.6, "Re-creating the run's test texts")
        task = run_task(store, run)
        report(0.7, f"Checking parity on {len(task.encoded['test']['labels'])} test texts with ONNX Runtime")
        parity = check_parity(model, ort_session(tmp), task.encoded["test"], atol)
        ffn = replace(ffn_weight_census(tmp, model), from_exporter=from_exporter)
        if parity.passed:
            os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    record = ParityRecord(run_id=run_id, kind=run.kind, model=run.model, dataset=run.dataset,
                          created_at=time.time(), file=ONNX_FILE if parity.passed else None,
                          status="passed" if parity.passed else "failed", export=export, parity=parity,
                          ffn_weights=ffn, versions=_versions())
    store.write_json(run_id, PARITY_FILE, record.to_dict())
    report(1.0, f"Parity {record.status}: max |logit diff| {parity.max_abs_diff:.2e}")
    return record


def read_parity(store: RunStore, run_id: str) -> ParityRecord | None:
    """The run's stored parity record (``deploy/onnx_parity.json``), ``None`` when it has none."""
    data = store.read_json(run_id, PARITY_FILE)
    return ParityRecord.from_dict(data) if data else None


def offered_onnx(store: RunStore, run_id: str) -> Path | None:
    """The run's ONNX file when it exists and its stored parity record passed; else ``None``."""
    record = read_parity(store, run_id)
    path = store.run_dir(run_id) / ONNX_FILE
    if record is None or not record.passed or record.file != ONNX_FILE or not path.exists():
        return None
    return path


def _wilson(accuracy: float, n: int) -> str:
    """``0.8000 [0.6630, 0.8910]``: an accuracy over ``n`` texts with its Wilson interval."""
    return wilson_interval(int(round(accuracy * n)), int(n)).format(4)


def parity_text(record: ParityRecord) -> str:
    """The parity record in a few lines a person reads (the CLI prints it)."""
    p, f, e = record.parity, record.ffn_weights, record.export
    lines = [f"ONNX export of run {record.run_id}: parity {record.status.upper()}",
             f"  {p.texts} test texts: max |logit diff| {p.max_abs_diff:.2e} (threshold {p.atol:g}), "
             f"mean {p.mean_abs_diff:.2e}; predictions identical: {'yes' if p.predictions_identical else 'no'}"
             f" ({p.prediction_mismatches} differ)",
             f"  test accuracy ({round(LEVEL * 100)} % Wilson over the {p.texts} texts): PyTorch "
             f"{_wilson(p.torch_accuracy, p.texts)}, ONNX Runtime {_wilson(p.onnx_accuracy, p.texts)}",
             f"  FFN weight matrices in the file: {f.ffn_weight_initializers} for {f.distinct_ffns} distinct "
             f"FFN(s) in {f.layers} layers (tied kept once: {'yes' if f.tied_kept_once else 'no'}"
             + ("; DUPLICATED" if f.duplicated else "") + f"); the exporter itself wrote {f.from_exporter}"
             + (" (its constant folding copies tied weights per use; merged after export)"
                if (f.from_exporter or 0) > f.ffn_weight_initializers else ""),
             f"  exporter: {e.exporter}; {e.seconds:.1f} s; {e.bytes / 1e6:.1f} MB; "
             f"{e.duplicate_constants_merged} duplicate constant(s) merged"]
    if not record.passed:
        lines.append("  the file is NOT offered: parity failed")
    return "\n".join(lines)
