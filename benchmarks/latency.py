"""``python -m benchmarks latency``: CPU latency with k = 0..K layers removed against the ideal encoder-only
speedup (latency falling in proportion to the encoder layers while the embeddings and the head stay)."""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from benchmarks.common import load_bench_model
from core.metrics import LatencyConfig, latency_batch, median_ms
from core.models.forward import embed, head_logits
from core.models.registry import encoder_layers
from core.models.surgery import remove_layers


def _non_encoder_ms(model: nn.Module, cfg: LatencyConfig) -> float:
    """Median time of the embeddings plus the classifier head alone (no encoder layer), same batch."""
    batch = latency_batch(model, cfg)

    def run() -> torch.Tensor:
        hidden, _ = embed(model, batch)
        return head_logits(model, hidden)

    with torch.inference_mode():
        return median_ms(run, cfg.repeats, cfg.warmup)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks latency")
    parser.add_argument("--model", default="e5-small")
    parser.add_argument("--max-removed", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv or [])
    torch.set_num_threads(args.threads)
    cfg = LatencyConfig(batch_size=args.batch_size, seq_length=args.length, repeats=args.repeats)
    model, _, used = load_bench_model(args.model, 2)
    model.eval()
    n = len(encoder_layers(model))
    k_max = min(args.max_removed, n - 1)
    models = [remove_layers(model, range(n - k, n), by="position").eval() if k else model
              for k in range(k_max + 1)]
    batch = latency_batch(model, cfg)
    # interleaved rounds: every depth is timed once per round, so drift on a shared machine (other
    # processes, frequency changes) lands on all of them alike; each depth's figure is its median
    rounds = max(cfg.repeats, 3)
    times: list[list[float]] = [[] for _ in models]
    with torch.inference_mode():
        for m in models:
            for _ in range(cfg.warmup):
                m(**batch)
        for _ in range(rounds):
            for k, m in enumerate(models):
                t = time.perf_counter()
                m(**batch)
                times[k].append((time.perf_counter() - t) * 1000.0)
    ms = [float(statistics.median(t)) for t in times]
    t0 = ms[0]
    t_rest = _non_encoder_ms(model, cfg)
    print(f"model {used}: {n} layers; batch {cfg.batch_size} x {cfg.seq_length} tokens; median of "
          f"{rounds} interleaved rounds; {torch.get_num_threads()} threads")
    print(f"embeddings + head alone: {t_rest:.1f} ms of {t0:.1f} ms ({100 * t_rest / t0:.1f} %)")
    print(f"{'removed':>7} {'layers':>6} {'ms':>9} {'speedup':>8} {'ideal':>7}")
    for k, t_k in enumerate(ms):
        ideal = t0 / (t_rest + (t0 - t_rest) * (n - k) / n)
        print(f"{k:>7} {n - k:>6} {t_k:>9.1f} {t0 / t_k:>8.2f} {ideal:>7.2f}")
    return 0
