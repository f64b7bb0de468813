"""What the leak-free splits of issue 21 change on a teacher's test accuracy, isolated from every other change.

For each dataset given (default: the three whose old splits leaked most: SMS spam, BBC News, Tweets) at one
DataConfig (the app's default unless flags say otherwise), it draws the splits twice from the same frame:

- **old**: :func:`core.data.batches.split_rows`, rows as they are, so a repeated text can be in training *and*
  test (what every split was before issue 21);
- **new**: :func:`core.data.batches.make_splits`, one row per normalised text, texts with two labels left out.

Each pair of splits is tokenised the way :func:`core.data.task.prepare_task` does it and a teacher is fine-tuned
on each training split the way the app fine-tunes teachers (:func:`core.teacher.train_teacher`: the model's
:func:`core.teacher.default_train_config` with the precision setting, the classifier seeded with its seed,
:func:`core.train.fine_tune`, evaluation in the resolved precision). The teacher cache is bypassed on purpose:
an old-split teacher must never be stored where the app could find it, and neither teacher may be an old cached
one. Nothing is written but ``--out``.

Each teacher is evaluated per example on its own test split. Reported, with 95 % Wilson intervals
(:func:`core.stats.accuracy_interval`):

- ``old all``: the old teacher on all old test rows (the accuracy the app reported before the fix);
- ``old leaked``: on the old test rows whose normalised text is also in the old training split;
- ``old clean``: on the other old test rows;
- ``new``: the new teacher on the new test rows (what the app reports now);
- ``old - new``: the reported accuracy's change, with Newcombe's interval for a difference of two proportions
  on *independent* samples (:func:`core.stats.unpaired_difference`). The two test splits share most of their
  texts, so the samples are not independent; the interval is an approximation (usually a conservative one,
  as positively correlated samples make the true difference less noisy), not a paired one;
- ``leaked - clean``: the same interval between the two disjoint parts of the old test split.

The same seed draws both splits, but the new frame has fewer rows, so the two test splits are different
samples: the comparison is between the two ways of splitting, not between two models on the same rows::

    .venv/bin/python scripts/leak_effect.py                          # e5-small, default DataConfig, 3 datasets
    .venv/bin/python scripts/leak_effect.py sms-spam --model tiny-bert --train-cap 200 --val-cap 100 \\
        --test-cap 200 --out /tmp/leak_effect_test.json                # a quick check of the script itself
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(name, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core.config import DataConfig, to_dict  # noqa: E402
from core.data.batches import make_splits, split_rows  # noqa: E402
from core.data.splits import SPLIT_VERSION, normalise_text  # noqa: E402
from core.data.task import task_from_splits  # noqa: E402
from core.stats import Interval, accuracy_interval, unpaired_difference  # noqa: E402

DEFAULT_DATASETS = ("sms-spam", "bbc-news", "tweets")
DEFAULT_OUT = ROOT / "data" / "reference" / "leak_effect.json"
#: the ``splits`` entry of the old task's fingerprint: the old rows are not SPLIT_VERSION's
OLD_SPLITS = "split_rows (rows as they are, before issue 21)"


# ------------------------------------------------------------------------------------------ pure parts
def leaked_mask(test: pd.DataFrame, train: pd.DataFrame) -> np.ndarray:
    """Per row of ``test`` (in its order): whether its normalised text (:func:`core.data.splits.normalise_text`)
    also occurs in ``train``."""
    if len(test) == 0:
        return np.zeros(0, dtype=bool)
    seen = set(normalise_text(train["text"])) if len(train) else set()
    return normalise_text(test["text"]).isin(seen).to_numpy(dtype=bool)


def _interval(correct: np.ndarray) -> Interval | None:
    return accuracy_interval(correct) if len(correct) else None


def _row(name: str, iv: Interval | None) -> dict[str, Any]:
    if iv is None:
        return {f"{name}": None, f"{name} low": None, f"{name} high": None, f"{name} n": 0}
    return {f"{name}": iv.estimate, f"{name} low": iv.low, f"{name} high": iv.high, f"{name} n": iv.n}


def compare(old_correct: np.ndarray, old_leaked: np.ndarray, new_correct: np.ndarray) -> dict[str, Any]:
    """The measurement from per-example correctness: the old teacher's ``old_correct`` on its test rows (with
    ``old_leaked`` marking the rows whose text is in the old training split) and the new teacher's
    ``new_correct`` on its own test rows. Returns the accuracies with their Wilson intervals, the two unpaired
    differences (``None`` where a side is empty) and the counts."""
    old_correct = np.asarray(old_correct, dtype=bool)
    old_leaked = np.asarray(old_leaked, dtype=bool)
    new_correct = np.asarray(new_correct, dtype=bool)
    if old_correct.shape != old_leaked.shape:
        raise ValueError(f"{old_correct.size} old outcomes for {old_leaked.size} leak flags")
    leaked, clean = old_correct[old_leaked], old_correct[~old_leaked]
    old_vs_new = (unpaired_difference(int(old_correct.sum()), old_correct.size, int(new_correct.sum()),
                                      new_correct.size) if old_correct.size and new_correct.size else None)
    leaked_vs_clean = (unpaired_difference(int(leaked.sum()), leaked.size, int(clean.sum()), clean.size)
                       if leaked.size and clean.size else None)
    return {"n old test": int(old_correct.size), "n leaked": int(leaked.size), "n clean": int(clean.size),
            "n new test": int(new_correct.size),
            "old all": _interval(old_correct), "old leaked": _interval(leaked), "old clean": _interval(clean),
            "new": _interval(new_correct), "old - new": old_vs_new, "leaked - clean": leaked_vs_clean}


def flat(result: dict[str, Any]) -> dict[str, Any]:
    """``compare``'s result as JSON-ready scalars (intervals as dicts)."""
    return {k: (v.to_dict() if isinstance(v, Interval) else v) for k, v in result.items()}


