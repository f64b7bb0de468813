"""scripts/compare_banks.py's pure parts on small hand-built banks whose answers are known: the oracle's choice
(KL first when every row has one, else accuracy), the removal path read from ``removed_so_far``, the NaN-safe
Spearman agreement, the overlap of paths, and the per-dataset summary."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from tests.scripts import load_script

ROOT = Path(__file__).resolve().parent.parent


cb = load_script("compare_banks")


def _step(step: int, removed: list[int], acc: dict[int, float], kl: dict[int, float] | None = None,
          loss: dict[int, float] | None = None, **extra) -> list[dict]:
    rows = []
    for i, layer in enumerate(sorted(acc)):
        row = {"model": "m", "step": step, "layer": i, "original_layer": layer, "removed_so_far": json.dumps(removed),
               "oracle_accuracy": acc[layer], "oracle_loss": (loss or {}).get(layer, 1.0), **extra}
        if kl is not None:
            row["oracle_kl"] = kl[layer]
        rows.append(row)
    return rows


def _run(dataset: str, seed: int, run_id: str, steps: list[list[dict]], val_cap: int) -> pd.DataFrame:
    frame = pd.DataFrame([r for s in steps for r in s])
    return frame.assign(dataset=dataset, seed=seed, run_id=run_id,
                        data_config=json.dumps({"seed": seed, "val_cap": val_cap}))


def test_parse_removed_reads_the_stored_json_list():
    assert cb.parse_removed("[]") == []
    assert cb.parse_removed("[5, 3, 11]") == [5, 3, 11]
    assert cb.parse_removed(None) == []


def test_chosen_layer_uses_kl_when_every_row_has_one_else_accuracy():
    acc = {0: 0.9, 1: 0.8, 2: 0.9, 3: 0.7}
    # KL picks layer 3 although its accuracy is the worst
    assert cb.chosen_layer(pd.DataFrame(_step(1, [], acc, kl={0: 0.3, 1: 0.2, 2: 0.5, 3: 0.1}))) == 3
    # KL tie between 1 and 3: the higher accuracy (1) wins
    assert cb.chosen_layer(pd.DataFrame(_step(1, [], acc, kl={0: 0.3, 1: 0.1, 2: 0.5, 3: 0.1}))) == 1
    # one KL missing: accuracy, and the tie between 0 and 2 goes to the lower loss (2)
    rows = pd.DataFrame(_step(1, [], acc, kl={0: 0.3, 1: float("nan"), 2: 0.5, 3: 0.1}, loss={0: 0.5, 2: 0.4}))
    assert cb.oracle_criterion(rows) == "accuracy"
    assert cb.chosen_layer(rows) == 2
    assert cb.chosen_layer(pd.DataFrame(_step(1, [], acc))) == 0  # no KL column, equal losses: the first


def test_removal_path_is_read_from_removed_so_far_and_the_last_step_from_the_rule():
    steps = [_step(1, [], {0: 0.9, 1: 0.5, 2: 0.6, 3: 0.7}),  # rule says 0, but the bank recorded 2
             _step(2, [2], {0: 0.9, 1: 0.5, 3: 0.7}),          # rule says 0, recorded 0
             _step(3, [2, 0], {1: 0.8, 3: 0.7})]               # last step: the rule's 1
    path, agree, recorded = cb.removal_path(_run("d", 0, "r", steps, 10))
    assert path == [2, 0, 1]
    assert (agree, recorded) == (1, 2)
    broken = [_step(1, [], {0: 0.9, 1: 0.5}), _step(2, [0, 1], {1: 0.5})]  # two layers appear at once
    with pytest.raises(ValueError, match="exactly one"):
        cb.removal_path(_run("d", 0, "r", broken, 10))


def test_rank_agreement_is_spearman_and_nan_safe():
    a = pd.DataFrame(_step(1, [], {0: 0.1, 1: 0.2, 2: 0.3, 3: 0.4}))
    assert cb.rank_agreement(a, pd.DataFrame(_step(1, [], {3: 0.9, 2: 0.8, 1: 0.7, 0: 0.6}))) == pytest.approx(1.0)
    assert cb.rank_agreement(a, pd.DataFrame(_step(1, [], {0: 0.9, 1: 0.8, 2: 0.7, 3: 0.6}))) == pytest.approx(-1.0)
    # ranks 1 2 3 4 vs 4 1 2 3: 1 - 6 * 12 / 60
    assert cb.rank_agreement(a, pd.DataFrame(_step(1, [], {0: 0.9, 1: 0.1, 2: 0.2, 3: 0.3}))) == pytest.approx(-0.2)
    # a NaN drops that layer; the remaining three agree perfectly
    with_nan = pd.DataFrame(_step(1, [], {0: float("nan"), 1: 0.1, 2: 0.2, 3: 0.3}))
    assert cb.rank_agreement(a, with_nan) == pytest.approx(1.0)
    assert math.isnan(cb.rank_agreement(a, pd.DataFrame(_step(1, [], {0: 0.5, 1: 0.5, 2: 0.5, 3: 0.5}))))
    assert math.isnan(cb.rank_agreement(a.iloc[:2], a.iloc[:2]))
    assert math.isnan(cb.nan_mean([float("nan")]))
    assert cb.nan_mean([float("nan"), 0.2, 0.4]) == pytest.approx(0.3)
    assert cb.overlap([1, 2, 3], [3, 2, 9]) == 2


def test_compare_summarises_each_shared_dataset():
    up, down = {0: 0.6, 1: 0.7, 2: 0.8, 3: 0.9}, {0: 0.9, 1: 0.8, 2: 0.7, 3: 0.6}
    # old bank (accuracy rule): seed 0 removes 3 then 2, seed 1 removes 0 then 1; a second dataset only here
    old = pd.concat([
        _run("d", 0, "o0", [_step(1, [], up), _step(2, [3], {0: 0.6, 1: 0.7, 2: 0.8})], 500),
        _run("d", 1, "o1", [_step(1, [], down), _step(2, [0], {1: 0.8, 2: 0.7, 3: 0.6})], 500),
        _run("x", 0, "ox", [_step(1, [], up)], 500)], ignore_index=True)
    # new bank (KL rule), seed 0 only: ranks by accuracy like old seed 0, but KL removes 0 then 3
    kl = {0: 0.1, 1: 0.2, 2: 0.3, 3: 0.4}
    new = _run("d", 0, "n0", [_step(1, [], {0: 0.5, 1: 0.6, 2: 0.7, 3: 1.0}, kl=kl),
                              _step(2, [0], {1: 0.6, 2: 0.7, 3: 1.0}, kl={1: 0.9, 2: 0.8, 3: 0.1})], 1000)
    outcomes = pd.DataFrame({"run_id": "n0", "step": 1, "original_layer": [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3],
                             "example": list(range(3)) * 4})
    summary, paths, check = cb.compare(old, new, None, outcomes)
    assert summary["dataset"].tolist() == ["d"]
    row = summary.iloc[0]
    assert (row["seeds old"], row["seeds new"], row["cap old"], row["cap new"]) == ("0,1", "0", "500", "1000")
    assert (row["n old"], row["n new"]) == ("-", "3")
    assert row["acc mean old"] == pytest.approx(0.75) and row["acc mean new"] == pytest.approx(0.7)
    assert row["d acc mean"] == pytest.approx(-0.05)
    assert row["acc best old"] == pytest.approx(0.9) and row["d acc best"] == pytest.approx(0.1)
    assert row["rho old~new"] == pytest.approx(1.0) and row["k"] == 1
    assert row["rho seeds old"] == pytest.approx(-1.0) and math.isnan(row["rho seeds new"])
    assert row["shared"] == "1.00/2"  # {3, 2} vs {0, 3}
    assert paths[["seed", "old path", "new path", "shared"]].values.tolist() == [[0, "3 2", "0 3", 1],
                                                                                 [1, "0 1", "-", "-"]]
    assert check == {"old": (2, 2), "new": (1, 1)}
    assert "| dataset |" in cb.as_markdown(summary).splitlines()[0]
