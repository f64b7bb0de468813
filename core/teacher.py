"""Teacher fine-tuning: the unpruned model fine-tuned once per (model, dataset, data config, train config).

The result is cached on disk under a key that hashes everything that determines it, so the second request
is instant, and it is written atomically (temporary folder, then rename) so a killed run never leaves a
half-written teacher that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from core.config import TrainConfig, from_dict, to_dict
from core.data.batches import default_device
from core.data.splits import SPLIT_VERSION
from core.data.task import Task
from core.data.truncation import MOSTLY_TRUNCATED, LengthChoice
from core.models.registry import load_classifier, load_pretrained, pretrained
from core.paths import atomic_dir, cache_dir
from core.precision import resolve
from core.runs.events import StoredEvent
from core.stats import wilson_interval
from core.train import TrainProgress, evaluate, fine_tune, scores_from_logits

#: bump when training code changes in a way that changes results (invalidates cached teachers)
TEACHER_VERSION = 1

#: default hyperparameters per model; chosen by measurement (see README: "Teacher defaults")
DEFAULT_TRAIN = {
    "tiny-bert": TrainConfig(epochs=15, lr=3e-3, batch_size=16, freeze_word_embeddings=False,
                             head_lr_multiplier=1.0),
}
#: tasks with more classes than this get :data:`MANY_CLASSES_EPOCHS` teacher epochs: with 2,000 rows,
#: 20 Newsgroups has 100 per class and 3 epochs underfit (e5-small test accuracy 0.614, validation 0.664;
#: 6 epochs: 0.694 and 0.758), while the 2-6 class sets are done after 3
MANY_CLASSES = 10
MANY_CLASSES_EPOCHS = 6.0
#: the teacher trains for at least this many optimiser steps: a 2,000-row set gets 189 in 3 epochs (unchanged),
#: a 700-row upload 150 instead of 66 (7 epochs), where 3 epochs left it predicting the majority class
TEACHER_MIN_STEPS = 150
#: class-weighted cross-entropy for the teacher (``TrainConfig.class_weights``): skewed labels do not
#: collapse to the majority class; on balanced sets every weight is ~1
TEACHER_CLASS_WEIGHTS = "balanced"
#: the guard (:func:`check_teacher`): the teacher's test macro-F1 must beat the trivial baselines' by this much,
#: and the lower end of its test accuracy's Wilson interval (:data:`GUARD_LEVEL`) must lie above the
#: majority-class rate (guessing by class frequency scores less: sum_c p_c q_c <= max_c p_c), so a teacher is
#: pruned only when it beats always-predict-the-majority by more than the noise of its test split
F1_MARGIN = 0.05
GUARD_LEVEL = 0.95


def default_train_config(model_key: str, num_labels: int | None = None) -> TrainConfig:
    """The teacher's default fine-tuning for ``model_key`` (and a task with ``num_labels`` classes)."""
    cfg = DEFAULT_TRAIN.get(model_key) or TrainConfig(min_steps=TEACHER_MIN_STEPS,
                                                      class_weights=TEACHER_CLASS_WEIGHTS)
    if num_labels is not None and num_labels > MANY_CLASSES and model_key not in DEFAULT_TRAIN:
        cfg = replace(cfg, epochs=max(cfg.epochs, MANY_CLASSES_EPOCHS))
    return cfg


@dataclass(frozen=True)
class TeacherResult:
    path: Path
    key: str
    metrics: dict[str, Any]
    train_cfg: TrainConfig
    seconds: float
    cached: bool

    def load(self) -> torch.nn.Module:
        return load_pretrained(self.path)


