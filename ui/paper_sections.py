"""Two sections of the Paper check page (issue 29): the fair baselines (random as its expectation, each single
signal's direction learned without the scored data) and the comparisons over datasets (an exact sign-flip test and
how many datasets x seeds would separate a difference within noise). Reads the reference files only."""

from __future__ import annotations

from typing import Any

import streamlit as st

from .paper_data import Reference
from .paper_tables import RANDOM_EXPECTED, dataset_tests_frame, directions_frame, one_step_name

POWER_METHOD = ("**Would be separated at** is an estimate, not a measurement: the fewest datasets (each measured at "
                "the given number of seeds) at which a two-sided t-test over dataset means at 5 % would separate a "
                "true difference equal to the observed one with 80 % power (noncentral t), taking the observed "
                "between-dataset and between-seed variances as the true ones (one-way random-effects ANOVA, method "
                "of moments, of the per-dataset-and-seed mean differences). It starts at 6 datasets, the fewest with "
                "which a sign-flip test can reach 5 % at all (2/2^5 > 0.05). Taking the observed difference as the "
                "true one makes it optimistic for a difference that was itself a lucky draw; '> 1000' means the "
                "observed difference is too small against its noise for any practical study.")


def fair_baselines(ref: Reference, model: str, seeds: str) -> None:
    """Random as its expectation (with how far one seeded draw lands) and the single signals' directions."""
    st.subheader("Fair baselines")
    overall = ref.overall[ref.overall["model"] == model] if ref.overall is not None else None
    rand = overall[overall["strategy"] == "random"] if overall is not None else None
    if rand is not None and len(rand) and ref.random_expected:
        r = rand.iloc[0]
        draw = (f" One seeded draw of this whole table would typically land within ±{r['draw_sd']:.2f} points of it "
                "(the standard deviation of one draw, from the spread of the regret over each step's candidates); "
                "a run that removes a random layer is such a draw." if "draw_sd" in r and r["draw_sd"] == r["draw_sd"]
                else "")
        st.markdown(f"**{RANDOM_EXPECTED}**: {r['regret']:.2f} [{r['low']:.2f}, {r['high']:.2f}] points lost against "
                    f"the best removal, mean over {int(r['datasets'])} datasets ({seeds}; 95 % bootstrap over "
                    f"datasets, then steps): the exact expected regret of removing a uniformly random layer at every "
                    f"step.{draw}")
    table = directions_frame(ref.directions, model)
    if table.empty:
        st.caption("These reference files do not record the single signals' directions (`directions.csv`): remake "
                   "them with `python -m core study paper`.")
        return
    d = ref.directions[ref.directions["model"] == model]
    folds = int(d["datasets"].max())
    def against(r: Any) -> int:  # the folds that learned the end the registry did not fix
        n, low = int(r.datasets), int(r.learned_lowest)
        return n - low if r.registry == "lowest" else low
    opposite = [r for r in d.itertuples() if against(r) > 0]
    every = sum(1 for r in opposite if against(r) == r.datasets)
    mixed = [f"{one_step_name(str(r.strategy))} on {against(r)} of {r.datasets}" for r in opposite
             if against(r) < r.datasets]
    best_learned = d.sort_values("regret").iloc[0]
    registry_regret = d.apply(lambda r: r["regret_lowest"] if r["registry"] == "lowest" else r["regret_highest"],
                              axis=1)
    best_registry = d.loc[registry_regret.idxmin()]
    st.markdown(
        "**Which end of each signal is pruned first.** Every signal prunes either its lowest or its highest value "
        "first. The registry fixed one *a priori* (in its first version, before any measurement; the runs use it; "
        "the Signals page gives each reason). The Paper check also **learns** it the way fusion learns: for each "
        f"dataset, the end that lost fewer points on the other datasets' steps ({folds} folds; never the scored "
        f"dataset; a tie keeps the registry's). Learning picks the other end than the registry for **{every} of "
        f"{len(d)}** signals on every fold" + (f" (and for {', '.join(mixed)} folds)" if mixed else "") + ". "
        f"Best single signal by the learned end: **{one_step_name(str(best_learned['strategy']))}"
        f"** ({best_learned['regret']:.2f} [{best_learned['regret_low']:.2f}, {best_learned['regret_high']:.2f}]); "
        f"by the registry's end: **{one_step_name(str(best_registry['strategy']))}** "
        f"({registry_regret.min():.2f}). Both rules are fair; picking the best of twelve on this table is not "
        "(the smallest of twelve noisy means is optimistic), so read the ranking of single signals with the "
        "intervals.")
    selected = ref.meta.get("selected_single")
    if isinstance(selected, dict) and "regret" in selected:
        m = selected.get("minus_rf") or {}
        st.markdown(
            "**The best single signal, picked fairly**: for each dataset, the signal and end with the lowest regret "
            f"on the other datasets, scored on it: {selected['regret']:.2f} [{selected['low']:.2f}, "
            f"{selected['high']:.2f}] points over {selected['datasets']} datasets"
            + (f" (minus RF fusion: {m['estimate']:+.2f} [{m['low']:+.2f}, {m['high']:+.2f}], sign-flip p = "
               f"{m['sign_flip_p']:.3f})" if m else "")
            + (f"; minus random's expectation: {r['estimate']:+.2f} [{r['low']:+.2f}, {r['high']:+.2f}], sign-flip "
               f"p = {r['sign_flip_p']:.3f}" if (r := selected.get("minus_random") or {}) else "")
            + ". That is what choosing \"the best single signal\" is worth on a dataset it never saw; picks: "
            + ", ".join(f"{d} {k}" for d, k in dict(selected.get("picks") or {}).items()) + ".")
    st.dataframe(table, hide_index=True)


def over_datasets(ref: Reference, model: str) -> None:
    """The claims' comparisons over datasets, with the sign-flip test and the power estimate."""
    table = dataset_tests_frame(ref.dataset_tests, model)
    if table.empty:
        return
    st.subheader("Over datasets: a test at the level of datasets, and how many would tell")
    st.markdown("Each comparison of two strategies: **B − A**, accuracy points of one-step regret (> 0: A loses fewer "
                "points), with the two-level bootstrap interval (datasets, then steps) and the **exact sign-flip "
                "test** over the dataset means (each dataset's mean difference over its steps and seeds; under "
                "'no difference' its sign is a coin flip; all 2^n patterns enumerated). **Beyond noise** only when "
                "both say so. For a comparison within noise, how many datasets × seeds would separate the observed "
                "difference.")
    st.dataframe(table, hide_index=True)
    st.caption(POWER_METHOD)
