"""The lesson's three predict-then-reveal chapters: the learner commits to a guess, then the measurement appears,
scored by the rules of :mod:`core.lesson.guesses`, with the same guess on the bank's other seeds (how much of it
was luck). The running score lives in the session (:func:`score`)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.lesson import guesses, reference
from core.runs.record import Run
from core.signals import SIGNALS

from . import cached_store, lesson_data, lesson_plots, plots, state, tables, theme, widgets
from .lesson_chapters import missing, run_line
from .lesson_data import Ctx

SCORE_KEY = "lesson_score"  # guess name -> scored (bool), the first reveal of each
GUESS_COUNT = 3


def score() -> dict[str, bool]:
    return st.session_state.setdefault(SCORE_KEY, {})


def record(guess: str, scored: bool) -> None:
    """Count a revealed guess once: the first reveal counts, revealing again does not change the score."""
    score().setdefault(guess, bool(scored))


def score_line() -> str:
    done = score()
    return (f"Score: {sum(done.values())} of {len(done)} guess{'es' if len(done) != 1 else ''} "
            f"({GUESS_COUNT} in the lesson)")


def _shown_key(name: str) -> str:
    return f"lesson_shown_{name}"


def _show(name: str) -> None:
    st.session_state[_shown_key(name)] = True


def _reveal_button(name: str, ready: bool) -> bool:
    """The Reveal button (disabled until a guess is made); True once this guess was revealed."""
    if st.session_state.get(_shown_key(name)):
        return True
    st.button("Reveal", key=f"lesson_reveal_{name}", type="primary", icon=":material/visibility:", disabled=not ready,
              on_click=_show, args=(name,), help="Commit to your guess first: then the measurement appears.")
    return False


def _verdict(name: str, scored: bool, good: str, bad: str) -> None:
    record(name, scored)
    first = score()[name]
    (st.success if scored else st.warning)((good if scored else bad)
                                           + ("" if first == scored else " (your first reveal counts for the score)"),
                                           icon=":material/check_circle:" if scored else ":material/lightbulb:")


# ------------------------------------------------------------------------------------------ 3 which layer
LAYER = (
    "The **oracle** is the measured truth: it removes each remaining layer in turn, without retraining, and "
    "measures validation accuracy. Before you see its answer, commit to a guess: at step 1, which single layer can "
    "go at the least cost? Look at the signals, then **click a layer's column on the heatmap** (or pick it below) "
    "and reveal.")


def _picked_on_heatmap(event: object) -> int | None:
    points = getattr(getattr(event, "selection", None), "points", None) or []
    for p in points:
        x = str(p.get("x", "")) if isinstance(p, dict) else ""
        if x.startswith("L") and x[1:].isdigit():
            return int(x[1:])
    return None


def layer(ctx: Ctx) -> None:
    run = ctx.runs.forest or ctx.runs.oracle or ctx.runs.any
    data = lesson_data.heatmap(run, 1) if run is not None else None
    oracle, outcomes = lesson_data.oracle(run, 1) if run is not None else (None, None)
    model, dataset, this_seed, this_run = ctx.model, ctx.dataset, None, None
    if run is None or data is None or oracle is None or oracle.empty:
        found_bank = lesson_data.bank_step(ctx.model, ctx.dataset)
        if found_bank is None:
            missing(ctx, "random-forest fusion")
            return
        lesson_data.bank_line(ctx, found_bank)
        oracle, outcomes, this_seed, this_run = (found_bank.oracle, found_bank.outcomes, found_bank.seed,
                                                 found_bank.run_id)
        data = tables.heatmap_data(found_bank.signals, list(SIGNALS), len(found_bank.signals))
    else:
        run_line(run)
        model, dataset, this_seed = run.model, run.dataset, run.config.get("seed")
    figure = lesson_plots.pick_heatmap(data, "Step 1: click the layer you would remove first",
                                       st.session_state.get("lesson_pick_layer"))
    event = st.plotly_chart(figure, theme=None, key="lesson_heat_pick", on_select="rerun", selection_mode="points",
                            config=widgets.PLOTLY_CONFIG)
    layers = [int(x) for x in oracle["original_layer"]]
    clicked = _picked_on_heatmap(event)
    if clicked is not None and clicked in layers and st.session_state.get("_lesson_clicked") != clicked:
        st.session_state["_lesson_clicked"] = clicked
        st.session_state["lesson_pick_layer"] = clicked  # before the pills are drawn: they show the click
    guess = st.pills("Your guess: the layer that is safest to remove", layers, selection_mode="single",
                     key="lesson_pick_layer", format_func=lambda i: f"L{i}")
    if not _reveal_button("layer", guess is not None) or guess is None:
        st.caption("The oracle's answer appears when you reveal.")
        return
    forest = lesson_data.chosen_layer(ctx.runs.forest, 1)
    rows, bank_outcomes, problem = lesson_data.bank()
    seeds = tuple(s for s in guesses.bank_seed_costs(rows, bank_outcomes, model, dataset, int(guess))
                  if s.run_id != this_run) if rows is not None else ()
    found = guesses.reveal_layer(oracle, outcomes, int(guess), forest, seeds)
    widgets.chart(plots.oracle_bars(oracle, int(guess), "The oracle at step 1: validation accuracy without each layer "
                                                        "(your pick highlighted)"), key="lesson_oracle")
    g, best = found.guess, found.best
    cols = st.columns(3)
    cols[0].metric(f"Your pick: L{g.layer}", g.accuracy.text() if g.accuracy else "–", f"rank {g.rank} of "
                   f"{found.n_layers}", delta_color="off", delta_arrow="off", border=True)
    cols[1].metric(f"Most accurate removal: L{best.layer}", best.accuracy.text() if best.accuracy else "–", border=True)
    if found.forest is not None:
        cols[2].metric(f"The forest's pick: L{found.forest.layer}", found.forest.accuracy.text()
                       if found.forest.accuracy else "–", f"regret {found.forest.regret_points:.1f} points",
                       delta_color="off", delta_arrow="off", border=True)
    st.markdown(f"Your regret (the most accurate removal's validation accuracy minus your pick's, paired over the "
                f"same rows): **{g.regret_text()}**."
                + (f" The oracle's own pick, the removal that changes the predictions least (lowest KL), was "
                   f"**L{found.oracle_pick}**." if found.oracle_pick is not None else ""))
    _verdict("layer", found.scored, "Scored: your pick is as good as the best removal, within noise.",
             "Not this time: the best removal beats your pick beyond noise.")
    st.markdown("**Luck or insight?** The same layer, scored on the other seeds the profile bank holds for this model "
                "and dataset (another split and teacher" + ("" if this_run else "; the bank's seed of this run's "
                                                            "number may be an earlier teacher") + "):")
    if not seeds:
        st.info(problem or f"The bank holds no other step-1 measurements of {model} on "
                f"{state.dataset_label(dataset)}, so this guess cannot be checked on other seeds.", icon="💡")
        return
    here = f"bank, seed {this_seed} (above)" if this_run else f"this run (seed {this_seed})"
    widgets.chart(lesson_plots.seed_costs(found, here), key="lesson_seed_costs")
    good = sum(s.as_good_as_best for s in seeds)
    st.markdown(f"L{g.layer} is as good as the best (within noise) on **{good} of {len(seeds)}** bank seed(s); the "
                "best removal there was " + ", ".join(f"L{s.best_layer} (seed {s.seed}, your pick ranked {s.rank} of "
                                                f"{s.n_layers})" for s in seeds) + ".")
    st.caption("Regrets in accuracy points with 95 % paired intervals over each run's validation rows"
               + (f" ({seeds[0].val_rows:,} on the bank)" if seeds[0].val_rows else "") + ". A guess that is cheap on "
               "one seed and not on another was partly luck: the oracle's step-1 order is itself noisy (chapter 6).")


# ------------------------------------------------------------------------------------------ 5 forest or signal
DUEL = (
    "A random forest that learned from many measured layers, against the one signal that did best on the bank. "
    "Which picks cheaper removals on {dataset}, step after step? Make your call: the forest, the best single "
    "signal, or too close to call (a difference under the noise floor of one step).")

DUEL_OPTIONS = {guesses.FOREST: "The random forest", guesses.SIGNAL: "The best single signal",
                guesses.TIE: "Too close to call"}


def _side(run: Run) -> tuple[guesses.DuelSide, list[str]] | None:
    facts = lesson_data.facts(run)
    if facts is None:
        return None
    regrets = [s.regret_value for s in facts.stories]
    side = guesses.duel_side(run.strategy, run.id, regrets, facts.intervals.after_kd or facts.intervals.final)
    return side, [s.regret_cell() for s in facts.stories]


def duel(ctx: Ctx) -> None:
    forest_run, signal_run = ctx.runs.forest, ctx.runs.signal
    if forest_run is None or signal_run is None:
        missing(ctx, "random-forest fusion" if forest_run is None else "single-signal")
        return
    name = theme.strategy_label(signal_run.strategy)
    st.caption(f"The best single signal recorded here: **{name}** (lowest one-step regret on the bank among the "
               "recorded strategies).")
    pick = st.radio("Your call", list(DUEL_OPTIONS), index=None, key="lesson_pick_duel", horizontal=True,
                    format_func=DUEL_OPTIONS.get)
    if not _reveal_button("duel", pick is not None) or pick is None:
        return
    a, b = _side(forest_run), _side(signal_run)
    if a is None or b is None:
        missing(ctx, "random-forest fusion")
        return
    floor = lesson_data.noise_floor(forest_run.model)
    found = guesses.reveal_duel(a[0], b[0], floor.interval.estimate if floor is not None else None)
    n = max(len(a[1]), len(b[1]))
    table = pd.DataFrame({"step": range(1, n + 1),
                          f"{theme.strategy_label('rf_fusion')}: regret": a[1] + [""] * (n - len(a[1])),
                          f"{name}: regret": b[1] + [""] * (n - len(b[1]))})
    st.dataframe(table, hide_index=True)
    st.markdown(f"Mean regret over the steps: forest **{found.forest.mean_regret:.2f}** points, {name} "
                f"**{found.signal.mean_regret:.2f}** points (difference {found.difference:+.2f}; the one-step noise "
                "floor "
                + (f"is {floor.interval.format(2)} points)." if floor is not None else "is not known here).")
                + (f" Final test accuracy: forest {found.forest.final.text()}, {name} {found.signal.final.text()}; "
                   f"{found.final_difference.sentence()}." if found.final_difference is not None and found.forest.final
                   and found.signal.final else ""))
    answer = DUEL_OPTIONS[found.answer].lower()
    _verdict("duel", found.scored(pick), f"Scored: on this run the answer is {answer}.",
             f"Not this time: on this run the answer is {answer}.")
    run_line(forest_run)
    run_line(signal_run)
    bank = reference.duel_in_bank(forest_run.model, forest_run.dataset, "rf_fusion", signal_run.strategy)
    over = [reference.overall_regret(forest_run.model, s) for s in ("rf_fusion", signal_run.strategy)]
    st.markdown("**Luck or insight?** The same question on the profile bank's held-out check (every seed it holds):")
    if bank is not None:
        w, l_, t = bank.here
        here = state.dataset_label(bank.dataset)
        st.markdown(f"- On {here}, over {sum(bank.here)} layer-steps of {bank.seeds_here} seed(s): the forest picked "
                    f"the cheaper removal at **{w}**, {name} at **{l_}**, ties {t}." if sum(bank.here)
                    else f"- The bank's check holds no layer-step of {here}.")
        w, l_, t = bank.everywhere
        st.markdown(f"- Over all {bank.datasets} datasets of the bank: forest **{w}**, {name} **{l_}**, ties {t}.")
    if all(o is not None for o in over):
        st.markdown(f"- Mean one-step regret over the bank's {over[0].datasets} datasets: forest "
                    f"{over[0].interval.format(2)} points, {name} {over[1].interval.format(2)} points (95 % bootstrap "
                    "intervals over datasets): they overlap, so which one wins on a given dataset is close to a coin.")
    if bank is None and not any(over):
        st.info(f"The bank's held-out check (data/reference/one_step.csv) holds no one-step regrets of "
                f"{forest_run.model} for these two strategies.", icon="💡")


# ------------------------------------------------------------------------------------------ 8 distillation
KD = (
    "After the last removal the pruned student learns once more, now from the unpruned teacher's soft predictions as "
    "well as the labels: **knowledge distillation**. How many points of test accuracy will it win back on {dataset} "
    "(after distillation minus before)? Set your guess, then reveal.")


def kd(ctx: Ctx) -> None:
    run = ctx.runs.forest or ctx.runs.any
    facts = lesson_data.facts(run)
    if run is None or facts is None or facts.intervals.kd_vs_before is None:
        missing(ctx, "random-forest fusion (with distillation)")
        return
    run_line(run)
    guess = st.slider("Your guess: points won back by distillation", -5.0, 15.0, 0.0, 0.5, key="lesson_pick_kd",
                      format="%+.1f")
    if not _reveal_button("kd", True):
        return
    others = {}
    for other in cached_store.runs(kind="prune", status="done", model=run.model):
        gain = cached_store.prune_intervals(other).kd_vs_before if other.id != run.id and other.recorded else None
        if gain is not None:  # the intervals every page reads (cached per run): no report is built for the others
            others[f"{theme.strategy_label(other.strategy)} · {state.dataset_label(other.dataset)}"] = gain
    found = guesses.reveal_kd(float(guess), facts.intervals.kd_vs_before, others)
    before = facts.intervals.steps.get(facts.intervals.final_step) if facts.intervals.final_step else None
    cols = st.columns(3)
    cols[0].metric("Before distillation", before.text() if before else "–", border=True)
    cols[1].metric("After distillation", facts.intervals.after_kd.text() if facts.intervals.after_kd else "–",
                   border=True)
    i = found.gain.interval
    cols[2].metric("Won back", f"{100 * i.estimate:+.1f} points", f"[{100 * i.low:+.1f}, {100 * i.high:+.1f}]",
                   delta_color="off", delta_arrow="off", border=True)
    said = found.gain.sentence()
    st.markdown(f"{said[:1].upper()}{said[1:]}. Your guess: **{guess:+.1f}** points.")
    _verdict("kd", found.scored, "Scored: your guess lies within the interval (or within a point of the estimate).",
             "Not this time: the measured gain is outside your guess's reach.")
    st.markdown("**Luck or insight?** The same question on other runs:")
    if others:
        st.dataframe(pd.DataFrame([{"recorded run": k, "won back (points)": f"{100 * c.interval.estimate:+.1f} "
                                    f"[{100 * c.interval.low:+.1f}, {100 * c.interval.high:+.1f}]",
                                    "within noise": "yes" if c.within_noise else "no"} for k, c in others.items()]),
                     hide_index=True)
    study = reference.kd_in_study(run.model, "rf_fusion")
    if study is not None:
        g = study.gains["gain_points"]
        st.markdown(f"In the full-path study (random-forest fusion, {len(g)} runs over "
                    f"{study.gains['dataset'].nunique()} datasets, seeds {sorted(set(study.gains['seed']))}): "
                    f"distillation moved test accuracy by **{study.mean:+.1f}** points on average "
                    f"(from {g.min():+.1f} to {g.max():+.1f}); your guess is within one point of "
                    f"{int(((g - guess).abs() <= guesses.KD_SLACK_POINTS).sum())} of them.")
    st.caption("Won back: test accuracy after distillation minus before, paired over the same test rows (95 % "
               "bootstrap). Distillation's settings are our defaults (the paper's are not published).")
