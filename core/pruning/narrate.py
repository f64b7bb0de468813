"""The story of a finished pruning run, one caption per step, written only from what the run stored: the layer
removed and who chose it, the oracle's best removal and the regret, the signals that pushed the ranker most (its
stored SHAP values), validation accuracy right after the removal and after fine-tuning with their intervals, and
what distillation won back. The Live page's replay shows these captions as it plays (issue 30).

Nothing is recomputed: the inputs are a run's step table, its ``choice.json`` files, its summary and a reader of
its per-example outcomes (:data:`core.runs.noise.Reader`), so the captions of a recorded run and of the user's own
are written the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from core.fusion import FusionChoice, read_choice
from core.oracle import KL_TO_CURRENT, upgrade_oracle_table
from core.runs import artifacts, noise
from core.signals import BASELINES, SIGNALS

#: how many signals the caption names (pushing towards the removal, then against it)
TOP_SIGNALS = 3


def _name(key: str) -> str:
    info = SIGNALS.get(key) or BASELINES.get(key)
    return info.display_name if info is not None else key


def _who(strategy: str, label: str, choice: Mapping[str, Any], fusion: FusionChoice | None, layer: int) -> str:
    """Who chose the layer, and how, in a clause."""
    if strategy == "oracle":
        return f"**{label}** removed **L{layer}**: it tried every removal on the validation rows"
    if fusion is not None:
        n = len(fusion.candidates)
        if fusion.ranker is None:
            how = f"no ranker could be trained yet, so the twelve signals voted: L{layer} came first of {n}"
        else:
            kind = "random forest" if fusion.ranker.kind == "forest" else "linear model"
            rows = f" on {fusion.ranker.n_train_rows} layer-steps" if fusion.ranker.n_train_rows else ""
            proto = fusion.protocol.name.replace("_", " ")
            how = f"its {kind} (trained{rows}, {proto}) scored L{layer} cheapest of {n} layers"
        return f"**{label}** removed **L{layer}**: {how}"
    info = SIGNALS.get(strategy)
    if info is not None:
        return f"**{label}** removed **L{layer}**: the remaining layer with the {info.direction} {info.display_name}"
    order = (choice.get("info") or {}).get("order") or []
    shown = ", ".join(f"L{x}" for x in order[:4]) + (", …" if len(order) > 4 else "")
    return f"**{label}** removed **L{layer}**" + (f" (its order: {shown})" if shown else "")


def _by_kl(table: pd.DataFrame | None) -> bool:
    """Whether the oracle picked by KL (:func:`core.oracle.best_layer`): its table holds a finite KL per candidate."""
    if table is None:
        return False
    table = upgrade_oracle_table(table)
    return KL_TO_CURRENT in table.columns and bool(table[KL_TO_CURRENT].notna().all())


def _oracle_part(row: Mapping[str, Any], layer: int, table: pd.DataFrame | None,
                 val: Callable[[int], noise.Measured | None]) -> str:
    """The oracle's own pick, the most accurate removal and the regret (validation accuracy, no tuning)."""
    values: list[Any] = [row.get(k) for k in ("oracle_best", "oracle_best_accuracy", "chosen_oracle_accuracy")]
    if any(v is None or pd.isna(v) for v in values):
        return ""
    pick, top, chosen = int(values[0]), float(values[1]), float(values[2])
    how = " (the removal that changes the predictions least, KL)" if _by_kl(table) else ""
    said = f"The oracle's own pick{how} was " + (f"also L{layer}" if pick == layer else f"**L{pick}**")
    regret = (top - chosen) * 100
    if regret < 0.05:
        return said + f"; no removal kept more validation accuracy than L{layer}: **no regret**."
    most_text, most = f"{top:.3f}", ""
    if table is not None and {"original_layer", "accuracy"} <= set(table.columns):
        tops = table[table["accuracy"] >= table["accuracy"].max() - 1e-12]["original_layer"].astype(int).tolist()
        best = pick if pick in tops else tops[0]
        most, found = f" L{best}", val(best)
        most_text = found.text() if found is not None else most_text
    return (said + f"; the most accurate removal{most} kept {most_text} (no tuning): a regret of "
            f"**{regret:.1f} points** for L{layer}.")


def shap_pushes(fusion: FusionChoice | None, layer: int, top: int = TOP_SIGNALS) -> tuple[list[tuple[str, float]],
                                                                                         list[tuple[str, float]]]:
    """The signals whose SHAP values pushed the ranker's score of ``layer`` most towards removing it and most
    against, each as (signal key, value in the target's units); empty without stored SHAP values."""
    if fusion is None or not fusion.explanation:
        return [], []
    shap = fusion.explanation
    if not shap.get("values") or not shap.get("feature_names"):
        return [], []
    rows = [int(x) for x in (shap.get("original_layer") or shap.get("row_ids") or fusion.candidates)]
    if layer not in rows:
        return [], []
    values = dict(zip(shap["feature_names"], shap["values"][rows.index(layer)]))
    ranked = sorted(values.items(), key=lambda kv: -abs(float(kv[1])))
    tiny = 0.05 * max(abs(float(v)) for _, v in ranked)  # under 5 % of the largest push: left out
    towards = [(k, float(v)) for k, v in ranked if float(v) > tiny][:top]
    against = [(k, float(v)) for k, v in ranked if float(v) < -tiny][:max(1, top - 2)]
    return towards, against