def table_row(dataset: str, result: dict[str, Any]) -> dict[str, Any]:
    """One printed row: counts, then every interval as ``estimate [low, high]``."""
    row: dict[str, Any] = {"dataset": dataset}
    for k, v in result.items():
        row[k] = v.format(3) if isinstance(v, Interval) else ("-" if v is None else v)
    return row


# ------------------------------------------------------------------------------------------ training
def teach_and_test(task: Any, precision: str, device: Any, say: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Fine-tune a teacher on ``task`` as :func:`core.teacher.train_teacher` does, without its cache; return its
    per-example correctness on the test split (in ``task.splits.test`` order) and timings."""
    from core.models.registry import load_classifier
    from core.precision import resolve
    from core.teacher import default_train_config
    from core.train import fine_tune, per_example, predict_logits

    cfg = replace(default_train_config(task.model.key, task.num_labels), precision=precision)
    start = time.perf_counter()
    model = load_classifier(task.model, task.num_labels, dict(enumerate(task.label_names)), seed=cfg.seed)
    marks, last = {0.25, 0.5, 0.75}, None
    for p in fine_tune(model, task.encoded["train"], cfg, device=device):
        last = p
        hit = [m for m in marks if p.fraction >= m]
        if hit:
            marks -= set(hit)
            say(f"step {p.step}/{p.total_steps}, loss {p.loss:.3f}, {time.perf_counter() - start:.0f} s")
    train_s = time.perf_counter() - start
    resolved = resolve(cfg.precision, device)
    t0 = time.perf_counter()
    logits = predict_logits(model, task.encoded["test"], device=device, precision=resolved)
    outcomes = per_example(logits, task.encoded["test"]["labels"])
    eval_s = time.perf_counter() - t0
    correct = (outcomes["pred"] == outcomes["label"]).to_numpy(dtype=bool)
    return correct, {"train_s": round(train_s, 1), "eval_s": round(eval_s, 1),
                     "steps": last.total_steps if last else 0, "final_loss": last.loss if last else None,
                     "train_cfg": to_dict(cfg), "precision": resolved, "max_length": task.max_length,
                     "sizes": task.splits.sizes(), "fingerprint": task.fingerprint}


def measure(key: str, model: str, data_cfg: DataConfig, precision: str, device: Any) -> dict[str, Any]:
    from core.data.datasets import load_dataset
    from core.models.registry import get_model_spec
    from core.precision import resolve

    spec = get_model_spec(model)
    loaded = load_dataset(key)
    started = time.perf_counter()
    drawn = {"old": split_rows(loaded.frame, loaded.label_names, data_cfg),
             "new": make_splits(loaded.frame, loaded.label_names, data_cfg)}
    tags = {"old": OLD_SPLITS, "new": SPLIT_VERSION}
    correct, runs, leaked = {}, {}, None
    for arm in ("old", "new"):
        print(f"[{key}] {arm} splits {drawn[arm].sizes()}: tokenising for {spec.key}", flush=True)
        task = task_from_splits(spec, loaded, drawn[arm], data_cfg, tags[arm])
        if arm == "old":
            leaked = leaked_mask(task.splits.test, task.splits.train)
            print(f"[{key}] old splits: {int(leaked.sum())} of {len(leaked)} test rows have their text in "
                  "training", flush=True)
        print(f"[{key}] {arm} splits: training teacher ({task.max_length} tokens, precision "
              f"{resolve(precision, device)})", flush=True)
        correct[arm], runs[arm] = teach_and_test(task, precision, device,
                                                 lambda line, a=arm: print(f"[{key}] {a} splits: {line}", flush=True))
        print(f"[{key}] {arm} splits: teacher trained in {runs[arm]['train_s']:.0f} s, test accuracy "
              f"{correct[arm].mean():.3f} over {correct[arm].size} rows", flush=True)
    result = compare(correct["old"], leaked, correct["new"])
    return {"dataset": key, "result": result, "runs": runs, "seconds": round(time.perf_counter() - started, 1),
            "split_report": drawn["new"].report.to_dict()}


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    from core.cli.args import add_budget_args, length_settings, precision_line

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("datasets", nargs="*", default=list(DEFAULT_DATASETS),
                   help=f"dataset keys (default: {' '.join(DEFAULT_DATASETS)})")
    p.add_argument("--model", default="e5-small", help="model key (default e5-small; tiny-bert to test the script)")
    add_budget_args(p)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the JSON written (default {DEFAULT_OUT})")
    args = p.parse_args(argv)

    import torch

    from core.data.batches import default_device
    from core.precision import resolve
    from core.version import code_version

    device = default_device()
    print(precision_line(args.precision) + f" on {device}", flush=True)
    began = time.perf_counter()
    rows, records = [], []
    for key in args.datasets:
        cfg = DataConfig(train_cap=args.train_cap, val_cap=args.val_cap, test_cap=args.test_cap, seed=args.seed,
                         **length_settings(args, key))
        out = measure(key, args.model, cfg, args.precision, device)
        rows.append(table_row(key, out["result"]))
        records.append({"dataset": key, "data": to_dict(cfg), **flat(out["result"]), "runs": out["runs"],
                        "seconds": out["seconds"], "new_split_report": out["split_report"]})
    table = pd.DataFrame(rows).set_index("dataset")
    print()
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 40):
        print(table.T.to_string())
    print("\nintervals: 95 %; accuracies Wilson, differences Newcombe (independent samples; the old and new test "
          "splits share most texts, so not a paired interval)")
    payload = {"what": __doc__.splitlines()[0], "model": args.model, "precision_setting": args.precision,
               "precision": resolve(args.precision, device), "device": str(device), "seed": args.seed,
               "flags": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "version": code_version(), "torch": torch.__version__, "machine": platform.machine(),
               "seconds": round(time.perf_counter() - began, 1), "datasets": records}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
