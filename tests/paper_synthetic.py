"""A small synthetic profile bank with per-example oracle outcomes, for the paper check's tests (no training).

Each (dataset, seed) path has ``steps`` steps; at each step every remaining layer has a true accuracy, and the
validation examples' correctness is drawn from a shared difficulty per example plus per-layer noise (so layers
agree on the easy and the hard rows, as real removals do). One signal, ``PERFECT``, orders the layers by their
true accuracy: a strategy that always removes the truly least harmful layer; ``WORST`` the reverse."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from core.fusion import bank as B
from core.signals import get_info

PERFECT = "weight_magnitude"
#: a signal that orders the layers the other way: it removes the truly most harmful layer first
WORST = "taylor"


def synthetic_bank(datasets=("alpha", "beta", "gamma"), seeds=(0,), steps=4, n_examples=400, noise=0.3,
                   spread=0.04, seed=0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(profiles, outcomes) in the bank's own format (validated by :func:`core.fusion.bank.validate_rows`)."""
    rng = np.random.default_rng(seed)
    rows, outs = [], []
    for d in datasets:
        for sd in seeds:
            run_id, removed = f"run-{d}-{sd}", []
            for k in range(1, steps + 1):
                layers = [l for l in range(12) if l not in removed]
                L = len(layers)
                true = 0.8 - spread * rng.random(L)
                u = rng.random(n_examples)
                correct = ((u[None, :] + noise * rng.standard_normal((L, n_examples))) < true[:, None]).astype("int8")
                prob = np.clip(true, 0.01, 0.99)
                for i, layer in enumerate(layers):
                    row = {"model": "tiny", "dataset": d, "seed": sd, "run_id": run_id, "step": k, "layer": i,
                           "original_layer": layer, "n_layers": L, "n_original": 12,
                           "removed_so_far": json.dumps(removed), "oracle_accuracy": float(correct[i].mean()),
                           "oracle_loss": float(-np.log(prob[i])), "data_config": "{}",
                           "teacher_fingerprint": "t", "code_version": "test"}
                    for key in B.SIGNAL_COLUMNS:
                        row[key] = float(rng.standard_normal())
                    info = get_info(PERFECT)  # pruned first = lowest oriented score = the truly best removal
                    row[PERFECT] = float(-true[i] if info.direction == "lowest" else true[i])
                    worst = get_info(WORST)
                    row[WORST] = float(true[i] if worst.direction == "lowest" else -true[i])
                    rows.append(row)
                    outs.append(pd.DataFrame({"run_id": run_id, "step": k, "original_layer": layer,
                                              "example": np.arange(n_examples), "correct": correct[i],
                                              "loss": rng.random(n_examples).astype("float32"),
                                              "kl_to_teacher": rng.random(n_examples).astype("float32")}))
                removed = removed + [layers[int(np.argmax(correct.mean(axis=1)))]]
    profiles = pd.DataFrame(rows)
    for c in B.INT_COLUMNS:
        profiles[c] = profiles[c].astype("int64")
    return B.validate_rows(profiles[list(B.COLUMNS)]), B.validate_outcomes(pd.concat(outs, ignore_index=True))