def _shap_part(fusion: FusionChoice | None, layer: int) -> str:
    towards, against = shap_pushes(fusion, layer)
    if fusion is None or (not towards and not against):
        return ""
    gap = fusion.target in (None, "gap")
    scale, unit = (100.0, " points") if gap else (1.0, "")

    def listed(items: list[tuple[str, float]]) -> str:
        return ", ".join(f"{_name(k)} ({v * scale:+.2f}{unit})" for k, v in items)

    text = f"The signals that pushed the ranker most towards L{layer} (SHAP): {listed(towards) or 'none'}"
    text += f"; against it: {listed(against)}" if against else ""
    return text + ("." if gap else f" (on its {fusion.target} score: 0 is the step's least disruptive removal).")


def _accuracy_part(layer: int, before: noise.Measured | None, after: noise.Measured | None,
                   test: noise.Measured | None, vs_teacher: noise.Comparison | None) -> str:
    text = ""
    if before is not None and after is not None:
        text = (f"Validation accuracy {before.text()} right after removing L{layer} (no tuning), "
                f"**{after.text()}** after fine-tuning.")
    elif after is not None:
        text = f"Validation accuracy **{after.text()}** after fine-tuning."
    if test is not None:
        text += f" Test accuracy {test.text()}" + (f": {vs_teacher.sentence()}." if vs_teacher else ".")
    return text.strip()


@dataclass(frozen=True, eq=False)
class StoredSteps:
    """What a finished pruning run stored that its captions tell: its id and strategy, its steps table, each
    step's stored ``choice.json`` (step -> dict) and whether it ended with distillation."""

    run_id: str
    strategy: str
    steps: pd.DataFrame
    choices: Mapping[int, Mapping[str, Any]]
    distilled: bool = True


def narrate(run: StoredSteps, intervals: noise.PruneIntervals, read: noise.Reader,
            label: Callable[[str], str] = str, oracle: Callable[[int], pd.DataFrame | None] | None = None
            ) -> dict[int, str]:
    """One caption (Markdown) per stored step of a finished pruning run: step -> text. ``intervals`` are the
    run's test accuracies with intervals (:func:`core.runs.noise.prune_intervals`); ``read`` reads its per-example
    outcomes; ``label`` names its strategy; ``oracle`` reads a step's oracle table (``steps/<k>/oracle.csv``:
    which removal was the most accurate, and whether the oracle picked by KL)."""
    run_id, strategy, steps, choices, distilled = run.run_id, run.strategy, run.steps, run.choices, run.distilled
    if steps.empty:
        return {}
    table = steps.sort_values("step")
    last = int(table["step"].max())
    name = label(strategy)
    out: dict[int, str] = {}
    for _, series in table.iterrows():
        row = series.to_dict()
        k = int(row["step"])
        val = noise.measured(row.get("val_accuracy"), read(run_id, k, artifacts.VAL_OUTCOMES))
        test = intervals.steps.get(k)
        if k == 0:
            out[0] = (f"**Before pruning.** The fine-tuned teacher has {int(row['n_layers'])} layers: test accuracy "
                      f"{test.text() if test else '?'}" + (f", validation {val.text()}" if val else "") + f". "
                      f"{name} now removes one layer per step and fine-tunes after each removal ({last} steps).")
            continue
        layer = int(row["removed"])
        oracle_rows = read(run_id, k, artifacts.ORACLE_OUTCOMES)

        def oracle_val(candidate: int, rows: pd.DataFrame | None = oracle_rows) -> noise.Measured | None:
            if rows is None or "original_layer" not in rows:
                return None
            return noise.measured(None, rows[rows["original_layer"] == candidate])

        choice = choices.get(k) or {}
        fusion = read_choice(choice)
        text = [f"**Step {k} of {last}.** " + _who(strategy, name, choice, fusion, layer) + ".",
                _oracle_part(row, layer, oracle(k) if oracle else None, oracle_val), _shap_part(fusion, layer),
                _accuracy_part(layer, oracle_val(layer), val, test, intervals.vs_teacher.get(k))]
        if k == last and distilled and intervals.after_kd is not None:
            won = intervals.kd_vs_before
            text.append(f"**Distillation** from the unpruned teacher, at the end: test accuracy "
                        f"{test.text() if test else '?'} → **{intervals.after_kd.text()}**"
                        + (f"; {won.sentence()}" if won else "") + ".")
        out[k] = "  \n".join(t for t in text if t)  # one line each (a Markdown line break)
    return out