def teacher_key(task: Task, train_cfg: TrainConfig) -> str:
    """What identifies a teacher: the task, the training config with its precision *resolved* on this machine
    (``auto`` is bf16 on one machine and fp32 on another), the code version. An fp32 teacher keeps the key
    it had before precision was a setting."""
    train = to_dict(train_cfg)
    resolved = resolve(train.pop("precision", "fp32"), default_device(), task.model.hidden_size)
    if resolved != "fp32":
        train["precision"] = resolved
    payload = json.dumps({"task": task.fingerprint, "train": train, "v": TEACHER_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def teacher_dir(key: str) -> Path:
    return cache_dir() / "teachers" / key


def cached_teacher(task: Task, train_cfg: TrainConfig) -> TeacherResult | None:
    key = teacher_key(task, train_cfg)
    folder = teacher_dir(key)
    meta = folder / "teacher.json"
    if not meta.exists():
        return None
    info = json.loads(meta.read_text())
    return TeacherResult(path=folder, key=key, metrics=info["metrics"],
                         train_cfg=from_dict(TrainConfig, info["train"]), seconds=info["seconds"], cached=True)


def train_teacher(task: Task, train_cfg: TrainConfig | None = None, device: torch.device | None = None
                  ) -> Iterator[TrainProgress | TeacherResult]:
    """Fine-tune (or reuse) the teacher. Yields training progress, then the :class:`TeacherResult` last.

    Stopping the iteration early (or ``close()``) abandons the run; nothing is written.
    """
    train_cfg = train_cfg or default_train_config(task.model.key, task.num_labels)
    hit = cached_teacher(task, train_cfg)
    if hit is not None:
        yield hit
        return
    device = device or default_device()
    precision = resolve(train_cfg.precision, device, task.model.hidden_size)  # once: the teacher's entry
    start = time.perf_counter()
    model = load_classifier(task.model, task.num_labels, dict(enumerate(task.label_names)), seed=train_cfg.seed)
    yield from fine_tune(model, task.encoded["train"], train_cfg, device=device, precision=precision)
    metrics = {split: evaluate(model, task.encoded[split], device=device, precision=precision)
               for split in ("val", "test")}
    seconds = time.perf_counter() - start
    key = teacher_key(task, train_cfg)
    final = teacher_dir(key)
    # the split version is recorded beside the key (the task's fingerprint, which hashes it, is in "task"), not in
    # it: cached teachers keep their keys, and a reader (the playground) tells a teacher of older splits from a
    # current one without rebuilding the task
    info = {"metrics": metrics, "train": to_dict(train_cfg), "task": task.describe(), "seconds": seconds,
            "key": key, "version": TEACHER_VERSION, "precision": precision, "split_version": SPLIT_VERSION}
    with atomic_dir(final, replace=False) as tmp:  # another process may win the race: keep theirs
        pretrained(model.to("cpu")).save_pretrained(tmp, safe_serialization=True)
        task.tokenizer.save_pretrained(tmp)
        (tmp / "teacher.json").write_text(json.dumps(info, indent=2))
    yield TeacherResult(path=final, key=key, metrics=metrics, train_cfg=train_cfg, seconds=seconds, cached=False)


def ensure_teacher(task: Task, train_cfg: TrainConfig | None = None,
                   on_progress: Callable[[TrainProgress], None] | None = None,
                   device: torch.device | None = None) -> TeacherResult:
    """Run :func:`train_teacher` to the end, reporting progress through ``on_progress``."""
    result = None
    for event in train_teacher(task, train_cfg, device):
        if isinstance(event, TeacherResult):
            result = event
        elif on_progress is not None:
            on_progress(event)
    assert result is not None
    return result


# --------------------------------------------------------------------------------------------- guard
class WeakTeacherError(RuntimeError):
    """The teacher does not beat the majority-class baseline: pruning it would measure noise."""

    def __init__(self, check: TeacherCheck) -> None:
        super().__init__(check.message())
        self.check = check


@dataclass(frozen=True)
class TeacherCheck:
    """The teacher's test scores beside the trivial baselines': always predicting the most frequent training
    class (accuracy and macro-F1), and guessing by the training class frequencies (expected macro-F1
    ``mean_c 2 p_c q_c / (p_c + q_c)``, 1/k on balanced data, where the majority class scores less).

    The teacher passes when the lower end of its accuracy's Wilson interval (``accuracy_low``, over ``test_rows``
    examples) lies above the majority-class accuracy and its macro-F1 reaches the higher baseline plus
    :data:`F1_MARGIN`. ``length`` (a :class:`core.data.truncation.LengthChoice` as a dict) says how much of the
    texts the model saw: when most training texts were cut, a refusal names that first."""

    accuracy: float
    macro_f1: float
    baseline_accuracy: float
    baseline_macro_f1: float
    majority_class: str
    max_length: int
    train_rows: int
    test_rows: int = 0
    accuracy_low: float = 0.0
    accuracy_high: float = 1.0
    length: dict[str, Any] | None = None
    #: the teacher's fine-tuning time (seconds), to put a time on a longer length
    teacher_seconds: float | None = None

    @property
    def beats_majority(self) -> bool:
        """The accuracy interval lies above the majority-class rate."""
        return self.accuracy_low > self.baseline_accuracy

    @property
    def beats_f1(self) -> bool:
        return self.macro_f1 >= self.baseline_macro_f1 + F1_MARGIN

    @property
    def weak(self) -> bool:
        return not (self.beats_f1 and self.beats_majority)

    @property
    def truncation_first(self) -> bool:
        """Whether a refusal leads with truncation: more than half of the training texts were cut."""
        return self.length is not None and float(self.length.get("truncated", 0.0)) > MOSTLY_TRUNCATED

    def accuracy_text(self) -> str:
        """``0.560 [0.529, 0.591]`` (Wilson, :data:`GUARD_LEVEL`)."""
        return f"{self.accuracy:.3f} [{self.accuracy_low:.3f}, {self.accuracy_high:.3f}]"

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1, "baseline_accuracy": self.baseline_accuracy,
                "baseline_macro_f1": self.baseline_macro_f1, "majority_class": self.majority_class,
                "max_length": self.max_length, "train_rows": self.train_rows, "test_rows": self.test_rows,
                "accuracy_low": self.accuracy_low, "accuracy_high": self.accuracy_high, "level": GUARD_LEVEL,
                "interval": "Wilson", "beats_majority": self.beats_majority, "beats_f1": self.beats_f1,
                "weak": self.weak, "f1_margin": F1_MARGIN, "length": self.length,
                "truncation_first": self.truncation_first, "teacher_seconds": self.teacher_seconds,
                "message": self.message()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TeacherCheck:
        """A stored check (:meth:`to_dict`, the ``teacher_check`` event's payload); the derived keys are ignored."""
        length = data.get("length")
        seconds = data.get("teacher_seconds")
        return cls(accuracy=float(data["accuracy"]), macro_f1=float(data["macro_f1"]),
                   baseline_accuracy=float(data["baseline_accuracy"]),
                   baseline_macro_f1=float(data["baseline_macro_f1"]), majority_class=str(data["majority_class"]),
                   max_length=int(data.get("max_length") or 0), train_rows=int(data.get("train_rows") or 0),
                   test_rows=int(data.get("test_rows") or 0), accuracy_low=float(data.get("accuracy_low", 0.0)),
                   accuracy_high=float(data.get("accuracy_high", 1.0)),
                   length=dict(length) if isinstance(length, Mapping) else None,
                   teacher_seconds=None if seconds is None else float(seconds))

    def scores_text(self) -> str:
        """The teacher beside the baselines, with the accuracy interval."""
        return (f"test accuracy {self.accuracy_text()} ({GUARD_LEVEL:.0%} Wilson interval over {self.test_rows:,} "
                f"test rows) against {self.baseline_accuracy:.3f} for always predicting {self.majority_class!r}; "
                f"macro-F1 {self.macro_f1:.3f} against {self.baseline_macro_f1:.3f} for the better of that and "
                f"guessing by class frequency")

    def truncation_text(self) -> str:
        """What truncation did to the texts, the length that would cover them and its cost ('' when few were cut)."""
        if not self.truncation_first:
            return ""

        choice = LengthChoice.from_dict(self.length or {})
        cover = choice.cover_length
        text = (f"Most texts were cut: {choice.truncated:.0%} of the {choice.n_texts:,} training texts are longer "
                f"than {choice.length} tokens (median {choice.median}), so the model saw only their "
                f"{'first and last' if choice.truncation == 'head+tail' else 'first'} {choice.length} tokens.")
        if cover > choice.length:
            text += (f" A max length of {cover} would cover {choice.cover_share:.0%} of them, at about "
                     f"{choice.cost_factor():.1f}x the compute per step"
                     + (f" (this teacher took {_duration(self.teacher_seconds)}; about "
                        f"{_duration(self.teacher_seconds * choice.cost_factor())} at {cover} tokens)"
                        if self.teacher_seconds else "")
                     + f": set max length auto with max_auto_length {cover}, or --max-length {cover}.")
        else:
            text += f" {choice.length} tokens is the most this model takes; try truncation head+tail."
        return text

    def message(self, stopped: bool = True) -> str:
        """What the check found; for a weak teacher the cause first when it is truncation, then what to try
        (``stopped``: say the run stopped)."""
        if not self.weak:
            return f"The teacher beats the trivial baselines by more than the noise: {self.scores_text()}."
        failed = []
        if not self.beats_majority:
            failed.append(f"its accuracy interval reaches down to {self.accuracy_low:.3f}, not above the "
                          f"majority-class rate {self.baseline_accuracy:.3f}")
        if not self.beats_f1:
            failed.append(f"its macro-F1 is below {self.baseline_macro_f1 + F1_MARGIN:.3f} (the baselines' + "
                          f"{F1_MARGIN})")
        lead = self.truncation_text()
        return ((lead + " " if lead else "")
                + f"The teacher did not learn the task beyond the noise of its {self.test_rows:,} test rows: "
                f"{self.scores_text()}; "
                f"{' and '.join(failed)}. Pruning it would measure noise"
                f"{', so the run stopped before pruning' if stopped else ''}. Try a longer max length (now "
                f"{self.max_length} tokens), more rows (now {self.train_rows:,} for training, {self.test_rows:,} "
                f"for testing) or more teacher epochs, or a different text column.")


def teacher_lines(events: Iterable[StoredEvent]) -> list[str]:
    """What a run's events say about its data and teacher, one line each (the CLI and the Live page print them):
    the sequence length (its ``prepare`` event's :class:`core.data.truncation.LengthChoice`) and the teacher beside
    the majority-class baseline with its accuracy interval (its ``teacher_check`` event)."""
    lines = []
    for ev in events:
        task = ev.payload.get("task") if ev.stage == "prepare" else None
        length = task.get("length") if isinstance(task, dict) else None
        if isinstance(length, dict) and length:
            lines.append(LengthChoice.from_dict(length).line())
        if ev.stage == "teacher_check" and "accuracy_low" in ev.payload:
            c = TeacherCheck.from_dict(ev.payload)
            verdict = "weak" if ev.payload.get("weak", c.weak) else "beats the baselines beyond the noise"
            lines.append(f"Teacher: test accuracy {c.accuracy:.3f} [{c.accuracy_low:.3f}, "
                         f"{c.accuracy_high:.3f}] (95 % Wilson, {c.test_rows:,} test rows) against "
                         f"{c.baseline_accuracy:.3f} for always predicting {c.majority_class!r}; macro-F1 "
                         f"{c.macro_f1:.3f} against {c.baseline_macro_f1:.3f}: {verdict}.")
    return lines


def check_teacher(test_scores: dict[str, Any], train_labels: torch.Tensor, test_labels: torch.Tensor,
                  label_names: tuple[str, ...] | list[str], max_length: int, *,
                  length: Any | None = None, teacher_seconds: float | None = None) -> TeacherCheck:
    """Compare the teacher's test ``accuracy``/``macro_f1`` with the trivial baselines on the same rows, the
    accuracy with its Wilson interval (:func:`core.stats.wilson_interval`). ``length`` is the task's
    :class:`core.data.truncation.LengthChoice` (``Task.length``) or its dict: how much of the texts was cut;
    ``teacher_seconds`` the teacher's fine-tuning time (a refusal then puts a time on the longer length)."""
    test = test_labels.cpu().long()
    n_classes = max(len(label_names), int(train_labels.max()) + 1, int(test.max()) + 1 if len(test) else 1)
    q = torch.bincount(train_labels.cpu().long(), minlength=n_classes).double()
    p = torch.bincount(test, minlength=n_classes).double()
    q, p = q / q.sum(), p / max(float(p.sum()), 1.0)
    majority = int(q.argmax())
    constant = torch.zeros(len(test), n_classes)
    constant[:, majority] = 1.0
    base = scores_from_logits(constant, test)
    present = (p > 0) | (q > 0)  # sklearn's macro average runs over the classes in the truth or the predictions
    guess_f1 = float((2 * p * q / (p + q).clamp_min(1e-12))[present].mean())
    name = str(label_names[majority]) if majority < len(label_names) else str(majority)
    accuracy, n = float(test_scores["accuracy"]), int(len(test))
    low, high = accuracy, accuracy
    if n:
        interval = wilson_interval(int(round(accuracy * n)), n, GUARD_LEVEL)
        low, high = interval.low, interval.high
    if length is not None and not isinstance(length, dict):
        length = length.to_dict()
    return TeacherCheck(accuracy=accuracy, macro_f1=float(test_scores["macro_f1"]),
                        baseline_accuracy=base["accuracy"], baseline_macro_f1=max(base["macro_f1"], guess_f1),
                        majority_class=name, max_length=int(max_length), train_rows=int(len(train_labels)),
                        test_rows=n, accuracy_low=float(low), accuracy_high=float(high), length=length,
                        teacher_seconds=float(teacher_seconds) if teacher_seconds else None)


def check_task_teacher(task: Task, test_scores: dict[str, Any], teacher_seconds: float | None = None
                       ) -> TeacherCheck:
    """:func:`check_teacher` on ``task``'s own splits: its training and test labels, label names, length."""
    return check_teacher(test_scores, task.encoded["train"]["labels"], task.encoded["test"]["labels"],
                         task.label_names, task.max_length, length=task.length, teacher_seconds=teacher_seconds)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else \
        f"{seconds / 3600:.1f} h"
