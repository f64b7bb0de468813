"""Paper check: arXiv 2501.03273's claims next to ours, from the reference results shipped in ``data/reference/``
(readable on a fresh install without running anything; ``python -m core study paper`` remakes them).

The page only reads files (:mod:`ui.paper_plots`); it never trains or computes a ranker.
"""

from __future__ import annotations

import streamlit as st

from core.studies.full_path import at_budget, train_caps
from ui import paper_plots as pp
from ui import paper_sections as pn
from ui import router, state, widgets

router.ensure_routed()  # a cold server's first deep link runs this file without app.py

state.init()
widgets.page_header("Paper check", "The published claims of arXiv 2501.03273 (BERT layer pruning with signal "
                                   "fusion) re-measured with this app's own signals, oracle and rankers.")

try:
    ref = pp.load_reference()
except pp.ReferenceFilesError as exc:
    st.info(f"**The reference results cannot be shown.** {exc}", icon=":material/description:")
    router.stop_page()

label = state.dataset_label
models = sorted(set(ref.summary["model"]) | set(ref.full_path["model"] if ref.full_path is not None else []))
model = models[0] if len(models) == 1 else st.radio("Model", models, horizontal=True, key="paper_model")
seeds = ref.seeds(model)
datasets = sorted(ref.summary.loc[ref.summary["model"] == model, "dataset"].unique())
st.caption(f"**Budget:** {ref.budget} (our choice: the paper does not publish its training sizes or epochs). "
           f"**{model}**, {len(datasets)} dataset(s), {seeds} (mean over seeds and the spread min–max). "
           f"Files: `{ref.shown_folder}`.")


# ------------------------------------------------------------------------------------------ claims
st.subheader("The claims, side by side")
if ref.held_out:
    st.success("**Scored on held-out halves, against a noise floor.** At every layer-step the validation examples "
               "are cut into two seeded halves: each strategy's choice is scored on one half against the best "
               "removal there, and the **noise floor** is the oracle of the other half (the layer best on half A, "
               "scored on half B; then swapped, both ways averaged). A strategy at or below the noise floor does as "
               "well as an oracle that had not seen the scoring rows: as good as the measurement can tell. A claim "
               "counts a win only when its paired 95 % interval (bootstrap over steps) excludes 0: **beyond noise**; "
               "otherwise it is a tie, **within noise**. A claim *over datasets* is beyond noise only when the "
               "two-level bootstrap (datasets, then steps) excludes 0 **and** an exact sign-flip test over the "
               "dataset means gives p < 0.05. Baselines are fair: random is its expectation over the candidates, "
               "and each single signal prunes from the end learned on the other datasets.",
               icon=":material/balance:")
else:
    st.warning("**This bank has no per-example outcomes**, so there is no noise floor: the one-step regrets below "
               "are **picked and scored on the same rows (optimistic)**: the best removal is chosen on the very "
               "validation rows it is scored on, and the max of noisy values is inflated, so every regret is too "
               "large by an unknown amount and small differences between strategies are not evidence. Regrow the "
               "bank from runs that store their oracle's outcomes (`scripts/grow_bank.py`) and remake these files "
               "(`python -m core study paper`) to score on held-out halves.", icon=":material/warning:")
st.table(pp.claims_shown(pp.claims_frame(ref.claims, ref.budget)))
st.caption("Our numbers stand on this app's CPU-sized budget and models, not the paper's BERT-base and its nine "
           "hub datasets, so they test the *shape* of each claim. The paper publishes no code and no per-dataset "
           "numbers; where it leaves a definition open (regret, the accuracy-to-size ratio) we say ours. "
           f"One-step regrets: {ref.scoring}. Intervals: 95 %, bootstrap over steps (per dataset) and over datasets "
           "and steps (averages); a count of wins leaves out the ties within noise and says how many there were. "
           "**Over datasets: sign-flip p**: the exact two-sided sign-flip test of the claim's comparison over the "
           "dataset means (every one of the 2^n sign patterns; with 8 datasets p cannot go below 0.008).")

# ------------------------------------------------------------------------------------------ one step
st.subheader("One step at a time: each strategy's choice against the oracle")
st.markdown("At every profiled step of the oracle's own pruning path, each strategy picks the layer it would "
            "remove; the oracle measured the validation accuracy without each layer. **Regret** (our definition): "
            "accuracy points lost against the best removal at that step, before fine-tuning. **Top-1 hit rate**: "
            "how often the strategy picked the best layer. **Spearman**: agreement of the strategy's ordering "
            "with the oracle's. The fusion rankers are trained leave-one-dataset-out: never on rows of the "
            "dataset they are scored on; so is each single signal's direction (prune its lowest or its highest value "
            "first: the end that lost fewer points on the other datasets). **Random** is its exact expectation over "
            "the step's candidates (the mean regret of removing each one), never one seeded draw.")
