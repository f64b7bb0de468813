"""``python -m benchmarks oracle``: the naive oracle (every pruned model built and evaluated) against the
prefix-cached one, timed in one process on the same synthetic rows, with the largest score difference."""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import load_bench_model, synthetic_texts
from core.models.registry import encoder_layers
from core.oracle import compute_oracle, naive_oracle
from core.train import evaluate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks oracle")
    parser.add_argument("--model", default="e5-small")
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--labels", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv or [])
    torch.set_num_threads(args.threads)
    model, tokenizer, used = load_bench_model(args.model, args.labels)
    enc = tokenizer(synthetic_texts(args.rows), truncation=True, max_length=args.length, padding="longest",
                    return_tensors="pt", return_token_type_ids=False)
    data = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
            "labels": torch.arange(args.rows) % args.labels}
    device = torch.device("cpu")
    n = len(encoder_layers(model))
    print(f"model {used}: {n} layers; {args.rows} rows x {enc['input_ids'].shape[1]} tokens; "
          f"batch {args.batch_size}; {torch.get_num_threads()} threads")
    evaluate(model, {k: v[:args.batch_size] for k, v in data.items()}, args.batch_size, device,  # warm-up
             precision="fp32")
    t0 = time.perf_counter()
    naive = naive_oracle(model, data, batch_size=args.batch_size, device=device)
    t_naive = time.perf_counter() - t0
    t0 = time.perf_counter()
    cached = compute_oracle(model, data, batch_size=args.batch_size, device=device, precision="fp32")
    t_cached = time.perf_counter() - t0
    acc_diff = float((naive["accuracy"] - cached["accuracy"]).abs().max())
    loss_diff = float((naive["loss"] - cached["loss"]).abs().max())
    print(f"naive  oracle: {t_naive:8.2f} s")
    print(f"cached oracle: {t_cached:8.2f} s")
    print(f"ratio cached/naive: {t_cached / t_naive:.3f} (goal <= 0.6; ideal n(n+1)/2 / (n(n-1)+n) = "
          f"{(n * (n + 1) / 2) / (n * (n - 1) + n):.3f})")
    print(f"max |accuracy diff| {acc_diff:.2e}, max |loss diff| {loss_diff:.2e}")
    return 0
