"""Comparisons of two strategies over datasets (issue 29 item 3): beside the two-level bootstrap (datasets, then
steps: :func:`core.studies.regret.paired_regret`), a test at the level of datasets and, for a difference within
noise, how many datasets x seeds would separate it.

For strategies A and B on the same one-step table, the difference is ``regret(B) - regret(A)`` (accuracy points;
> 0: A loses fewer points). Per dataset it is the mean over that dataset's steps (all seeds), as the bootstrap's
estimate is; :func:`core.stats.datasets.sign_flip_test` tests those dataset means exactly (all ``2**n`` sign
patterns); :func:`core.stats.datasets.power_statement` reads the between-dataset and between-seed variances from
the per-(dataset, seed) means. A comparison is **beyond noise** only when both agree: the bootstrap interval
excludes 0 and the sign-flip p-value is below 0.05.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from core.signals import get_info
from core.stats import beyond_noise
from core.stats.datasets import ALPHA, power_statement, short_power, sign_flip_test
from core.studies.regret import NOISE_FLOOR, paired_regret

#: strategies that are not single signals (left out of "the best single signal")
NOT_SINGLE = ("rf_fusion", "lr_fusion", "random", "top_down", "block_influence", "oracle", NOISE_FLOOR)


def _paired_steps(table: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Per (model, dataset, seed, step) shared by ``a`` and ``b``: ``diff`` = regret of b - regret of a."""
    def one(key: str) -> pd.Series:
        t = table[table["strategy"] == key]
        return t.set_index(["model", "dataset", "seed", "step"])["regret_points"]
    both = pd.concat([one(a).rename("a"), one(b).rename("b")], axis=1, join="inner")
    return (both["b"] - both["a"]).rename("diff").reset_index()


def best_single(table: pd.DataFrame, rule: str = "learned") -> str | None:
    """The single signal with the lowest mean regret over datasets (each dataset's mean over its steps), each
    pruned from the end the table scored it with (``rule="learned"``) or from the registry's a-priori end
    (``rule="registry"``: its ``regret_lowest``/``regret_highest`` column)."""
    singles = table[~table["strategy"].isin(NOT_SINGLE)]
    if singles.empty:
        return None
    if rule == "registry" and {"regret_lowest", "regret_highest"} <= set(singles.columns):
        column = [f"regret_{get_info(str(k)).direction}" for k in singles["strategy"]]
        values = [float(singles[c].iloc[i]) for i, c in enumerate(column)]
        singles = singles.assign(regret_points=values)
    per = singles.groupby(["strategy", "dataset"])["regret_points"].mean().groupby("strategy").mean()
    return str(per.idxmin())


def registry_end(table: pd.DataFrame, key: str) -> pd.DataFrame:
    """``table`` with signal ``key`` scored from the registry's a-priori end on every row (its ``regret_lowest`` or
    ``regret_highest`` as ``regret_points``, ``direction`` the registry's), whatever end was learned: what comparing
    against "the best single signal by the registry's end" must read. Unchanged without both columns (a table
    scored before directions were learned is at the registry's end already)."""
    if not {"regret_lowest", "regret_highest"} <= set(table.columns):
        return table
    end = get_info(key).direction
    rows = table["strategy"] == key
    out = table.copy()
    out.loc[rows, "regret_points"] = out.loc[rows, f"regret_{end}"]
    if "direction" in out.columns:
        out.loc[rows, "direction"] = end
    return out


@dataclass(frozen=True)
class DatasetComparison:
    """Strategy A against B over datasets (see the module doc): ``estimate``/``low``/``high`` (the bootstrap),
    ``sign_flip_p`` (and the smallest p ``datasets`` means allow), ``favour_a``/``favour_b`` (datasets whose mean
    difference is above / below 0), ``datasets``, ``seeds`` (the fewest per dataset), ``bootstrap`` and ``verdict``
    ("beyond noise" or "within noise"), and for a comparison within noise ``power`` (the sentence), its short form,
    ``needed`` (datasets at ``s`` seeds, None when no count would do) and the two standard deviations."""

    a: str
    b: str
    estimate: float
    low: float
    high: float
    sign_flip_p: float
    sign_flip_min_p: float
    favour_a: int
    favour_b: int
    datasets: int
    seeds: int
    bootstrap: str
    verdict: str
    power: str | None = None
    power_short: str | None = None
    needed: dict[int, int | None] = field(default_factory=dict)
    dataset_sd: float | None = None
    seed_sd: float | None = None

    def row(self) -> dict[str, str | int | float]:
        """The comparison as a row of a table (``dataset_tests.csv``, ``full_path_tests.csv``): the fields, with
        ``needed_<s>`` columns (NaN: no count would do) and the power fields only within noise."""
        out: dict[str, str | int | float] = {
            "a": self.a, "b": self.b, "estimate": self.estimate, "low": self.low, "high": self.high,
            "sign_flip_p": self.sign_flip_p, "sign_flip_min_p": self.sign_flip_min_p, "favour_a": self.favour_a,
            "favour_b": self.favour_b, "datasets": self.datasets, "seeds": self.seeds, "bootstrap": self.bootstrap,
            "verdict": self.verdict}
        if self.power is not None:
            out["power"] = self.power
            out["power_short"] = self.power_short or ""
            out.update({f"needed_{s}": (n if n is not None else np.nan) for s, n in self.needed.items()})
            if self.dataset_sd is not None and self.seed_sd is not None:
                out["dataset_sd"] = self.dataset_sd
                out["seed_sd"] = self.seed_sd
        return out