if not ref.random_expected:
    st.warning("These reference files score random by **one seeded draw** and each single signal by the registry's "
               "direction (files from before the fair baselines): remake them with `python -m core study paper`.",
               icon=":material/warning:")
if not datasets:
    st.info(f"No one-step results for {model} in these files (they hold: "
            f"{', '.join(sorted(ref.summary['model'].unique()))}).", icon=":material/info:")
else:
    floor = pp.noise_floor(ref.summary, model, label)
    if not floor.empty:
        st.markdown("**The noise floor** on each dataset (accuracy points; 95 % interval over its steps): what the "
                    "oracle itself loses when it picks on one half and is scored on the other.")
        st.dataframe(floor, hide_index=True, column_config={"top-1 hit rate": st.column_config.NumberColumn(
            format="%.2f")})
    st.markdown("**The winner on each dataset**, and where the fusion rankers stand among all strategies"
                + (" (a winner within noise of the floor is as good as the measurement can tell):" if ref.held_out
                   else " (same-rows scoring: no interval separates them):"))
    st.dataframe(pp.winners(ref.summary, model, label), hide_index=True,
                 column_config={"regret (points)": st.column_config.NumberColumn(format="%.2f"),
                                "top-1 hit rate": st.column_config.NumberColumn(format="%.2f"),
                                "Spearman": st.column_config.NumberColumn(format="%.2f")})
    # side by side while the heatmap is narrow; one under the other once it has many dataset columns
    heat, bars = st.columns(2) if len(datasets) <= 3 else (st.container(), st.container())
    with heat:
        widgets.chart(pp.rank_heatmap(pp.rank_matrix(ref.summary, model), label,
                                      f"Rank per dataset (1 = lowest regret; {seeds})", name=pp.one_step_name),
                      key="paper_heatmap")
    with bars:
        by_strategy = pp.regret_by_strategy(ref.summary, model, ref.overall)
        widgets.chart(pp.regret_bars(by_strategy, f"Mean regret over {len(datasets)} datasets ({seeds})"),
                      key="paper_regret")
        if by_strategy["whiskers"].iloc[0].startswith("95"):
            st.caption("Bars: mean over datasets of each strategy's mean regret; whiskers: 95 % interval (bootstrap "
                       "over datasets and steps). Grey bar, dashed line and band: the noise floor and its interval.")
        else:
            st.caption("Bars: mean over datasets of each strategy's mean regret (picked and scored on the same rows, "
                       "optimistic); whiskers: its best and worst dataset, not an interval.")
    st.markdown("**Regret in accuracy points** ("
                + ("mean with its 95 % interval over steps; first row: the noise floor" if "regret_low" in ref.summary
                   else f"mean over {seeds}, min–max in brackets") + "; lower is better):")
    st.dataframe(pp.one_step_matrix(ref.summary, model, label))
    with st.expander("Every number of the one-step table (top-1 hit rate, Spearman, steps)"):
        st.dataframe(pp.metrics_table(ref.summary, model, label), hide_index=True,
                     column_config={c: st.column_config.NumberColumn(format="%.3f")
                                    for c in ("regret (points)", "regret min", "regret max", "top-1 hit rate",
                                              "Spearman")})
        st.download_button("Download (CSV)", ref.summary.to_csv(index=False).encode(), "one_step_summary.csv",
                           "text/csv", key="paper_csv")
    pn.fair_baselines(ref, model, seeds)
    pn.over_datasets(ref, model)

# ------------------------------------------------------------------------------------------ depth
st.subheader("Accuracy as layers are removed")
caps = train_caps(ref.full_path)  # largest first: the newest study's budget; older budgets stay readable, apart
cap = (caps[0] if len(caps) == 1 else st.radio(
    "Full-path budget (training rows; never mixed in one number)", caps, format_func=lambda c: f"{c:,}",
    horizontal=True, key="paper_full_cap")) if caps else None
