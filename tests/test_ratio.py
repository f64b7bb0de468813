"""The accuracy-to-size ratio's formula, pinned with numbers computed by hand.

Our definition (the paper's formula is not public): ``(accuracy / teacher accuracy) / (params / teacher params)``.
The tempting slip is to multiply by the size ratio instead of dividing by it (or, the same thing, to swap the two
parameter counts where a summary calls the function): a model 60 % of the teacher's size that keeps 90 % of its
accuracy then scores 0.54 instead of 1.5. These tests fail for that slip in the function and in each place a run
summary computes the ratio.
"""

from __future__ import annotations

import pytest

from core.metrics import accuracy_to_size_ratio

TEACHER = {"test_accuracy": 0.90, "params_total": 100_000_000, "test_macro_f1": 0.9, "val_accuracy": 0.9}


def _metrics(acc: float, params: int) -> dict:
    return {"test_accuracy": acc, "params_total": params, "test_macro_f1": acc, "val_accuracy": acc}


def test_ratio_divides_relative_accuracy_by_relative_size():
    # 0.81 / 0.90 = 0.9 of the accuracy at 60M / 100M = 0.6 of the size: 0.9 / 0.6 = 1.5 (not 0.9 * 0.6 = 0.54)
    assert accuracy_to_size_ratio(0.81, 60_000_000, 0.90, 100_000_000) == pytest.approx(1.5)
    # a quarter of the size at 0.8 of the accuracy: 0.8 / 0.25 = 3.2 (not 0.2)
    assert accuracy_to_size_ratio(0.6, 25, 0.75, 100) == pytest.approx(3.2)
    # bigger than the teacher at the same accuracy: below 1
    assert accuracy_to_size_ratio(0.5, 200, 0.5, 100) == pytest.approx(0.5)


def test_pruning_summary_ratio_is_the_final_models_hand_computed_ratio():
    from core.pruning.config import PruneConfig
    from core.pruning.tree import Member, prune_summary
    from core.runs.record import StepRow

    member = Member("r1", PruneConfig(strategy="random"), removed=[5, 7],
                    history=[StepRow(12, None, (), TEACHER), StepRow(11, 5, (5,), _metrics(0.846, 80_000_000)),
                             StepRow(10, 7, (5, 7), _metrics(0.72, 60_000_000))])
    after_kd = _metrics(0.81, 60_000_000)
    summary = prune_summary(member, TEACHER, after_kd, accuracy_to_size_ratio)
    assert summary.ratio == pytest.approx(1.5)  # (0.81 / 0.90) / (60M / 100M)
    assert summary.ratio_after_kd == pytest.approx(1.5)
    assert summary.to_dict()["ratio"] == pytest.approx(1.5) and summary.final_layers == 10
    no_kd = prune_summary(member, TEACHER, None, accuracy_to_size_ratio)
    assert no_kd.ratio == pytest.approx(4 / 3)  # (0.72 / 0.90) / 0.6 = 0.8 / 0.6
    assert no_kd.max_accuracy_over_depth == {"accuracy": 0.846, "n_layers": 11}


def test_merging_summary_ratio_is_the_merged_models_hand_computed_ratio():
    from core.merging.config import MergeConfig
    from core.merging.loop import MergeOutcome, merge_summary

    base = {**TEACHER, "unique_ffns": 12}
    final = {**_metrics(0.855, 80_000_000), "unique_ffns": 9}
    merged = {"finetuned": _metrics(0.8, 80_000_000), "distilled": final}
    outcome = MergeOutcome(base, {"window": [4, 5, 6, 7], "label": "L4-L7", "selection": "accuracy"},
                           {"ffn_params": 1}, merged, True)
    summary = merge_summary(MergeConfig(model="tiny-bert", dataset="keywords"), outcome)
    assert summary.ratio == pytest.approx(1.1875)  # (0.855 / 0.90) / (80M / 100M) = 0.95 / 0.8
    assert summary.to_dict()["ratio"] == pytest.approx(1.1875)


def test_each_pruning_steps_ratio_follows_the_formula():
    """The per-step ``ratio`` column of a real (tiny) walk: relative accuracy over relative size at every step."""
    from core.config import DataConfig
    from core.pruning.config import PruneConfig
    from core.pruning.loop import prune_events

    cfg = PruneConfig(model="tiny-bert", dataset="keywords", strategy="random", layers_to_remove=2, step_epochs=0.0,
                      data=DataConfig(train_cap=64, val_cap=24, test_cap=24), calibration_size=16, distill=False)
    rows = [ev.payload for ev in prune_events(cfg, run_id="ratio") if ev.stage == "step_done"]
    assert [r["n_layers"] for r in rows] == [12, 11, 10]
    teacher = rows[0]
    for r in rows[1:]:
        assert r["params_total"] < teacher["params_total"]  # the formulas differ only when the size does
        expected = (r["test_accuracy"] / teacher["test_accuracy"]) / (r["params_total"] / teacher["params_total"])
        assert r["ratio"] == pytest.approx(expected)
