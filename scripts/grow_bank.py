"""Grow the shipped profile bank by the paths it still lacks, one (dataset, seed) at a time, resumably.

Reads the bank's study file (default ``data/studies/bank.toml``) and ``data/bank/manifest.json``. For every
(model, dataset, seed) of the study that the shipped bank does not hold yet (seed-major: every dataset at the
first seed before any second seed), it runs that one cell with ``python -m core study run`` into a run
store outside the repository, then folds the store's finished paths into the bank with
``python -m core study bank --add``. A finished cell is never run twice (the study engine reuses it),
so the script can be killed at any point and started again, in this session or the next one::

    nice -n 10 .venv/bin/python scripts/grow_bank.py --store /work/bank/store          # all that is missing
    .venv/bin/python scripts/grow_bank.py --store DIR --dry-run                         # what it would run
    .venv/bin/python scripts/grow_bank.py --store DIR --datasets tweets 20newsgroups --seeds 0

Then ``python -m core study paper`` remakes the paper check from the grown bank; commit ``data/bank`` and
``data/reference``.

Each path folded in brings its oracle's per-example outcomes (``steps/<k>/outcomes/oracle_val.parquet``) into the
bank's companion ``outcomes.parquet``, which lets the paper check score on held-out halves with a noise floor.
To regrow the whole bank (after a change that makes the shipped one stale, e.g. leak-free splits), grow into an
empty folder with a fresh store, then copy the folder over ``data/bank`` once every path is in::

    nice -n 10 .venv/bin/python scripts/grow_bank.py --store /work/bank/store-v2 --bank /work/bank/v2

When a change moves only some datasets' splits (split version 3 moved TREC, BBC News, Rotten Tomatoes, SMS spam and
Tweets; the other three draw exactly the rows of version 2), start the new folder from the shipped bank without the
moved datasets' paths, and grow the rest::

    nice -n 10 .venv/bin/python scripts/grow_bank.py --store /work/bank/store --bank /work/bank/v3 \
        --start-from data/bank --drop trec bbc-news rotten-tomatoes sms-spam tweets
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.fusion.bank import load_bank, load_outcomes  # noqa: E402
from core.fusion.bank_build import merge_outcomes, write_bank  # noqa: E402
from core.studies.config import StudyConfig  # noqa: E402


def missing_paths(study: StudyConfig, manifest: dict) -> list[tuple[str, str, int]]:
    """(model, dataset, seed) of the study that the manifest's coverage lacks, seed-major."""
    have = {(c["model"], c["dataset"], int(s)) for c in manifest.get("coverage", []) for s in c["seeds"]}
    return [(m, d, s) for s in study.seeds for m in study.models for d in study.datasets if (m, d, s) not in have]


def _shown(path: str) -> str:
    """A path as the manifest records it: relative to the repository when inside it."""
    full = Path(path).resolve()
    return str(full.relative_to(ROOT)) if full.is_relative_to(ROOT) else path


def start_from(source: str, folder: str, drop: list[str], study_file: str) -> None:
    """Write ``folder`` as the bank in ``source`` without the paths of the ``drop`` datasets (their per-example
    outcomes too); the provenance (precision, note) is the source's."""
    bank = load_bank(source)
    unknown = sorted(set(drop) - set(bank.rows["dataset"]))
    if unknown:
        raise SystemExit(f"--drop: {', '.join(unknown)} not in the bank at {source} "
                         f"(it holds {', '.join(sorted(bank.rows['dataset'].unique()))})")
    rows = bank.rows[~bank.rows["dataset"].isin(drop)].reset_index(drop=True)
    outcomes = merge_outcomes(load_outcomes(source, bank), None, rows)  # those of the kept runs
    write_bank(rows, folder, study_file=study_file, note=str(bank.manifest.get("note") or ""), outcomes=outcomes,
               precision=bank.manifest.get("precision"))
    print(f"started {folder} from {source}: {len(rows)} of {len(bank.rows)} layer-steps kept, "
          f"without {', '.join(drop)}", flush=True)


def _cli(args: list[str], store: str) -> int:
    env = {**os.environ, "PRUNE_STORE_DIR": store, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, env=env).returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True, help="a run store outside the repository (kept between sessions)")
    p.add_argument("--study-file", default=str(ROOT / "data" / "studies" / "bank.toml"))
    p.add_argument("--bank", default=str(ROOT / "data" / "bank"))
    p.add_argument("--datasets", nargs="+", help="only these datasets (default: the study's)")
    p.add_argument("--seeds", nargs="+", type=int, help="only these seeds (default: the study's)")
    p.add_argument("--dry-run", action="store_true", help="list the missing paths and stop")
    p.add_argument("--start-from", default=None, help="a bank to start an empty --bank folder from (with --drop)")
    p.add_argument("--drop", nargs="+", default=[], help="datasets whose paths --start-from leaves out (regrown)")
    args = p.parse_args(argv)

    study = StudyConfig.load(args.study_file)
    manifest_file = Path(args.bank) / "manifest.json"
    starting = bool(args.start_from) and not manifest_file.is_file()
    if args.start_from and not starting:
        print(f"{args.bank} already holds a bank: --start-from is ignored (growing what is there)", flush=True)
    elif starting and not args.dry_run:
        start_from(args.start_from, args.bank, args.drop, _shown(args.study_file))
    if starting and args.dry_run:  # what the started folder would hold
        source = json.loads((Path(args.start_from) / "manifest.json").read_text())
        manifest = {"coverage": [c for c in source.get("coverage", []) if c["dataset"] not in args.drop]}
    else:
        manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
    todo = [t for t in missing_paths(study, manifest)
            if (not args.datasets or t[1] in args.datasets) and (not args.seeds or t[2] in args.seeds)]
    print(f"{len(todo)} path(s) missing from {args.bank}: " + ", ".join(f"{d} seed {s}" for _, d, s in todo),
          flush=True)
    if args.dry_run or not todo:
        return 0
    d = study.data
    failed = []
    for i, (model, dataset, seed) in enumerate(todo, 1):
        start = time.monotonic()
        print(f"[{i}/{len(todo)}] {time.strftime('%H:%M:%S')} {model} {dataset} seed {seed}: running", flush=True)
        rc = _cli(["study", "run", "--name", f"bank {dataset} s{seed}", "--models", model, "--datasets", dataset,
                   "--strategies", *study.strategies, "--seeds", str(seed), "--layers", str(study.layers_to_remove),
                   "--epochs", str(study.step_epochs), "--calibration", str(study.calibration_size),
                   "--train-cap", str(d.train_cap), "--val-cap", str(d.val_cap), "--test-cap", str(d.test_cap),
                   "--max-length", str(d.max_length), *([] if study.distill else ["--no-distill"])], args.store)
        if rc != 0:
            failed.append(f"{dataset} seed {seed}")
            print(f"[{i}/{len(todo)}] {dataset} seed {seed}: the study failed (exit {rc}); run again to retry",
                  flush=True)
            continue
        rc = _cli(["study", "bank", "--add", "--out", args.bank, "--study-file", _shown(args.study_file)], args.store)
        grown = json.loads(manifest_file.read_text()) if rc == 0 and manifest_file.is_file() else {}
        outcomes = grown.get("outcomes") or {}
        print(f"[{i}/{len(todo)}] {dataset} seed {seed}: done in {(time.monotonic() - start) / 60:.1f} min; "
              f"bank {'updated' if rc == 0 else f'NOT updated (exit {rc})'}"
              + (f"; {grown.get('rows', 0)} layer-steps, {outcomes.get('layer_steps', 0)} with per-example outcomes"
                 if grown else ""), flush=True)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
