"""What changed between two profile banks (e.g. the shipped v1 bank and a regrown v2 one), per dataset in both.

Each bank is a folder with ``profiles.parquet`` and ``manifest.json`` (and optionally ``outcomes.parquet``), read
and checked by :func:`core.fusion.bank.load_bank` / :func:`core.fusion.bank.load_outcomes`. For every dataset the
two banks share, the script prints one table row: the seeds in each bank; the validation rows (the data config's
``val_cap`` and, where the bank has per-example outcomes, how many examples each layer-step was actually scored
on); the step-1 oracle validation accuracy (mean over the candidate layers and the best removal, each averaged
over seeds; old, new and new - old); how well the two banks agree on the step-1 ranking of the layers by
``oracle_accuracy`` (Spearman, over seeds present in both) next to how well two seeds of the same bank agree (the
noise floor); and how many of the layers the oracle removed along its path the two banks share. A second table
lists the removal paths themselves, per seed. The precision, split version and oracle criterion of each bank
come first, a legend last::

    .venv/bin/python scripts/compare_banks.py /tmp/oldbank /work/bank/v2
    .venv/bin/python scripts/compare_banks.py data/bank /work/bank/v2 --markdown   # tables in Markdown

The path is exact where the bank records it: the layer removed at step k is the one in step k+1's
``removed_so_far`` (a JSON list of original layer indices) that is not in step k's. The last step's choice is not
recorded, so it is recomputed with the oracle's rule (:func:`core.oracle.best_layer`): the lowest KL to the current
model (``oracle_kl_to_current``; then highest accuracy, then lowest loss) when every row of the step has a KL, else
the highest accuracy (then lowest loss). The header says how many recorded choices that rule reproduces, a check
that it is the right rule.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(name, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from core.fusion.bank import BankError, load_bank, load_outcomes  # noqa: E402

LEGEND = """\
legend (old = first bank, new = second; a cell is NaN or '-' where a bank cannot say):
  seeds old/new     seeds of the dataset in each bank
  cap old/new       val_cap of the runs' data config (an upper bound on validation rows)
  n old/new         validation examples each layer-step was scored on, from outcomes.parquet ('-': no outcomes)
  acc mean *        step-1 oracle validation accuracy, mean over the candidate layers, averaged over seeds
  acc best *        step-1 oracle validation accuracy of the best removal (max over layers), averaged over seeds
  d ...             new - old (the banks use different validation rows, so this is not a paired difference)
  rho old~new       Spearman correlation of the step-1 layer ranking by oracle_accuracy, old vs new, same seed,
                    averaged over the seeds in both (k = how many)
  rho seeds old/new the same statistic between two seeds of one bank, averaged over all its seed pairs: the
                    seed-to-seed noise floor; rho old~new well below it means the banks rank layers differently
  shared            removed layers (sets, order ignored) the two paths share, averaged over the seeds in both,
                    out of the path length (6 for 12-layer runs pruned to 6)
  path table        the original layers removed, in order; the last one is recomputed with the oracle's rule"""


# ------------------------------------------------------------------------------------------------ pure parts
def parse_removed(value: object) -> list[int]:
    """``removed_so_far`` as stored (a JSON list of original layer indices, e.g. ``"[5, 3]"``) as a list."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() in ("", "[]"):
        return []
    return [int(v) for v in json.loads(str(value))]


#: the KL to the step's current model (``oracle_kl`` in banks from before the rename; either is read)
KL_COLUMNS = ("oracle_kl_to_current", "oracle_kl")


def _kl_column(step_rows: pd.DataFrame) -> str | None:
    return next((c for c in KL_COLUMNS if c in step_rows.columns), None)


def oracle_criterion(step_rows: pd.DataFrame) -> str:
    """``"kl"`` when every row has a finite KL to the step's current model (the v2 oracle), else ``"accuracy"``."""
    kl = _kl_column(step_rows)
    if kl is not None and np.isfinite(step_rows[kl].to_numpy(dtype=float)).all():
        return "kl"
    return "accuracy"


def chosen_layer(step_rows: pd.DataFrame) -> int:
    """The original layer the oracle removes at one step, by the rule of :func:`core.oracle.best_layer`: lowest
    KL, then highest accuracy, then lowest loss; without a KL on every row, highest accuracy, then lowest loss."""
    rows = step_rows.sort_values("original_layer", kind="stable")
    if oracle_criterion(rows) == "kl":
        keys, ascending = [str(_kl_column(rows)), "oracle_accuracy", "oracle_loss"], [True, False, True]
    else:
        keys, ascending = ["oracle_accuracy", "oracle_loss"], [False, True]
    return int(rows.sort_values(keys, ascending=ascending, kind="stable").iloc[0]["original_layer"])