full_at = at_budget(ref.full_path, cap) if ref.full_path is not None else None
full = pp.full_path_depth(full_at, model) if full_at is not None else None
if full_at is not None and full is not None and not full.empty:
    budget = f"{cap:,} training rows" if cap is not None else "budget not recorded"
    st.caption(f"Each strategy's own run: one removal per step with fine-tuning (test accuracy), then distillation. "
               f"{budget}" + (" (the newest study's budget; the others are one click above)" if len(caps) > 1 and
                               cap == caps[0] else "") + "; the mean over the seeds each point shows on hover.")
    runs = full_at[full_at["model"] == model]
    st.caption("Drawn at first: the oracle, the two fusion rankers, random removal (here one seeded draw per run: a "
               "run removes actual layers) and the dataset's best other strategy after KD; click a name in the legend "
               "to add any of the 18. Dotted: the unpruned teacher.")
    ds_list = sorted(full["dataset"].unique())
    for ds in ds_list:  # full width: the legend of 18 strategies leaves a half-width plot no room
        focus, teacher = pp.depth_focus(runs, ds)
        widgets.chart(pp.depth_figure(full[full["dataset"] == ds], f"{label(ds)}: full path", "test accuracy",
                                      focus=focus, teacher=teacher), key=f"paper_full_{ds}")
    heat, bars = st.columns(2) if len(ds_list) <= 3 else (st.container(), st.container())
    with heat:
        seeded = runs.groupby("dataset")["seed"].nunique().max() > 1
        per_tree = seeded and st.toggle(
            "One column per seed", value=True, key="paper_full_by_tree",
            help="Each tree (dataset and seed) ranked on its own: whether a seed's winner is the next seed's too.")
        widgets.chart(pp.rank_heatmap(pp.full_rank_matrix(full_at, model, by_tree=per_tree), label,
                                      "Rank after KD per tree (1 = most accurate)" if per_tree else
                                      "Rank after KD per dataset (" + ("mean over seeds; " if seeded else "")
                                      + "1 = most accurate)"), key="paper_full_heatmap")
    with bars:
        widgets.chart(pp.strategy_bars(pp.kd_gain(full_at, model), "gain",
                                       f"After KD minus the teacher, mean over {len(ds_list)} dataset(s)",
                                       "accuracy points vs the teacher (> 0: better)",
                                       "after KD minus teacher", higher_is_better=True), key="paper_kd_gain")
        st.caption(f"Test accuracy of the {runs['layers_removed'].max()}-layers-removed, distilled model minus its "
                   "teacher's; whiskers: its lowest and highest dataset.")
    st.markdown("**Full-path table** (mean over seeds; ratio = (accuracy / teacher accuracy) / (parameters / "
                "teacher parameters) after KD, our definition):")
    st.dataframe(pp.full_path_summary(full_at, model, label), hide_index=True,
                 column_config={c: st.column_config.NumberColumn(format="%.3f")
                                for c in ("teacher", "best over depth", "after KD")}
                 | {"acc-to-size ratio": st.column_config.NumberColumn(format="%.2f"),
                    "rank after KD": st.column_config.NumberColumn(format="%.1f")})
    pn.full_path_tests(ref, model, cap, label)
else:
    st.info("The full-path study (every strategy's own run with fine-tuning, then distillation) has not been "
            "measured yet. Run it with `python -m core study run --bank-only --config data/studies/full-path.toml` "
            "(the app's default budget, one tree at a time, resumable; its header says the order), or "
            "`data/studies/paper-small.toml` (a smaller budget), then `python -m core study paper --store DIR`. "
            "Meanwhile, the oracle's own path from the one-step table:", icon=":material/hourglass_empty:")
    path = pp.oracle_path(ref.one_step, ref.summary, model)
    if path.empty:
        st.caption("These reference files do not record the oracle's accuracies (column `best_accuracy`); "
                   "remake them with `python -m core study paper`.")
    else:
        st.caption(f"Validation accuracy right after each step's removal, before fine-tuning: the oracle's best "
                   f"removal, and what the fusion rankers and the dataset's winner would have kept at the same step "
                   f"({ref.budget}; mean over {seeds}).")
        ds_list = sorted(path["dataset"].unique())
        cols = st.columns(min(len(ds_list), 2))
        for i, ds in enumerate(ds_list):
            with cols[i % len(cols)]:
                widgets.chart(pp.depth_figure(path[path["dataset"] == ds], f"{label(ds)}: the oracle's path",
                                              "validation accuracy"), key=f"paper_oracle_{ds}")

with st.expander("Where these numbers come from"):
    st.markdown(f"Read from `{ref.shown_folder}`: `one_step.csv` ({len(ref.one_step):,} rows: one per dataset, seed, "
                f"step and strategy), `one_step_summary.csv`, `one_step_overall.csv`, `directions.csv`, "
                "`dataset_tests.csv`, `claims.json`"
                + (", `full_path.csv`" if ref.full_path is not None else "")
                + (", `full_path_tests.csv`, `full_path_trees.csv`" if ref.full_path_tests is not None else "")
                + (", `full_path_agreement.csv`" if ref.full_path_agreement is not None else "")
                + ". Remake them with "
                "`python -m core study paper`; the profile bank they stand on is in `data/bank/`.")
    if ref.meta:
        st.json(ref.meta, expanded=False)
