"""What the compressed model gets wrong: a finished run's teacher and compressed model on the run's test split.

Runs stored so far keep accuracies, not per-example outcomes, so the analysis predicts the test split itself
(both models, in the run's precision and batch size, exactly as the run scored them) and keeps the outcomes in the
run's folder (:data:`OUTCOMES_FILE`): the second call reads them back at once. From the outcomes: each model's
confusion matrix, per-class accuracy with 95 % Wilson intervals, the examples that flipped (teacher right and
compressed wrong, and the reverse), and accuracy by text length (thirds of the test split by word count). The
recomputed accuracies are checked against the ones the run stored (:attr:`ErrorAnalysis.matches_stored`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from core.paths import atomic_file, atomic_write_text
from core.playground.load import Loaded, PlaygroundError, check_run
from core.runs.record import MergeSummary, PruneSummary
from core.runs.store import RunStore
from core.stats import wilson_interval
from core.train import predict_logits

if TYPE_CHECKING:
    from torch import nn

#: the folder (in a run's folder) where the playground keeps what it computed, and its files; bump the version
#: when what is computed changes, so older files are recomputed
PLAYGROUND_DIR = "playground"
OUTCOMES_VERSION = 1
OUTCOMES_FILE = f"{PLAYGROUND_DIR}/test_outcomes_v{OUTCOMES_VERSION}.csv"
OUTCOMES_META = f"{PLAYGROUND_DIR}/test_outcomes_v{OUTCOMES_VERSION}.json"
#: evaluation batch size: the runs score with :func:`core.metrics.measure_model`'s default
BATCH_SIZE = 128
THIRDS = ("short", "medium", "long")

Direction = Literal["lost", "gained"]


def _interval(successes: int, n: int) -> tuple[float, float]:
    """95 % Wilson interval of ``successes`` out of ``n`` (:func:`core.stats.wilson_interval`)."""
    if n == 0:
        return float("nan"), float("nan")
    ci = wilson_interval(int(successes), int(n))
    return ci.low, ci.high


@dataclass(frozen=True)
class ErrorAnalysis:
    """Per-example outcomes of a run's teacher and compressed model on its test split, and what they show.

    ``examples``: one row per test example (``row`` in the split's stored order) with ``text``, ``label`` (true
    class index), ``words``, ``teacher_pred``/``compressed_pred`` (class indices) and
    ``teacher_conf``/``compressed_conf`` (each model's probability of its own prediction)."""

    run_id: str
    label_names: tuple[str, ...]
    examples: pd.DataFrame
    stored_teacher_accuracy: float | None
    stored_compressed_accuracy: float | None
    compressed_name: str
    precision: str
    seconds: float
    cached: bool

    # ------------------------------------------------------------------ accuracies
    @property
    def n(self) -> int:
        return len(self.examples)

    def correct(self, model: str) -> np.ndarray:
        """Whether ``model`` (``teacher`` or ``compressed``) got each example right."""
        return (self.examples[f"{model}_pred"] == self.examples["label"]).to_numpy()

    def accuracy(self, model: str) -> float:
        return float(self.correct(model).mean()) if self.n else float("nan")

    @property
    def matches_stored(self) -> bool:
        """The recomputed accuracies equal the stored ones (to the example): the split and models are the run's."""
        pairs = ((self.accuracy("teacher"), self.stored_teacher_accuracy),
                 (self.accuracy("compressed"), self.stored_compressed_accuracy))
        return all(stored is None or abs(mine - stored) * self.n < 0.5 for mine, stored in pairs)

    def stored_note(self) -> str:
        """One sentence on how the recomputed accuracies compare with the stored ones."""
        t, c = self.accuracy("teacher"), self.accuracy("compressed")
        st, sc = self.stored_teacher_accuracy, self.stored_compressed_accuracy
        fmt = lambda v: "not stored" if v is None else f"{v:.3f}"  # noqa: E731
        if self.matches_stored:
            return (f"Recomputed on the {self.n} test examples: teacher {t:.3f}, {self.compressed_name} {c:.3f}, "
                    "the accuracies the run stored.")
        return (f"Recomputed on the {self.n} test examples: teacher {t:.3f} (stored {fmt(st)}), "
                f"{self.compressed_name} {c:.3f} (stored {fmt(sc)}). They differ: the test split rebuilt today is "
                "not the one the run scored (the data or the split code changed since).")

    # ------------------------------------------------------------------ views
    def confusion(self, model: str) -> np.ndarray:
        """Counts ``[true class, predicted class]`` of ``model``'s predictions."""
        k = len(self.label_names)
        matrix = np.zeros((k, k), dtype=int)
        np.add.at(matrix, (self.examples["label"].to_numpy(), self.examples[f"{model}_pred"].to_numpy()), 1)
        return matrix

    def per_class(self) -> pd.DataFrame:
        """Per true class: its examples and each model's accuracy on them (recall) with a 95 % Wilson interval."""
        rows = []
        for c, name in enumerate(self.label_names):
            part = self.examples[self.examples["label"] == c]
            row = {"class": name, "n": len(part)}
            for model in ("teacher", "compressed"):
                right = int((part[f"{model}_pred"] == c).sum())
                low, high = _interval(right, len(part))
                row |= {f"{model}_accuracy": right / len(part) if len(part) else float("nan"),
                        f"{model}_low": low, f"{model}_high": high}
            rows.append(row)
        return pd.DataFrame(rows)

    def flips(self, direction: Direction, label: str | None = None) -> pd.DataFrame:
        """The examples that flipped: ``lost`` (teacher right, compressed wrong) or ``gained`` (the reverse),
        optionally only those whose true class is ``label``; with class names."""
        if direction not in ("lost", "gained"):
            raise ValueError(f"direction must be 'lost' or 'gained', got {direction!r}")
        t, c = self.correct("teacher"), self.correct("compressed")
        mask = (t & ~c) if direction == "lost" else (~t & c)
        part = self.examples[mask]
        if label is not None:
            if label not in self.label_names:
                raise ValueError(f"Unknown class {label!r}: the classes are {list(self.label_names)}")
            part = part[part["label"] == self.label_names.index(label)]
        names = np.asarray(self.label_names, dtype=object)
        return pd.DataFrame({"row": part["row"].to_numpy(), "text": part["text"].to_numpy(),
                             "class": names[part["label"].to_numpy()],
                             "teacher": names[part["teacher_pred"].to_numpy()],
                             "compressed": names[part["compressed_pred"].to_numpy()],
                             "teacher_conf": part["teacher_conf"].to_numpy(),
                             "compressed_conf": part["compressed_conf"].to_numpy(),
                             "words": part["words"].to_numpy()})

    def flip_counts(self) -> dict[str, int]:
        t, c = self.correct("teacher"), self.correct("compressed")
        return {"lost": int((t & ~c).sum()), "gained": int((~t & c).sum()), "both_right": int((t & c).sum()),
                "both_wrong": int((~t & ~c).sum())}

    def by_length(self) -> pd.DataFrame:
        """Accuracy of both models in thirds of the test split by word count (short, medium, long; ties broken by
        the split's order so the thirds have equal sizes), with 95 % Wilson intervals."""
        if self.n < len(THIRDS):
            return pd.DataFrame(columns=["third", "n", "words"])
        order = self.examples["words"].rank(method="first")
        third = pd.qcut(order, len(THIRDS), labels=list(THIRDS))
        rows = []
        for name in THIRDS:
            part = self.examples[third == name]
            row = {"third": name, "n": len(part), "words": f"{part['words'].min()}–{part['words'].max()}"}
            for model in ("teacher", "compressed"):
                right = int((part[f"{model}_pred"] == part["label"]).sum())
                low, high = _interval(right, len(part))
                row |= {f"{model}_accuracy": right / len(part), f"{model}_low": low, f"{model}_high": high}
            rows.append(row)
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        names = list(self.label_names)
        return {"run_id": self.run_id, "n": self.n, "labels": names, "precision": self.precision,
                "teacher_accuracy": self.accuracy("teacher"), "compressed_accuracy": self.accuracy("compressed"),
                "stored_teacher_accuracy": self.stored_teacher_accuracy,
                "stored_compressed_accuracy": self.stored_compressed_accuracy,
                "matches_stored": self.matches_stored, "flips": self.flip_counts(),
                "confusion_teacher": self.confusion("teacher").tolist(),
                "confusion_compressed": self.confusion("compressed").tolist(),
                "per_class": self.per_class().to_dict(orient="records"),
                "by_length": self.by_length().to_dict(orient="records"),
                "seconds": self.seconds, "cached": self.cached}


# ------------------------------------------------------------------------------------------------ compute
def _outcomes(loaded: Loaded, compressed: nn.Module) -> pd.DataFrame:
    """Both models' predictions on the test split, computed as the run scored it."""
    test = loaded.task.encoded["test"]
    frame = loaded.task.splits.test
    device = next(loaded.teacher.parameters()).device
    out = {"row": np.arange(len(frame)), "text": frame["text"].astype(str).to_numpy(),
           "label": test["labels"].cpu().numpy().astype(int)}
    out["words"] = np.array([len(t.split()) for t in out["text"]], dtype=int)
    for name, model in (("teacher", loaded.teacher), ("compressed", compressed)):
        probs = predict_logits(model, test, BATCH_SIZE, device, precision=loaded.precision).softmax(dim=-1).numpy()
        out[f"{name}_pred"] = probs.argmax(axis=1).astype(int)
        out[f"{name}_conf"] = probs.max(axis=1)
    return pd.DataFrame(out)


def _read_cached(folder: Path) -> tuple[pd.DataFrame, dict] | None:
    table, meta = folder / OUTCOMES_FILE, folder / OUTCOMES_META
    if not (table.exists() and meta.exists()):
        return None
    try:
        info = json.loads(meta.read_text())
        frame = pd.read_csv(table, keep_default_na=False, dtype={"text": str})
    except (OSError, ValueError):  # unreadable: computed again
        return None
    return frame, info


def error_analysis(store: RunStore, loaded: Loaded, *, refresh: bool = False) -> ErrorAnalysis:
    """The error analysis of the run ``loaded`` opened (see the module doc); read from the run's folder when it
    was computed before (``refresh`` computes it again)."""
    if loaded.run is None or loaded.compressed is None:
        raise PlaygroundError("The error analysis needs a finished run (a teacher and its compressed model); the "
                              "teacher alone has nothing to compare with.")
    run = loaded.run
    folder = store.run_dir(run.id)
    stored = loaded.stored_accuracies()
    hit = None if refresh else _read_cached(folder)
    if hit is not None:
        frame, info = hit
        return ErrorAnalysis(run_id=run.id, label_names=tuple(info["labels"]), examples=frame,
                             stored_teacher_accuracy=stored["teacher"], stored_compressed_accuracy=stored["compressed"],
                             compressed_name=loaded.compressed_name, precision=str(info["precision"]),
                             seconds=float(info["seconds"]), cached=True)
    start = time.perf_counter()
    frame = _outcomes(loaded, loaded.compressed)
    seconds = time.perf_counter() - start
    with atomic_file(folder / OUTCOMES_FILE) as tmp:
        frame.to_csv(tmp, index=False)
    info = {"labels": list(loaded.label_names), "precision": loaded.precision, "seconds": seconds,
            "teacher_key": loaded.teacher_key, "rows": len(frame), "version": OUTCOMES_VERSION}
    atomic_write_text(folder / OUTCOMES_META, json.dumps(info, indent=1))
    return ErrorAnalysis(run_id=run.id, label_names=loaded.label_names, examples=frame,
                         stored_teacher_accuracy=stored["teacher"], stored_compressed_accuracy=stored["compressed"],
                         compressed_name=loaded.compressed_name, precision=loaded.precision, seconds=seconds,
                         cached=False)


def cached_error_analysis(store: RunStore, run_id: str) -> ErrorAnalysis | None:
    """The analysis of ``run_id`` when it was computed before (no model is loaded), else None."""
    run = check_run(store, run_id)
    hit = _read_cached(store.run_dir(run.id))
    if hit is None:
        return None

    frame, info = hit
    summary = (MergeSummary if run.kind == "merge" else PruneSummary).of(run.summary)
    return ErrorAnalysis(run_id=run.id, label_names=tuple(info["labels"]), examples=frame,
                         stored_teacher_accuracy=summary.teacher_accuracy,
                         stored_compressed_accuracy=summary.final_accuracy,
                         compressed_name="merged model" if run.kind == "merge" else "pruned model",
                         precision=str(info["precision"]), seconds=float(info["seconds"]), cached=True)