def compare(table: pd.DataFrame, a: str, b: str, seeds: tuple[int, ...] | None = None) -> DatasetComparison | None:
    """A against B over datasets (see the module doc and :class:`DatasetComparison`); None when they share no
    step. Within noise, the power estimate is for ``seeds`` seeds per dataset (default: the count measured, 3
    and 5)."""
    d = _paired_steps(table, a, b)
    if d.empty:
        return None
    boot = paired_regret(table, a, b)
    if boot is None:
        return None
    by_dataset = d.groupby("dataset")["diff"].mean()
    flip = sign_flip_test(by_dataset.to_numpy())
    path = d.groupby(["dataset", "seed"])["diff"].mean()
    per_dataset = [g.to_numpy() for _, g in path.groupby(level="dataset")]
    n_seeds = int(min(len(g) for g in per_dataset))
    both = beyond_noise(boot) and flip.p < ALPHA
    found = DatasetComparison(a, b, boot.estimate, boot.low, boot.high, flip.p, flip.min_p, flip.positive,
                              flip.negative, flip.n, n_seeds, "beyond noise" if beyond_noise(boot) else "within noise",
                              "beyond noise" if both else "within noise")
    if both:
        return found
    counts = tuple(sorted({n_seeds, 3, 5})) if seeds is None else seeds
    statement = power_statement(per_dataset, counts)
    return replace(found, power=statement.text(), power_short=short_power(statement.needed),
                   needed=dict(statement.needed), dataset_sd=float(np.sqrt(statement.components.dataset_var)),
                   seed_sd=float(np.sqrt(statement.components.seed_var)))


def comparison_text(c: DatasetComparison, name_a: str, name_b: str) -> str:
    """One comparison in a claim's words: the bootstrap interval, the sign-flip test, the verdict and, within noise,
    the power estimate in short (the full sentence is in ``dataset_tests.csv`` and on the page)."""
    text = (f"{name_b} − {name_a} = {c.estimate:+.2f} [{c.low:+.2f}, {c.high:+.2f}] points (bootstrap "
            f"{c.bootstrap}), sign-flip p = {c.sign_flip_p:.3f} over {c.datasets} dataset means "
            f"({c.favour_a} favour {name_a}): {c.verdict}")
    if c.power_short:
        text += f"; {c.power_short}"
    return text


def dataset_comparisons(table: pd.DataFrame) -> pd.DataFrame:
    """The comparisons the paper check's claims rest on, per model: RF fusion, LR fusion and the best single signal
    against each other, against random (its expectation), against the noise floor, and RF against the two
    published baselines and against the best single signal by the registry's a-priori end when that is another
    signal, scored from that end on every step (:func:`registry_end`). One row per comparison
    (:func:`compare`); ``best_single`` and ``best_apriori`` name the two signals."""
    rows: list[dict[str, str | int | float | None]] = []
    if table.empty or not {"model", "strategy", "regret_points"} <= set(table.columns):
        return pd.DataFrame(rows)
    for model, t in table.groupby("model", sort=True):
        best = best_single(t)
        apriori = best_single(t, "registry")
        present = set(t["strategy"])
        keys = [k for k in ("rf_fusion", "lr_fusion", best) if k is not None and k in present]
        pairs: list[tuple[str, str]] = []
        for i, a in enumerate(keys):
            pairs += [(a, b) for b in keys[i + 1:]]
        pairs += [(a, "random") for a in keys]
        pairs += [(a, NOISE_FLOOR) for a in (*keys, "random")]
        pairs += [("rf_fusion", b) for b in ("block_influence", "top_down")]
        at_end = t  # the a-priori best's pairs read it from the registry's end, whatever was learned
        if apriori is not None and apriori != best:
            pairs += [("rf_fusion", apriori)] + ([(best, apriori)] if best is not None else [])
            at_end = registry_end(t, apriori)
        for a, b in pairs:
            if a in present and b in present and a != b:
                c = compare(at_end if apriori in (a, b) else t, a, b)
                if c is not None:
                    rows.append({"model": str(model), "best_single": best, "best_apriori": apriori, **c.row()})
    return pd.DataFrame(rows)