def removal_path(run_rows: pd.DataFrame) -> tuple[list[int], int, int]:
    """The original layers one run's oracle removed, in order, and (agree, recorded): of the choices its
    ``removed_so_far`` records, how many :func:`chosen_layer` reproduces. Step k's choice is the layer in step
    k+1's ``removed_so_far`` that is not in step k's; the last step's is :func:`chosen_layer`'s."""
    steps = sorted(int(s) for s in run_rows["step"].unique())
    by_step = {s: run_rows[run_rows["step"] == s] for s in steps}
    removed = {s: parse_removed(by_step[s]["removed_so_far"].iloc[0]) for s in steps}
    path: list[int] = []
    agree = recorded = 0
    for i, step in enumerate(steps):
        rule = chosen_layer(by_step[step])
        following = steps[i + 1] if i + 1 < len(steps) else None
        if following == step + 1:
            new = [layer for layer in removed[following] if layer not in set(removed[step])]
            if len(new) != 1:
                raise ValueError(f"run {run_rows['run_id'].iloc[0]}: steps {step} -> {following} removed {new}, "
                                 "expected exactly one layer")
            path.append(new[0])
            recorded += 1
            agree += int(new[0] == rule)
        else:
            path.append(rule)
    return path, agree, recorded


def rank_agreement(a: pd.DataFrame, b: pd.DataFrame, column: str = "oracle_accuracy") -> float:
    """Spearman correlation of ``column`` between two step tables, matched on ``original_layer``; NaN when fewer
    than three layers have a finite value in both or either side is constant."""
    both = a[["original_layer", column]].merge(b[["original_layer", column]], on="original_layer")
    both = both[np.isfinite(both[f"{column}_x"].astype(float)) & np.isfinite(both[f"{column}_y"].astype(float))]
    if len(both) < 3 or both[f"{column}_x"].nunique() < 2 or both[f"{column}_y"].nunique() < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(both[f"{column}_x"], both[f"{column}_y"]).statistic)


def nan_mean(values: list[float]) -> float:
    """The mean of the finite values; NaN (without a warning) when there are none."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def overlap(a: list[int], b: list[int]) -> int:
    """How many layers two removal paths share, order ignored."""
    return len(set(a) & set(b))


# ------------------------------------------------------------------------------------------------ per bank
def _runs(rows: pd.DataFrame) -> dict[int, pd.DataFrame]:
    """seed -> that seed's run (the latest run id if a seed has several)."""
    out = {}
    for seed, part in rows.groupby("seed", sort=True):
        last = sorted(part["run_id"].astype(str).unique())[-1]
        out[int(seed)] = part[part["run_id"].astype(str) == last]
    return out


def _step1(run: pd.DataFrame) -> pd.DataFrame:
    return run[run["step"] == run["step"].min()]


def _caps(rows: pd.DataFrame) -> str:
    caps = sorted({json.loads(c).get("val_cap") for c in rows["data_config"].dropna().unique()}, key=str)
    return ",".join(str(c) for c in caps) if caps else "-"


def _scored(rows: pd.DataFrame, outcomes: pd.DataFrame | None) -> str:
    if outcomes is None or outcomes.empty:
        return "-"
    mine = outcomes[outcomes["run_id"].isin(set(rows["run_id"].astype(str)))]
    if mine.empty:
        return "-"
    sizes = mine.groupby(["run_id", "step", "original_layer"]).size()
    lo, hi = int(sizes.min()), int(sizes.max())
    return str(lo) if lo == hi else f"{lo}-{hi}"


