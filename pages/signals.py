"""Signals: the twelve layer-importance signals per layer and step, their agreement with the oracle, and a
teaching panel per signal rendered from its registry entry (nothing about a signal is written here)."""

from __future__ import annotations

import streamlit as st

from core.runs import artifacts
from core.signals import BASELINES, FAMILIES, SIGNALS
from ui import cached_store, links, paper_data, plots, router, state, tables, theme, widgets

router.ensure_routed()  # a cold server's first deep link runs this file without app.py

state.init()
widgets.page_header("Signals", "Twelve ways to guess how much a layer matters, in five families, "
                               "and how well each guess agrees with the measured truth (the oracle).")

keys = list(SIGNALS)
widgets.family_legend(FAMILIES)

SIGNALS_FILE = artifacts.table_name(artifacts.SIGNALS_TABLE)
runs = [r for r in cached_store.runs(kind="prune") if cached_store.artifact_steps(r.id, SIGNALS_FILE)]
tab_heat, tab_agree, tab_learn = st.tabs(["Heatmap per step", "Agreement with the oracle", "What each signal means"])

with tab_heat:
    if not runs:
        widgets.empty_state("No run has computed signals yet. Start one on the Live pruning page; the heatmap "
                            "fills in after its first step.", widgets.LIVE_PAGE, "Live pruning")
    else:
        preferred = [r for r in runs if r.model == state.model() and r.dataset == state.dataset()]
        preferred.sort(key=lambda r: r.strategy != "rf_fusion")  # stable: the newest fusion run first, as on Home
        links.choice("run", "sig_run", [r.id for r in runs], "run")  # ?run= opens that run's heatmap
        run = widgets.pick_run(runs, key="sig_run", default_id=(preferred or runs)[0].id)
        widgets.recorded_badge(run)
        steps_avail = cached_store.artifact_steps(run.id, SIGNALS_FILE)
        links.number("step", "sig_step", steps_avail, "step")  # ?step= opens it (the nearest step when out of range)
        step = steps_avail[0] if len(steps_avail) == 1 else st.select_slider(
            "Step", steps_avail, value=steps_avail[-1], key="sig_step",
            help="Step k ranks the layers left after k-1 removals (original layer indices).")
        signals = cached_store.step_table(run.id, step, artifacts.SIGNALS_TABLE)
        choice = cached_store.choice(run.id, step)
        first = cached_store.steps(run)
        n_original = int(first.iloc[0]["n_layers"]) if not first.empty else None
        data = tables.heatmap_data(signals, keys, n_original)
        chosen = choice.get("layer")
        widgets.chart(plots.signal_heatmap(
          data, f"Step {step}: each signal normalised across the remaining layers"
                + (f" · {theme.strategy_label(run.strategy)} removed L{chosen}" if chosen is not None else ""),
          chosen), key="sig_heatmap")
        st.caption("Colour runs from the signal's lowest value at this step (dark) to its highest (yellow); hover "
                   "for the raw value. Blank columns are layers already removed. Whether low or high means "
                   "\"prune first\" depends on the signal: see the third tab.")
        links.choice("signal", "sig_signal", keys, "signal")  # ?signal= explains one signal under the heatmap
        if (sig := st.selectbox("Read one signal", keys, index=None, key="sig_signal", placeholder="pick a signal",
                                format_func=lambda k: SIGNALS[k].display_name)) is not None:
            st.caption(f"**{SIGNALS[sig].display_name}** ({theme.family_label(SIGNALS[sig].family)}): pruned first "
                       f"at its **{SIGNALS[sig].direction}** value. {SIGNALS[sig].intuition}")
        oracle = cached_store.step_table(run.id, step, artifacts.ORACLE_TABLE)
        widgets.chart(plots.oracle_bars(oracle, chosen, f"The oracle at step {step}: validation accuracy "
                                                        "with each layer removed (no fine-tuning)"),
                      key="sig_oracle")

