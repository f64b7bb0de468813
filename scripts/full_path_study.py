"""Run the full-path study (``data/studies/full-path.toml``, issue 29 item 7) one (dataset, seed) tree at a time,
resumably across sessions, and remake ``data/reference`` after each tree.

A run store does not outlive a session here, so what is already measured is read from the committed files: the
full-path table ``data/reference/full_path.csv`` (at the study's budget) together with the recorded pack (``data/pack``
holds the study's seed-0 runs of TREC, SMS spam and Rotten Tomatoes for four strategies). For each tree still
missing a strategy it runs only the missing strategies (``core study run --bank-folder data/studies/full-path-bank
--only D --seeds S --strategies ...``: fusion trains on the bank frozen when the study began, so a grown
``data/bank`` does not change the study's rankers midway; one tree at a time, the strategies of a tree sharing their
teacher and each step's signals), then ``core study paper --store STORE``, which folds the tree's runs and their
per-example outcomes into ``data/reference`` (the paired comparisons need the same teacher: a retrained teacher is
the same model when the machine and code are (same seed, same data, deterministic CPU kernels: TREC's teacher
retrained this session scored exactly the pack's 0.93804 test accuracy and 0.23972 validation loss);
``core/studies/full_path_outcomes.py`` pairs runs only when their teachers' fingerprints agree).
Commit ``data/reference`` after each tree::

    nice -n 10 .venv/bin/python scripts/full_path_study.py --store /work/study/store --cache /work/study/cache
    .venv/bin/python scripts/full_path_study.py --dry-run        # what is done and what it would run
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.runs.pack import load_pack  # noqa: E402
from core.studies.config import StudyConfig  # noqa: E402
from core.studies.full_path import load_full_path  # noqa: E402

STUDY = ROOT / "data" / "studies" / "full-path.toml"
#: the bank as it stood when the study began (2 seeds, snapshot 39cbd3731c5bc86d), frozen: the fusion cells of every
#: tree train on the same rows and keep the pack's cell ids while data/bank grows (its third seed, issue 29 item 6)
FROZEN_BANK = ROOT / "data" / "studies" / "full-path-bank"


def measured(study: StudyConfig) -> set[tuple[str, int, str]]:
    """(dataset, seed, strategy) cells of the study already in the committed table or the recorded pack."""
    cap = study.data.train_cap
    done: set[tuple[str, int, str]] = set()
    full = load_full_path()
    if full is not None and not full.empty:
        rows = full[(full["train_cap"] == cap) & full["after_kd"].notna()]
        done |= {(str(r.dataset), int(r.seed), str(r.strategy)) for r in rows.itertuples()}
    pack = load_pack()
    for run in pack.list_runs() if pack is not None else []:
        data = dict(run.config.get("data") or {})
        if data.get("train_cap") == cap and run.status == "done":
            done.add((run.dataset, int(data.get("seed", run.config.get("seed", 0))), run.strategy))
    return done


def missing_trees(study: StudyConfig) -> list[tuple[str, int, list[str]]]:
    """Trees with strategies still to run, seed-major (every dataset at a seed before the next seed)."""
    done = measured(study)
    out = []
    for seed in study.seeds:
        for dataset in study.datasets:
            todo = [s for s in study.strategies if (dataset, seed, s) not in done]
            if todo:
                out.append((dataset, seed, todo))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="/work/study/store", help="run store outside the repository")
    parser.add_argument("--cache", default="/work/study/cache", help="model and teacher cache outside the repository")
    parser.add_argument("--study", default=str(STUDY))
    parser.add_argument("--dry-run", action="store_true", help="print what is done and what would run")
    args = parser.parse_args(argv)
    study = StudyConfig.load(args.study)
    trees = missing_trees(study)
    total = len(study.datasets) * len(study.seeds) * len(study.strategies)
    left = sum(len(t) for _, _, t in trees)
    print(f"{study.name}: {total - left} of {total} cells measured; {len(trees)} tree(s) to run", flush=True)
    for dataset, seed, todo in trees:
        print(f"  {dataset} seed {seed}: {' '.join(todo)}", flush=True)
    if args.dry_run:
        return 0
    env = {**os.environ, "PRUNE_STORE_DIR": args.store, "PRUNE_CACHE_DIR": args.cache}
    py = [sys.executable, "-m", "core"]
    for dataset, seed, todo in trees:
        print(f"=== {dataset} seed {seed}: {' '.join(todo)}", flush=True)
        subprocess.run([*py, "study", "run", "--bank-folder", str(FROZEN_BANK), "--config", args.study,
                        "--only", dataset, "--seeds", str(seed), "--strategies", *todo], env=env, cwd=ROOT, check=True)
        subprocess.run([*py, "study", "paper", "--store", args.store], env=env, cwd=ROOT, check=True)
        print(f"=== {dataset} seed {seed} done: commit data/reference", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