def compare(old: pd.DataFrame, new: pd.DataFrame, old_outcomes: pd.DataFrame | None = None,
            new_outcomes: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, tuple[int, int]]]:
    """The per-dataset summary, the per-seed path table, and per bank (agree, recorded) for the oracle-rule check.
    Datasets (``model/dataset`` when the banks hold several models) in both banks only."""
    def key(rows: pd.DataFrame) -> pd.Series:
        if pd.concat([old["model"], new["model"]]).nunique() > 1:
            return rows["model"].astype(str) + "/" + rows["dataset"].astype(str)
        return rows["dataset"].astype(str)

    old, new = old.assign(_key=key(old)), new.assign(_key=key(new))
    check = {"old": (0, 0), "new": (0, 0)}
    summary, paths = [], []
    for name in sorted(set(old["_key"]) & set(new["_key"])):
        o_runs, n_runs = _runs(old[old["_key"] == name]), _runs(new[new["_key"] == name])
        o_paths, n_paths = {}, {}
        for label, runs, out in (("old", o_runs, o_paths), ("new", n_runs, n_paths)):
            for seed, run in runs.items():
                out[seed], agree, recorded = removal_path(run)
                a, r = check[label]
                check[label] = (a + agree, r + recorded)
        acc = {label: [_step1(run)["oracle_accuracy"].astype(float) for run in runs.values()]
               for label, runs in (("old", o_runs), ("new", n_runs))}
        mean = {label: nan_mean([float(s.mean()) for s in v]) for label, v in acc.items()}
        best = {label: nan_mean([float(s.max()) for s in v]) for label, v in acc.items()}
        common = sorted(set(o_runs) & set(n_runs))
        cross = [rank_agreement(_step1(o_runs[s]), _step1(n_runs[s])) for s in common]
        within = {label: nan_mean([rank_agreement(_step1(runs[a]), _step1(runs[b]))
                                   for a, b in itertools.combinations(sorted(runs), 2)])
                  for label, runs in (("old", o_runs), ("new", n_runs))}
        shared = [overlap(o_paths[s], n_paths[s]) for s in common]
        length = max((len(p) for p in [*o_paths.values(), *n_paths.values()]), default=0)
        o_sub, n_sub = old[old["_key"] == name], new[new["_key"] == name]
        summary.append({
            "dataset": name, "seeds old": ",".join(map(str, o_runs)), "seeds new": ",".join(map(str, n_runs)),
            "cap old": _caps(o_sub), "cap new": _caps(n_sub),
            "n old": _scored(o_sub, old_outcomes), "n new": _scored(n_sub, new_outcomes),
            "acc mean old": mean["old"], "acc mean new": mean["new"], "d acc mean": mean["new"] - mean["old"],
            "acc best old": best["old"], "acc best new": best["new"], "d acc best": best["new"] - best["old"],
            "rho old~new": nan_mean(cross), "k": len([c for c in cross if np.isfinite(c)]),
            "rho seeds old": within["old"], "rho seeds new": within["new"],
            "shared": f"{np.mean(shared):.2f}/{length}" if shared else "-"})
        for seed in sorted(set(o_paths) | set(n_paths)):
            o_path, n_path = o_paths.get(seed), n_paths.get(seed)
            paths.append({"dataset": name, "seed": seed,
                          "old path": " ".join(map(str, o_path)) if o_path is not None else "-",
                          "new path": " ".join(map(str, n_path)) if n_path is not None else "-",
                          "shared": overlap(o_path, n_path) if o_path is not None and n_path is not None else "-"})
    return pd.DataFrame(summary), pd.DataFrame(paths), check


# ------------------------------------------------------------------------------------------------ output
def _cell(value: object) -> str:
    if isinstance(value, float):
        return "NaN" if np.isnan(value) else f"{value:.3f}"
    return str(value)


def as_markdown(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table (no dependency on tabulate); floats to three decimals."""
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def as_text(frame: pd.DataFrame) -> str:
    return frame.to_string(index=False, float_format=lambda v: f"{v:.3f}")


def _describe(label: str, folder: Path, bank, rows: pd.DataFrame) -> str:
    manifest = bank.manifest
    steps = rows.groupby(["run_id", "step"])
    kl = sum(oracle_criterion(part) == "kl" for _, part in steps)
    criterion = "min KL to the current model" if kl == steps.ngroups else "max oracle_accuracy" if kl == 0 else "mixed"
    return (f"{label}: {folder}  precision {manifest.get('precision', '-')}, split_version "
            f"{manifest.get('split_version', '-')}, {len(rows)} rows, {rows['dataset'].nunique()} datasets, "
            f"oracle rule {criterion}, outcomes {'yes' if bank.outcomes is not None else 'no'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="the first bank's folder (profiles.parquet, manifest.json)")
    parser.add_argument("new", type=Path, help="the second bank's folder")
    parser.add_argument("--markdown", action="store_true", help="print the tables in Markdown")
    args = parser.parse_args(argv)

    try:
        banks = [load_bank(args.old), load_bank(args.new)]
        outcomes = [load_outcomes(folder, bank) for folder, bank in zip((args.old, args.new), banks, strict=True)]
    except BankError as exc:
        print(exc, file=sys.stderr)
        return 1
    summary, paths, check = compare(banks[0].rows, banks[1].rows, *outcomes)
    for label, folder, bank in (("old", args.old, banks[0]), ("new", args.new, banks[1])):
        agree, recorded = check[label]
        print(_describe(label, folder, bank, bank.rows) + f"; the rule reproduces {agree}/{recorded} recorded choices")
    only = {label: sorted(set(b.rows["dataset"]) - set(other.rows["dataset"]))
            for label, b, other in (("old", banks[0], banks[1]), ("new", banks[1], banks[0]))}
    for label, names in only.items():
        if names:
            print(f"only in {label}: {', '.join(names)}")
    if summary.empty:
        print("no dataset is in both banks")
        return 0
    render = as_markdown if args.markdown else as_text
    print()
    print(render(summary))
    print()
    print(render(paths))
    print()
    print(LEGEND)
    return 0


if __name__ == "__main__":
    sys.exit(main())