with tab_agree:
    profiles = cached_store.profiles()
    if profiles.empty:
        widgets.empty_state("The agreement needs at least one finished pruning step (signals and oracle are "
                            "stored together per step).", widgets.LIVE_PAGE, "Live pruning")
    else:
        scope = st.radio("Steps from", ["this model, every run", "the selected model and dataset only"],
                         horizontal=True, key="sig_scope")
        use = profiles[profiles["model"] == state.model()] if "model" in profiles else profiles
        if scope.startswith("the selected"):
            use = use[use["dataset"] == state.dataset()]
        if use.empty:
            st.info(f"No profiled step for {state.model_label(state.model())}"
                    + ("" if scope.startswith("this") else f" on {state.dataset_label(state.dataset())}")
                    + ". Pick another model in the sidebar or run one.")
        else:
            directions = {k: info.direction for k, info in SIGNALS.items()}
            agree = tables.signal_oracle_agreement(use, directions)
            if agree["mean_rho"].isna().all():
                st.info("At every profiled step, removing any one layer measured the same validation accuracy: "
                        "the oracle ranks no layer above another, so there is nothing for a signal to agree with. "
                        "A harder dataset (or a larger validation split) separates the layers.", icon="💡")
            widgets.chart(plots.agreement_bars(agree), key="sig_agree")
            n_steps = use.groupby(["run_id", "step"]).ngroups
            st.caption(f"Over {n_steps} profiled step(s) of {use['run_id'].nunique()} run(s). For each step, ρ "
                       "is the Spearman correlation between the order in which the signal would remove the "
                       "remaining layers and the oracle's validation accuracy after removing each one: +1 means "
                       "the signal orders layers exactly as the measured truth does. Hover for the share of steps "
                       "where the signal's first pick was among the oracle's best.")
            show = agree.assign(signal=[theme.strategy_label(k) for k in agree["signal"]],
                                family=[theme.family_label(SIGNALS[k].family) for k in agree["signal"]])
            st.dataframe(show[["signal", "family", "mean_rho", "median_rho", "top1", "steps"]]
                         .sort_values("mean_rho", ascending=False), hide_index=True, height=36 * (len(show) + 1) + 4,
                         column_config={"mean_rho": st.column_config.NumberColumn("mean ρ", format="%.2f"),
                                        "median_rho": st.column_config.NumberColumn("median ρ", format="%.2f"),
                                        "top1": st.column_config.NumberColumn("first pick best", format="percent")})

with tab_learn:
    st.markdown("Each card is rendered from the signal's registry entry in `core/signals/registry.py`. "
                "**paper**: the paper names the signal; **our definition**: the formula (or the whole signal) is "
                "ours because the paper does not publish it; **literature**: a published baseline.")
    groups = [(f, [info for info in SIGNALS.values() if info.family == f]) for f in FAMILIES]
    groups.append(("baseline", list(BASELINES.values())))
    learned = paper_data.direction_lines(tuple(SIGNALS))  # what the Paper check learned for each direction
    fam_tabs = st.tabs([theme.family_label(f) for f, _ in groups])
    for tab, (_, entries) in zip(fam_tabs, groups):
        with tab:
            for entry in entries:
                with st.container(border=True):
                    color = theme.family_color(entry.family)
                    st.markdown(f"<h4 style='color:{color};margin-bottom:0'>{entry.display_name}</h4>",
                                unsafe_allow_html=True)
                    st.caption(f"`{entry.key}` · family: {theme.family_label(entry.family)} · "
                               f"origin: **{entry.origin}** · "
                               f"needs: {', '.join(sorted(entry.needs)) or 'nothing'}")
                    st.latex(entry.formula_latex)
                    st.markdown(entry.intuition)
                    st.markdown(entry.direction_text)  # which end, decided how and why (core.signals.registry)
                    if entry.key in learned:
                        st.caption(learned[entry.key])
                    if entry.note:
                        st.caption(entry.note)
                    if entry.reference and entry.origin == "literature":
                        st.caption(f"Reference: {entry.reference}")
