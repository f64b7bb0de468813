"""Make (or bring up to date) the recorded pack the app ships: finished runs without their weights (issue 30).

Reads a run store without writing to it (its SQLite file opened read-only, so a study may be running into it) and
writes the pack folder (:mod:`core.runs.pack`): the runs' rows of the store's tables as Parquet, every artifact of
each run except model weights, and a manifest with the code version, precision, budget, date and each file's size
and sha256. It can be run again at any time: only files whose bytes changed are written, runs no longer picked are
removed, and an unchanged pack keeps its manifest and date. A pack over 20 MB, or a run whose summary disagrees
with its own step table and outcome files, is refused and nothing is written::

    .venv/bin/python scripts/make_pack.py --store /work/study/store --out data/pack          # the default pick
    .venv/bin/python scripts/make_pack.py --store DIR --out DIR --datasets trec --strategies rf_fusion oracle
    .venv/bin/python scripts/make_pack.py --store DIR --out DIR --runs 20261207-040647-811412 ...

The default pick is issue 30's: seed-0 pruning runs of TREC, SMS spam and Rotten Tomatoes with random-forest
fusion, the oracle, Weight-Entropy and top-down (the full-path study's first cells, data/studies/full-path.toml).
A cell that has not finished yet is simply not in the pack until it has: run the script again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.runs.pack import LIMIT_BYTES, load_pack  # noqa: E402
from core.runs.pack_make import (  # noqa: E402
    DEFAULT_DATASETS,
    DEFAULT_SEEDS,
    DEFAULT_STRATEGIES,
    PackRefused,
    PackSelection,
    make_pack,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True, type=Path, help="the run store to read (never written)")
    p.add_argument("--out", type=Path, default=ROOT / "data" / "pack", help="the pack folder (default data/pack)")
    p.add_argument("--datasets", nargs="+", default=list(DEFAULT_DATASETS))
    p.add_argument("--strategies", nargs="+", default=list(DEFAULT_STRATEGIES))
    p.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS))
    p.add_argument("--any", action="store_true", help="every finished pruning run (no dataset/strategy/seed filter)")
    p.add_argument("--runs", nargs="+", help="exactly these run ids (overrides the filters)")
    p.add_argument("--limit-mb", type=float, default=LIMIT_BYTES / 1e6, help="refuse a pack larger than this")
    args = p.parse_args(argv)
    if args.runs:
        selection = PackSelection(datasets=None, strategies=None, seeds=None, run_ids=tuple(args.runs))
    elif args.any:
        selection = PackSelection(datasets=None, strategies=None, seeds=None)
    else:
        selection = PackSelection(tuple(args.datasets), tuple(args.strategies), tuple(args.seeds))
    try:
        report = make_pack(args.store, args.out, selection, limit=int(args.limit_mb * 1e6))
    except PackRefused as exc:
        print(f"make_pack: refused, nothing written: {exc}", file=sys.stderr)
        return 1
    print(f"make_pack: {report.text()} -> {args.out}")
    pack = load_pack(args.out)  # what the app will read: checked the same way
    assert pack is not None
    for run in pack.list_runs():
        print(f"  {run.id}  {run.dataset:<16} {run.strategy:<16} recorded {pack.recorded_on(run)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
