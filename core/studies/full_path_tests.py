"""The full-path study's comparisons (issue 29 item 7): which strategy leaves the most accurate 6-layer model after
fine-tuning and distillation, and does the choice of layers still matter after that recovery?

Everything here stands on the committed files alone: ``full_path.csv`` (which run is which, and whether its teacher
is shared: column ``pairing``) and ``full_path_outcomes.parquet`` (each run's per-example test correctness before
and after KD: :mod:`core.studies.full_path_outcomes`). Only runs of one budget (``train_cap``) are compared, and
only runs pruned from the same teacher, on the same test rows, are paired.

Per comparison of strategies A and B at one stage (``after_kd``: the distilled model; ``before_kd``: after the last
removal's fine-tuning), the difference is **accuracy of A minus accuracy of B**, in points (> 0: A is more
accurate):

- per tree (one dataset and seed, one teacher): the paired difference on the same test rows with its 95 % paired
  bootstrap interval and McNemar's exact p (:func:`core.stats.paired_accuracy_difference`);
- over datasets: exactly what :func:`core.studies.dataset_tests.compare` does for the one-step table, with the test
  rows in the place of the steps: the two-level bootstrap (datasets, then each dataset's test rows over its seeds),
  the exact sign-flip test over the dataset means, and for a difference within noise the datasets x seeds that
  would separate it. **Beyond noise** only when both the bootstrap and the sign-flip test say so.

**Does the choice matter** (rows with ``a`` = :data:`SPREAD`): per tree, the accuracy of its most accurate strategy
minus its least accurate one. The largest of several noisy accuracies minus the smallest is above 0 even when every
strategy is equally good, so it is tested against what test-row noise alone gives: a permutation test that, on every
test row, shuffles the strategies' outcomes among them (under "the choice does not matter" the strategies are
exchangeable on each row). Over trees the statistic is the mean over datasets of each dataset's mean spread, with the
same shuffles in every tree.

Every row says how many trees, datasets and seeds it stands on; nothing is extrapolated to trees not measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.paths import atomic_write_text
from core.stats import paired_accuracy_difference
from core.stats.datasets import permutation_p
from core.studies.claims import PAPER, Claim
from core.studies.dataset_tests import NOT_SINGLE, compare
from core.studies.full_path import train_caps
from core.studies.full_path_outcomes import NO_OUTCOMES

TESTS_FILE = "full_path_tests.csv"
TREES_FILE = "full_path_trees.csv"
#: the stages compared: the distilled model, and the model after the last fine-tuning (before KD)
STAGES = ("after_kd", "before_kd")
#: the ``a`` of the "does the choice matter" rows (best minus worst strategy per tree)
SPREAD = "spread"
#: permutations of the spread test (seeded)
PERMUTATIONS = 2000
ALPHA = 0.05


@dataclass
class Tree:
    """The runs of one (model, dataset, seed) pruned from one teacher, on the same test rows: per strategy and
    stage the 0/1 correctness on the teacher's test rows (in example order)."""

    model: str
    dataset: str
    seed: int
    teacher: str
    examples: np.ndarray
    correct: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    def strategies(self, stage: str) -> list[str]:
        return sorted(k for k, s in self.correct if s == stage)


def trees(full: pd.DataFrame | None, outcomes: pd.DataFrame | None, cap: int) -> list[Tree]:
    """The paired trees of budget ``cap``: one per (model, dataset, seed) (the teacher shared by most of its runs,
    when runs of one tree were pruned from different teachers), each run's outcomes aligned on the teacher's test
    rows. A run whose rows or labels differ from its teacher's is left out (it cannot be paired)."""
    if full is None or full.empty or outcomes is None or outcomes.empty or "teacher_outcomes" not in full.columns:
        return []
    f = full[(pd.to_numeric(full["train_cap"], errors="coerce") == cap) & full["teacher_outcomes"].notna()]
    if "pairing" in f.columns:
        f = f[f["pairing"] != NO_OUTCOMES]
    # a teacher's rows are kept once (by its fingerprint), whichever budget's run brought them
    o = outcomes[(outcomes["train_cap"] == cap) | (outcomes["stage"] == "teacher")]
    by_run = {str(k): g.sort_values("example") for k, g in o.groupby("run_id", sort=False)}
    out: list[Tree] = []
    for (model, dataset, seed), g in f.groupby(["model", "dataset", "seed"], sort=True):
        fp = str(g["teacher_outcomes"].value_counts().index[0])  # ties: the first teacher by count then order
        teacher = by_run.get(f"teacher:{fp}")
        if teacher is None:
            continue
        tree = Tree(str(model), str(dataset), int(seed), fp, teacher["example"].to_numpy())
        labels = teacher["label"].to_numpy()
        for r in g[g["teacher_outcomes"] == fp].sort_values("run_id").itertuples():  # the latest run of a strategy
            rows = by_run.get(str(r.run_id))
            if rows is None:
                continue
            for stage, s in rows.groupby("stage"):
                if np.array_equal(s["example"].to_numpy(), tree.examples) and \
                        np.array_equal(s["label"].to_numpy(), labels):
                    tree.correct[(str(r.strategy), str(stage))] = s["correct"].to_numpy(dtype=bool)
        if tree.correct:
            out.append(tree)
    return out


