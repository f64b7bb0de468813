"""``python -m benchmarks parity``: does bf16 mixed precision change what the project measures? (issue 24)

For each dataset (default: three embedded ones) at the app's default budget (smaller with ``--train-cap``,
``--val-cap``, ``--test-cap``):

* the teacher trained in fp32 and in bf16 (both cached), their test accuracies and the **paired** difference on the
  same test rows (bootstrap interval and McNemar counts, :mod:`core.stats`): "within noise" is the bar;
* evaluation only: the fp32 teacher evaluated in bf16 against fp32 (accuracy difference, argmax agreement);
* the oracle's layer order at step 1 and at step 3 (after removing the fp32 oracle's two cheapest layers, no
  tuning): Spearman of bf16 against fp32 on the same model, for accuracy and loss;
* each signal's layer order (the twelve and block influence) computed under bf16 autocast against fp32, on the same
  model and calibration rows: Spearman, and the largest relative change of a value.

Prints one table per part and writes them as CSV to ``--out`` (a folder).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from scipy.stats import spearmanr

from core.config import DataConfig
from core.data.batches import batches, take
from core.data.task import prepare_task
from core.models.surgery import remove_layers
from core.oracle import best_layer, compute_oracle
from core.precision import autocast
from core.signals.compute import compute_signals
from core.stats.intervals import accuracy_interval, paired_accuracy_difference, verdict
from core.teacher import default_train_config, ensure_teacher
from core.train import predict_logits


def _rho(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks parity")
    p.add_argument("--model", default="e5-small")
    p.add_argument("--datasets", nargs="+", default=["trec", "sms-spam", "rotten-tomatoes"])
    d = DataConfig()
    p.add_argument("--train-cap", type=int, default=d.train_cap)
    p.add_argument("--val-cap", type=int, default=d.val_cap)
    p.add_argument("--test-cap", type=int, default=d.test_cap)
    p.add_argument("--calibration", type=int, default=256, help="training rows the signals are computed on")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="data/reference/precision")
    args = p.parse_args(argv or [])
    data_cfg = DataConfig(train_cap=args.train_cap, val_cap=args.val_cap, test_cap=args.test_cap)
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    teachers, oracles, signals = [], [], []
    for dataset in args.datasets:
        task = prepare_task(args.model, dataset, data_cfg)
        test, val = task.encoded["test"], task.encoded["val"]
        y = test["labels"].numpy()
        models, correct = {}, {}
        for prec in ("fp32", "bf16"):
            cfg = replace(default_train_config(task.model.key, task.num_labels), precision=prec)
            start = time.perf_counter()
            result = ensure_teacher(task, cfg)
            models[prec] = result.load().eval()
            correct[prec] = predict_logits(models[prec], test, precision=prec).argmax(-1).numpy() == y
            teachers.append({"dataset": dataset, "precision": prec, "test_accuracy": accuracy_interval(correct[prec]),
                             "train_seconds": round(result.seconds, 1), "cached": result.cached,
                             "wall_seconds": round(time.perf_counter() - start, 1)})
            print(f"[{dataset}] {prec} teacher: test accuracy {teachers[-1]['test_accuracy']} "
                  f"(trained in {result.seconds:.0f} s{', cached' if result.cached else ''})", flush=True)
        diff = paired_accuracy_difference(correct["bf16"], correct["fp32"])
        teachers[-1]["bf16_minus_fp32"] = verdict(diff.interval, "bf16", "fp32")
        # the same fp32 model, evaluated both ways
        exact = predict_logits(models["fp32"], test, precision="fp32")
        mixed = predict_logits(models["fp32"], test, precision="bf16")
        teachers[-1]["eval_only_argmax_agreement"] = float((exact.argmax(-1) == mixed.argmax(-1)).float().mean())
        teachers[-1]["eval_only_max_logit_diff"] = float((exact - mixed).abs().max())
        print(f"[{dataset}] teacher bf16 vs fp32 (paired, same {len(y)} test rows): {teachers[-1]['bf16_minus_fp32']};"
              f" fp32 model evaluated in bf16: argmax agreement {teachers[-1]['eval_only_argmax_agreement']:.4f}",
              flush=True)
        model = models["fp32"]
        for step in (1, 2, 3):
            o32 = compute_oracle(model, val, device=cpu, precision="fp32")
            if step in (1, 3):
                o16 = compute_oracle(model, val, device=cpu, precision="bf16")
                oracles.append({"dataset": dataset, "step": step, "layers": len(o32),
                                "spearman_accuracy": _rho(o32["accuracy"], o16["accuracy"]),
                                "spearman_loss": _rho(o32["loss"], o16["loss"]),
                                "same_best_layer": best_layer(o32) == best_layer(o16),
                                "max_accuracy_diff": float((o32["accuracy"] - o16["accuracy"]).abs().max())})
                print(f"[{dataset}] oracle step {step}: {oracles[-1]}", flush=True)
            if step < 3:
                model = remove_layers(model, [best_layer(o32)], by="original")
        calib = list(batches(take(task.encoded["train"], args.calibration), 32))
        s32 = compute_signals(models["fp32"], calib, device=cpu, seed=0)
        with autocast("bf16", cpu):
            s16 = compute_signals(models["fp32"], calib, device=cpu, seed=0)
        for col in [c for c in s32.columns if c.startswith("score__")]:
            key = col.removeprefix("score__")
            a, b = s32[key].to_numpy(float), s16[key].to_numpy(float)
            rel = np.abs(a - b) / np.maximum(np.abs(a), 1e-12)
            signals.append({"dataset": dataset, "signal": key, "spearman": _rho(a, b),
                            "max_relative_change": float(rel.max())})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frames = {"teachers": pd.DataFrame(teachers), "oracle": pd.DataFrame(oracles), "signals": pd.DataFrame(signals)}
    for name, frame in frames.items():
        frame.astype({c: str for c in frame.columns if frame[c].dtype == object}).to_csv(out / f"{name}.csv",
                                                                                          index=False)
    with pd.option_context("display.width", 220, "display.max_columns", 20, "display.max_colwidth", 60):
        print("\nteachers (test accuracy, 95 % Wilson; bf16 - fp32 paired bootstrap on the same rows)")
        print(frames["teachers"].to_string(index=False))
        print("\noracle order, bf16 against fp32 on the same model")
        print(frames["oracle"].round(3).to_string(index=False))
        sig = frames["signals"].groupby("signal", sort=False).agg(
            spearman_min=("spearman", "min"), spearman_mean=("spearman", "mean"),
            max_relative_change=("max_relative_change", "max"))
        print("\nsignals: layer order under bf16 autocast against fp32 (min and mean over datasets)")
        print(sig.round(3).to_string())
    return 0
