"""Make the lesson's precomputed sentence readings from a fine-tuned teacher (issue 31, chapter 1).

Reads a cached teacher (never trains one), runs each preset sentence of its dataset (``core.lesson.readings.PRESETS``)
through it with no layer switched off and with each layer switched off in turn, and writes
``data/readings/<model>__<dataset>.json`` plus the folder's manifest (sizes and sha256)::

    .venv/bin/python scripts/make_readings.py --cache /work/study/cache --model e5-small --dataset trec
    .venv/bin/python scripts/make_readings.py --teacher 87016a62fa1c74917110 --out DIR

Without ``--teacher`` it takes the cached teacher of ``--model`` on ``--dataset`` with data seed ``--seed`` (the
newest when several match). A few seconds per sentence on a CPU for e5-small.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.lesson.readings import PRESETS, make_readings, write_readings  # noqa: E402
from core.playground import PlaygroundError, cached_teachers, load_teacher  # noqa: E402
from core.runs.store import RunStore  # noqa: E402
from core.version import code_version  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, help="the teacher cache folder (PRUNE_CACHE_DIR; default: the user cache)")
    p.add_argument("--teacher", help="the teacher's cache key (default: found from --model, --dataset, --seed)")
    p.add_argument("--model", default="e5-small")
    p.add_argument("--dataset", default="trec")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="the readings folder (default data/readings)")
    args = p.parse_args(argv)
    if args.cache is not None:
        os.environ["PRUNE_CACHE_DIR"] = str(args.cache)

    key = args.teacher
    if key is None:
        found = [t for t in cached_teachers() if t.model == args.model and t.dataset == args.dataset
                 and int(t.data.get("seed", 0)) == args.seed]
        if not found:
            print(f"make_readings: no cached teacher of {args.model} on {args.dataset} (seed {args.seed}); train one "
                  "first (a run, or `python -m core teach`)", file=sys.stderr)
            return 1
        key = found[0].key
    try:
        with tempfile.TemporaryDirectory() as tmp:  # uploads are looked up in a store: an empty one
            loaded = load_teacher(key, RunStore(tmp))
    except PlaygroundError as exc:
        print(f"make_readings: {exc}", file=sys.stderr)
        return 1
    dataset = str(loaded.task.dataset_key)
    sentences = PRESETS.get(dataset)
    if not sentences:
        print(f"make_readings: no preset sentences for {dataset} (core.lesson.readings.PRESETS)", file=sys.stderr)
        return 1
    data = make_readings(loaded, sentences, code_version())
    path = write_readings(data, args.out)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}: {len(sentences)} sentences x "
          f"{len(data['layers']) + 1} readings, teacher {key}, precision {data['precision']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
