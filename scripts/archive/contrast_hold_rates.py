"""How often each assertion the tests make about the contrast model holds, over seeds and both precisions.

Issue 28: a fixture's assertions must hold for the properties the code promises, on either precision and across
seeds. This builds the contrast model (tests/contrast.py) for seeds 0..N-1, trained in fp32 and in bf16 (the
oracle evaluated in the same precision), takes step 1's signals and oracle, trains both fusion rankers on the same
step profiled as another dataset (what tests/test_fusion.py does), and prints, per assertion, the share of the
2 x N builds where it holds. The tests keep the assertions that held everywhere.

    .venv/bin/python scripts/contrast_hold_rates.py --seeds 5
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from core.data.batches import batches, take  # noqa: E402
from core.fusion import profile_rows, read_choice  # noqa: E402
from core.pruning.config import PruneConfig  # noqa: E402
from core.pruning.oracle import compute_oracle  # noqa: E402
from core.pruning.strategies import choose_layer  # noqa: E402
from core.signals import compute_signals  # noqa: E402
from tests.contrast import contrast_model  # noqa: E402


def checks(seed: int, precision: str) -> dict[str, bool]:
    c = contrast_model(seed=seed, precision=precision)
    cpu = torch.device("cpu")
    signals = compute_signals(c.model, list(batches(take(c.task.encoded["train"], 64), 32)), device=cpu, seed=0)
    oracle = compute_oracle(c.model, c.task.encoded["val"], device=cpu, precision=precision)
    acc = oracle.set_index("original_layer")["accuracy"]
    base = oracle.attrs["baseline"]["accuracy"]
    harmless, critical = list(c.harmless_layers), list(c.critical_layers)
    table = signals.set_index("original_layer")
    print(f"seed {seed} {precision}: teacher validation accuracy {base:.3f}", file=sys.stderr, flush=True)
    out = {
        "oracle: teacher accuracy >= 0.95": base >= 0.95,
        "oracle: teacher accuracy >= 0.9": base >= 0.9,
        "oracle: harmless layers cost nothing (exact)": all(abs(acc[i] - base) <= 1e-9 for i in harmless),
        "oracle: harmless layers cost < 0.01": all(abs(acc[i] - base) < 0.01 for i in harmless),
        "oracle: critical layers <= 0.4": all(acc[i] <= 0.4 for i in critical),
        "signals: block influence separates": bool(table.loc[harmless, "block_influence"].abs().max() < 1e-5
                                                   and table.loc[critical, "block_influence"].min() > 0.1),
        "signals: weight magnitude separates": bool(table.loc[harmless, "weight_magnitude"].max()
                                                    < table.loc[critical, "weight_magnitude"].min()),
    }
    elsewhere = profile_rows(signals, oracle, run_id="elsewhere", dataset="other-task", model="tiny-bert", step=1,
                             n_original=12)
    for strategy in ("rf_fusion", "lr_fusion"):
        cfg = PruneConfig(model="tiny-bert", dataset="contrast-keywords", strategy=strategy, seed=7, precision="fp32")
        layer, info = choose_layer(cfg, 1, signals, oracle, elsewhere, "run-1", "contrast-keywords", 12)
        stored = read_choice({"layer": layer, "info": info})
        by = dict(zip(stored.candidates, stored.scores))
        crit, harm = [by[i] for i in critical], [by[i] for i in harmless]
        out[f"{strategy}: removes a harmless layer (top-1 hit)"] = bool(layer in harmless and
                                                                        stored.quality["top1_hit"])
        out[f"{strategy}: every critical layer ranked below every harmless one"] = max(crit) < min(harm)
        out[f"{strategy}: mean critical score below mean harmless"] = float(np.mean(crit)) < float(np.mean(harm))
        out[f"{strategy}: the lowest-scored layer is critical"] = min(by, key=by.get) in critical
        out[f"{strategy}: spearman with the oracle > 0"] = stored.quality["spearman"] > 0
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    held: dict[str, list[bool]] = defaultdict(list)
    for precision in ("fp32", "bf16"):
        for seed in range(args.seeds):
            for name, ok in checks(seed, precision).items():
                held[f"{name} [{precision}]"].append(bool(ok))
            print(f"built seed {seed} {precision}", file=sys.stderr, flush=True)
    print(f"{'assertion':<78} holds")
    for name, oks in held.items():
        print(f"{name:<78} {sum(oks)}/{len(oks)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