def pairs(strategies: set[str]) -> list[tuple[str, str]]:
    """The comparisons: RF fusion against every other strategy, the oracle and each single signal against random."""
    singles = sorted(k for k in strategies if k not in NOT_SINGLE)
    others = ["oracle", "lr_fusion", *singles, "block_influence", "random", "top_down"]
    out = [("rf_fusion", b) for b in others if "rf_fusion" in strategies and b in strategies]
    out += [(a, "random") for a in ("oracle", *singles) if a in strategies and "random" in strategies]
    return out


def _as_regret(found: list[Tree], a: str, b: str, stage: str) -> pd.DataFrame:
    """The two strategies' per-example outcomes as the one-step table's shape (``step`` = the test row,
    ``regret_points`` = 100 x (1 - correct)), so :func:`core.studies.dataset_tests.compare` reads them: its
    "regret of B minus regret of A" is then the accuracy of A minus the accuracy of B, in points."""
    frames = []
    for t in found:
        if (a, stage) in t.correct and (b, stage) in t.correct:
            for key in (a, b):
                frames.append(pd.DataFrame({"model": t.model, "dataset": t.dataset, "seed": t.seed,
                                            "step": t.examples, "strategy": key,
                                            "regret_points": 100.0 * (1.0 - t.correct[(key, stage)])}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _tree_pair(t: Tree, a: str, b: str, stage: str) -> dict[str, Any]:
    d = paired_accuracy_difference(t.correct[(a, stage)], t.correct[(b, stage)])
    i = d.interval
    return {"estimate": 100 * i.estimate, "low": 100 * i.low, "high": 100 * i.high, "p": d.mcnemar_p,
            "a_only": d.a_only, "b_only": d.b_only,
            "verdict": "within noise" if i.low <= 0 <= i.high else "beyond noise"}


def _spread(found: list[Tree], stage: str, permutations: int, seed: int) -> tuple[list[dict[str, Any]],
                                                                                   dict[str, Any] | None]:
    """Per tree and over trees: best minus worst strategy's accuracy (points) against the permutation null."""
    used = [t for t in found if len(t.strategies(stage)) >= 2]
    if not used:
        return [], None
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    observed: list[float] = []
    nulls: list[np.ndarray] = []
    for t in used:
        keys = t.strategies(stage)
        m = np.stack([t.correct[(k, stage)] for k in keys]).astype(np.float32)  # strategies x rows
        acc = m.mean(axis=1)
        null = np.empty(permutations)
        for start in range(0, permutations, 100):  # shuffle each row's outcomes among the strategies
            n = min(100, permutations - start)
            order = np.argsort(rng.random((n, *m.shape)), axis=1)
            perm = np.take_along_axis(np.broadcast_to(m, (n, *m.shape)), order, axis=1).mean(axis=2)
            null[start:start + n] = perm.max(axis=1) - perm.min(axis=1)
        spread = float(acc.max() - acc.min())
        observed.append(spread)
        nulls.append(null)
        rows.append({"dataset": t.dataset, "seed": t.seed, "teacher": t.teacher, "a": SPREAD,
                     "b": ",".join(keys), "estimate": 100 * spread, "null_mean": 100 * float(null.mean()),
                     "null_high": 100 * float(np.quantile(null, 0.95)),
                     "p": permutation_p(spread, null),
                     "best": keys[int(np.argmax(acc))], "worst": keys[int(np.argmin(acc))], "strategies": len(keys),
                     "examples": int(m.shape[1])})
        rows[-1]["verdict"] = "beyond noise" if rows[-1]["p"] < ALPHA else "within noise"
    datasets = sorted({t.dataset for t in used})

    def over(values: list[Any]) -> Any:  # mean over datasets of each dataset's mean over its trees
        return np.mean([np.mean([v for v, t in zip(values, used) if t.dataset == d], axis=0) for d in datasets],
                       axis=0)
    obs, null = float(over(observed)), np.asarray(over(nulls))
    p = permutation_p(obs, null)
    ks = [int(r["strategies"]) for r in rows]
    total = {"a": SPREAD, "b": ",".join(sorted({k for t in used for k in t.strategies(stage)})),
             "estimate": 100 * obs, "null_mean": 100 * float(null.mean()),
             "null_high": 100 * float(np.quantile(null, 0.95)), "permutation_p": p, "datasets": len(datasets),
             "seeds": int(min(sum(t.dataset == d for t in used) for d in datasets)),
             "seeds_max": int(max(sum(t.dataset == d for t in used) for d in datasets)), "trees": len(used),
             "strategies": f"{min(ks)}" if min(ks) == max(ks) else f"{min(ks)}-{max(ks)}",
             "verdict": "beyond noise" if p < ALPHA else "within noise",
             "trees_beyond": int(sum(r["verdict"] == "beyond noise" for r in rows))}
    return rows, total


def full_path_tests(full: pd.DataFrame | None, outcomes: pd.DataFrame | None, cap: int | None = None, *,
                    permutations: int = PERMUTATIONS, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(tests, per_tree)`` for budget ``cap`` (default: the largest with paired outcomes). ``tests``: one row per
    (stage, comparison) over datasets (see the module doc); ``per_tree``: one row per (stage, comparison, tree)."""
    caps = [c for c in train_caps(full) if outcomes is not None and (outcomes["train_cap"] == c).any()]
    cap = cap if cap is not None else (caps[0] if caps else None)
    found = trees(full, outcomes, cap) if cap is not None else []
    test_rows: list[dict[str, Any]] = []
    tree_rows: list[dict[str, Any]] = []
    for model in sorted({t.model for t in found}):
        mine = [t for t in found if t.model == model]
        present = {k for t in mine for k, _ in t.correct}
        singles = sorted(k for k in present if k not in NOT_SINGLE)
        base = {"model": model, "train_cap": cap, "best_single": ",".join(singles)}
        for stage in STAGES:
            for a, b in pairs(present):
                shared = [t for t in mine if (a, stage) in t.correct and (b, stage) in t.correct]
                if not shared:
                    continue
                per = [{**base, "stage": stage, "dataset": t.dataset, "seed": t.seed, "teacher": t.teacher, "a": a,
                        "b": b, "examples": int(t.examples.size), **_tree_pair(t, a, b, stage)} for t in shared]
                tree_rows += per
                # one seed per dataset: the seed variance is not measured, so no count at more seeds is claimed
                one_seed = all(sum(t.dataset == d for t in shared) == 1 for d in {t.dataset for t in shared})
                c = compare(_as_regret(shared, a, b, stage), a, b, seeds=(1,) if one_seed else None)
                if c is None:
                    continue
                test_rows.append({**base, "stage": stage, **c.row(), "trees": len(shared),
                                  "seeds_max": int(max(sum(t.dataset == d for t in shared)
                                                       for d in {t.dataset for t in shared})),
                                  "trees_a_ahead": sum(r["verdict"] == "beyond noise" and r["estimate"] > 0
                                                       for r in per),
                                  "trees_b_ahead": sum(r["verdict"] == "beyond noise" and r["estimate"] < 0
                                                       for r in per)})
            rows, total = _spread(mine, stage, permutations, seed)
            tree_rows += [{**base, "stage": stage, **r} for r in rows]
            if total is not None:
                test_rows.append({**base, "stage": stage, **total})
    return pd.DataFrame(test_rows), pd.DataFrame(tree_rows)


# ------------------------------------------------------------------------------------------ in words
def _trees_text(r: Any) -> str:
    seeds = (f"{int(r['seeds'])}" if int(r["seeds"]) == int(r.get("seeds_max", r["seeds"]))
             else f"{int(r['seeds'])}-{int(r['seeds_max'])}")
    return (f"{int(r['trees'])} tree(s): {int(r['datasets'])} dataset(s) × {seeds} seed(s)")


def choice_sentence(tests: pd.DataFrame | None, model: str | None = None) -> str:
    """Whether the choice of layers still matters after recovery, in one paragraph from the spread rows (after and
    before KD); "" when the tests hold none."""
    if tests is None or tests.empty or "a" not in tests.columns:
        return ""
    t = tests[(tests["a"] == SPREAD) & ((tests["model"] == model) if model is not None else True)]
    after = t[t["stage"] == "after_kd"]
    if after.empty:
        return ""
    r = after.iloc[0]
    cap = f"{int(r['train_cap']):,} training rows" if pd.notna(r.get("train_cap")) else "one budget"
    text = (f"After KD ({cap}, {_trees_text(r)}, {count_text(r['strategies'])} strategies per tree), the most "
            f"accurate strategy of a tree is ahead of the least accurate by {r['estimate']:.2f} points on average; "
            f"test-row noise alone (the strategies' outcomes shuffled on each test row) gives "
            f"{r['null_mean']:.2f} (95 % of shuffles below {r['null_high']:.2f}): permutation p "
            f"{_p(r['permutation_p'])}. ")
    if r["verdict"] == "beyond noise":
        text += (f"**The choice of layers still matters after recovery**: the spread is "
                 f"{r['estimate'] - r['null_mean']:.2f} points above what noise gives; per tree, beyond noise on "
                 f"{int(r['trees_beyond'])} of {int(r['trees'])}.")
    else:
        text += (f"**After recovery the choice of layers is within noise** on these trees: the spread between "
                 f"strategies is what the test rows' noise alone would give (per tree, beyond noise on "
                 f"{int(r['trees_beyond'])} of {int(r['trees'])}).")
    before = t[t["stage"] == "before_kd"]
    if len(before):
        b = before.iloc[0]
        change = b["estimate"] - r["estimate"]
        text += (f" Before KD (after the last fine-tuning) the spread was {b['estimate']:.2f} points (noise "
                 f"{b['null_mean']:.2f}, p {_p(b['permutation_p'])}): KD "
                 + (f"narrowed the gap between strategies by {change:.2f} points." if change > 0 else
                    f"widened the gap between strategies by {-change:.2f} points." if change < 0 else
                    "left the gap between strategies as it was."))
    return text + (" The shuffles measure the test rows' noise only, not training noise (another seed's fine-tuning "
                   "of the same removals): the seeds and the comparisons over datasets speak to that.")


def pair_text(c: dict[str, Any], name_a: str, name_b: str) -> str:
    """One comparison over datasets in words: A − B in accuracy points with the bootstrap interval, the sign-flip
    test, the verdict, the trees it stands on and, within noise, the power estimate in short."""
    text = (f"{name_a} − {name_b} = {c['estimate']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}] accuracy points "
            f"(bootstrap over datasets, then test rows: {c['bootstrap']}), sign-flip p = {c['sign_flip_p']:.3f} over "
            f"{int(c['datasets'])} dataset means ({int(c['favour_a'])} favour {name_a}; with {int(c['datasets'])} "
            f"datasets p cannot go below {c['sign_flip_min_p']:.3f}): {c['verdict']}; {_trees_text(c)}, {name_a} "
            f"ahead beyond noise in {int(c['trees_a_ahead'])}, behind in {int(c['trees_b_ahead'])}")
    power = c.get("power_short")
    return text + (f"; {power}" if isinstance(power, str) and power else "")


def count_text(value: Any) -> str:
    """A count as written in the files ("4", "4-7"), also when a CSV reader made it a float (4.0 -> "4")."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _p(p: float) -> str:
    """A permutation p-value in words: ``= 0.023`` or ``< 0.001``."""
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def claim_rows(tests: pd.DataFrame | None, full_budget: str = "") -> list[Claim]:
    """The paper check's claims from these tests (``claims.json``): does the choice of layers still matter after
    recovery, and RF fusion against random after KD over datasets; empty without tests."""
    if tests is None or tests.empty:
        return []
    out: list[Claim] = []
    spread = tests[(tests["a"] == SPREAD) & (tests["stage"] == "after_kd")]
    if len(spread):
        r = spread.iloc[0]
        out.append({"key": "choice_matters_full", "paper": "Not a claim of the paper but its premise: which layers "
                    "are removed still matters for the pruned model's accuracy after fine-tuning and distillation.",
                    "ours": choice_sentence(tests, str(r["model"])).replace("**", ""), "measure": "full path",
                    "noise": str(r["verdict"]), "sign_flip_p": None, "budget": full_budget,
                    "seeds": int(r["seeds"]), "seeds_max": int(r["seeds_max"]), "datasets": int(r["datasets"])})
    rf = tests[(tests["a"] == "rf_fusion") & (tests["b"] == "random") & (tests["stage"] == "after_kd")]
    if len(rf):
        c = {k: ("" if k.startswith("power") and not isinstance(v, str) else v) for k, v in rf.iloc[0].items()}
        out.append({"key": "rf_vs_random_full", "paper": PAPER["rf_first"],
                    "ours": "After the full path and KD, paired on the same teacher and test rows: "
                            + pair_text(c, "RF fusion", "random (one seeded draw per run)"),
                    "measure": "full path", "noise": str(c["verdict"]), "sign_flip_p": float(c["sign_flip_p"]),
                    "power": c.get("power", ""), "power_short": c.get("power_short", ""), "budget": full_budget,
                    "seeds": int(c["seeds"]), "seeds_max": int(c["seeds_max"]), "datasets": int(c["datasets"])})
    return out


def write_tests(folder: Path, tests: pd.DataFrame, per_tree: pd.DataFrame) -> None:
    """``full_path_tests.csv`` and ``full_path_trees.csv`` in ``folder``; without tests, stale ones are removed
    (never a table the full-path files no longer describe)."""
    for name, frame in ((TESTS_FILE, tests), (TREES_FILE, per_tree)):
        path = Path(folder) / name
        if frame is not None and not frame.empty:
            atomic_write_text(path, frame.to_csv(index=False))
        elif path.is_file():
            path.unlink()
