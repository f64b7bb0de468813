"""Plant the six bugs of issue 15 one at a time in a throwaway copy and check that a test catches each.

Each bug is a small, plausible edit of the science code that the suite once let through. For each one the
script copies ``core/``, ``tests/`` and ``pytest.ini`` to a temporary folder, applies the edit (it must match
the code exactly once, so a refactor that moves the code makes the script say so instead of passing), runs
the named test there, and reports whether the test failed (caught) or passed (missed). The working tree is
never modified. Run on demand (about 3 minutes on 2 cores)::

    .venv/bin/python scripts/plant_bugs.py            # all six
    .venv/bin/python scripts/plant_bugs.py 3 6        # some of them

Exit status 0 only when every planted bug was caught.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Bug:
    what: str
    file: str
    old: str
    new: str
    test: str


BUGS = (
    Bug("cross-batch covariance merge transposed (Redundancy-MI wrong over several batches)",
        "core/signals/stats.py",
        "stats.cross += cross_b + factor",
        "stats.cross += cross_b.transpose(1, 2) + factor",
        "tests/test_signals_batching.py"),
    Bug("leave-one-dataset-out keeps other runs of the pruned dataset",
        "core/fusion/protocol.py",
        'elsewhere = usable[usable["dataset"] != dataset]',
        'elsewhere = usable[usable["run_id"] != run_id]',
        "tests/test_fusion.py::test_leave_one_dataset_out_never_trains_on_any_row_of_the_pruned_dataset"),
    Bug("fusion removes the layer with the lowest predicted score",
        "core/fusion/rank.py",
        "chosen_layer=layers[int(np.argmax(scores))]",
        "chosen_layer=layers[int(np.argmin(scores))]",
        "tests/test_fusion.py::test_fusion_removes_the_argmax_of_its_stored_prediction"),
    Bug("FFN merge ties the window to its first layer, not the chosen reference",
        "core/merging/ffn.py",
        "    _tie(new, window, ref)",
        "    _tie(new, window, window[0])",
        "tests/test_merge.py::test_every_layer_of_the_window_shares_the_mean_in_the_reference_order"),
    Bug("run store writes JSON artifacts in place (a failed write destroys the previous version)",
        "core/runs/store.py",
        "atomic_write_text(path, json.dumps(_clean(obj), indent=1, allow_nan=False))",
        "path.write_text(json.dumps(_clean(obj), indent=1, allow_nan=False))",
        "tests/test_store_atomic.py"),
    Bug("the oracle is computed on the test split",
        "core/pruning/tree.py",
        "oracle_with_logits(model, ctx.val, device=s.device, precision=s.precision)",
        "oracle_with_logits(model, ctx.test, device=s.device, precision=s.precision)",
        "tests/test_oracle_split.py"),
)


def plant(bug: Bug, work: Path) -> str:
    """``caught``, ``MISSED`` or ``stale`` (the edit no longer matches the code once)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for part in ("core", "tests"):
        shutil.copytree(ROOT / part, work / part, ignore=shutil.ignore_patterns("__pycache__", "artifacts"))
    shutil.copy(ROOT / "pytest.ini", work / "pytest.ini")
    path = work / bug.file
    text = path.read_text()
    if text.count(bug.old) != 1:
        return "stale"
    path.write_text(text.replace(bug.old, bug.new))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(work)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", bug.test],
                          cwd=work, env=env, capture_output=True, text=True)
    return "caught" if proc.returncode == 1 else ("MISSED" if proc.returncode == 0 else f"error {proc.returncode}")


def main(argv: list[str]) -> int:
    chosen = [int(a) for a in argv] or list(range(1, len(BUGS) + 1))
    results = {}
    with tempfile.TemporaryDirectory(prefix="plant-") as tmp:
        for i in chosen:
            bug = BUGS[i - 1]
            results[i] = plant(bug, Path(tmp) / f"bug{i}")
            print(f"{i}. {results[i]:<7} {bug.what}\n   by {bug.test}", flush=True)
    caught = sum(r == "caught" for r in results.values())
    print(f"caught {caught} of {len(results)} planted bugs")
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
