"""How many evaluation texts leaked into training before splits were made leak-free (issue 21), and after.

For every embedded dataset (``package`` and ``synthetic`` sources of ``core.data.registry``; hub datasets too with
``--hub`` when they are cached) at a DataConfig (the default unless flags say otherwise), it draws the splits
the old way (:func:`core.data.batches.split_rows`: rows as they are) and the new way
(:func:`core.data.batches.make_splits`: one row per normalised text, conflicting labels left out) and prints, per
dataset: the test and validation texts that also occur in training (and test texts in validation), how many
test/validation rows the fix changed, and what it removed. No tokenizer or model is loaded::

    .venv/bin/python scripts/leak_report.py                 # default DataConfig, embedded datasets
    .venv/bin/python scripts/leak_report.py --seed 1 --val-cap 1000
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(name, "1")

import pandas as pd  # noqa: E402

from core.config import DataConfig  # noqa: E402
from core.data.batches import Splits, make_splits, split_rows  # noqa: E402
from core.data.datasets import load_dataset  # noqa: E402
from core.data.registry import DATASETS  # noqa: E402
from core.data.splits import normalise_text  # noqa: E402


def shared(a: pd.DataFrame, b: pd.DataFrame) -> int:
    """Rows of ``a`` whose normalised text also occurs in ``b``."""
    return int(normalise_text(a["text"]).isin(set(normalise_text(b["text"]))).sum())


def leaks(s: Splits) -> dict[str, int]:
    return {"test_in_train": shared(s.test, s.train), "val_in_train": shared(s.val, s.train),
            "test_in_val": shared(s.test, s.val)}


def changed(old: pd.DataFrame, new: pd.DataFrame) -> int:
    """Rows of the new split whose text was not in the old one."""
    return int((~normalise_text(new["text"]).isin(set(normalise_text(old["text"])))).sum())


def report(keys: list[str], cfg: DataConfig) -> pd.DataFrame:
    rows = []
    for key in keys:
        loaded = load_dataset(key)
        before, after = split_rows(loaded.frame, loaded.label_names, cfg), make_splits(loaded.frame,
                                                                                       loaded.label_names, cfg)
        b, a = leaks(before), leaks(after)
        rows.append({"dataset": key, "test before": len(before.test), "test": len(after.test),
                     "val before": len(before.val), "val": len(after.val),
                     **{f"{k} before": v for k, v in b.items()}, **{f"{k} after": v for k, v in a.items()},
                     "new test rows": changed(before.test, after.test), "new val rows": changed(before.val, after.val),
                     "repeats dropped": after.report.duplicate_rows,
                     "conflicting texts": after.report.conflicting_texts,
                     "conflicting rows": after.report.conflicting_rows})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = DataConfig()
    p.add_argument("--seed", type=int, default=default.seed)
    p.add_argument("--train-cap", type=int, default=default.train_cap)
    p.add_argument("--val-cap", type=int, default=default.val_cap)
    p.add_argument("--test-cap", type=int, default=default.test_cap)
    p.add_argument("--hub", action="store_true", help="also the hub datasets (they must be in the local cache)")
    args = p.parse_args(argv)
    cfg = DataConfig(train_cap=args.train_cap, val_cap=args.val_cap, test_cap=args.test_cap, seed=args.seed)
    sources = ("package", "synthetic", "hub") if args.hub else ("package", "synthetic")
    keys = [k for k, spec in DATASETS.items() if spec.source in sources]
    table = report(keys, cfg)
    print(f"DataConfig: {cfg}")
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table.set_index("dataset").T.to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
