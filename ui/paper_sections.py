"""Two sections of the Paper check page (issue 29): the fair baselines (random as its expectation, each single
signal's direction learned without the scored data) and the comparisons over datasets (an exact sign-flip test and
how many datasets x seeds would separate a difference within noise). Reads the reference files only."""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.studies.full_path_agreement import agreement_sentence
from core.studies.full_path_tests import choice_sentence

from . import widgets
from .paper_data import Label, Reference, short
from .paper_plots import tree_difference_figure
from .paper_tables import (
    FULL_STAGES,
    RANDOM_EXPECTED,
    SPREAD,
    dataset_tests_frame,
    directions_frame,
    full_path_name,
    full_tests_frame,
    of_budget,
    one_step_name,
    seeds_of,
    tree_differences,
)

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


FULL_METHOD = ("**How these are made** (`python -m core study paper`, from `full_path.csv` and the per-example test "
               "outcomes in `full_path_outcomes.parquet`): two runs are compared only when they were pruned from the "
               "same teacher (the same cache key and the same per-example teacher outcomes) on the same test rows. "
               "Per tree (one dataset and seed): A − B on those rows with a paired 95 % bootstrap interval. Over "
               "datasets: the two-level bootstrap (datasets, then each dataset's test rows over its seeds) and the "
               "exact sign-flip test over the dataset means; **beyond noise** only when both say so, and with n "
               "datasets the sign-flip p cannot go below 2/2^n. **The spread**: each tree's most accurate strategy "
               "minus its least accurate, against a permutation test that shuffles the strategies' outcomes on every "
               "test row (what noise alone gives: the largest of several noisy accuracies minus the smallest is never "
               "0). The shuffles hold the test rows' noise only, not training noise; the seeds and the tests over "
               "datasets carry that. Random is one seeded draw per run here (a run removes actual layers).")


def full_path_tests(ref: Reference, model: str, cap: int | None, label: Label) -> None:
    """The full-path study's paired comparisons at budget ``cap``: whether the choice of layers still matters after
    recovery (in words), the comparisons with their intervals and tests, and the per-tree differences against RF
    fusion (figure)."""
    st.markdown("#### Does the choice of layers still matter after recovery?")
    tests = of_budget(ref.full_path_tests, model, cap)
    if tests.empty:
        st.info("No paired comparisons at this budget: its runs kept no per-example test outcomes (runs recorded "
                "before `full_path_outcomes.parquet`), so they are shown above by their accuracies only.",
                icon=":material/info:")
        return
    spread = tests[(tests["a"] == SPREAD) & (tests["stage"] == "after_kd")]
    r = (spread if len(spread) else tests).iloc[0]
    full = ref.full_path[(ref.full_path["model"] == model) & (ref.full_path["train_cap"] == cap)] \
        if ref.full_path is not None else None
    apart = int(full["pairing"].astype(str).str.startswith("kept apart").sum()) if full is not None and \
        "pairing" in full.columns else 0
    pack = int((full["source"] == "pack").sum()) if full is not None and "source" in full.columns else 0
    st.caption(f"**Budget:** {cap:,} training rows; {int(r['trees'])} paired tree(s): {int(r['datasets'])} "
               f"dataset(s) × {seeds_of(r)} seed(s) (every number says what it stands on; nothing is extrapolated to "
               "trees not measured)."
               + (f" {pack} of these runs are the recorded pack's (seed 0, recorded in an earlier session), paired "
                  "with this budget's other runs only where their teacher is the same." if pack else "")
               + (f" **{apart} run(s) kept apart**: their teacher differs from the other runs of their tree "
                  "(column `pairing` of `full_path.csv`)." if apart else ""))
    st.markdown(choice_sentence(tests, model))
    if order := agreement_sentence(of_budget(ref.full_path_agreement, model, cap), model, name=full_path_name,
                                   label=lambda d: short(label(d))):
        st.markdown(order)
    st.dataframe(full_tests_frame(tests, model, cap), hide_index=True)
    stage = st.radio("Differences", list(FULL_STAGES), format_func=lambda s: FULL_STAGES[s], horizontal=True,
                     key="paper_full_stage")
    per_tree = tree_differences(ref.full_path_trees, model, cap, stage)
    mine = tests[(tests["stage"] == stage) & (tests["a"] == "rf_fusion")]
    widgets.chart(tree_difference_figure(per_tree, mine, label, f"RF fusion minus each other strategy, "
                                         f"{FULL_STAGES[stage]}, per tree ({cap:,} training rows)"),
                  key="paper_full_trees")
    st.caption("Markers: one tree (dataset colour; circle seed 0, square seed 1, triangle seed 2), whiskers its "
               "paired 95 % interval over its test rows. Black diamond: the mean over datasets with its two-level "
               "bootstrap interval. Above the dashed line RF fusion is more accurate.")
    st.caption(FULL_METHOD)
