"""``python -m benchmarks precision``: fp32 against bf16 mixed precision, side by side in one process.

``--crossover`` measures where bf16 starts to pay (what ``auto`` decides by, :data:`core.precision.BF16_MIN_HIDDEN`):
a training step and a forward at batch 32, length 32, for the tiny model, MiniLM-L6 and e5-small, and for 6-layer
random BERTs built from a config at hidden sizes 32 to 384 (no download; 64 dimensions per head, FFN 4x), each
fp32 against bf16 interleaved, then the bf16 / fp32 ratio (below 1: bf16 faster).

Prints, for e5-small (or ``--model``) on this machine's threads: a training step and a forward pass at batch 32
and lengths 32 and 128, and the oracle of one pruning step (every single-layer removal, prefix-cached) at 500
and 2,000 validation rows; each as the median of interleaved repeats, then the bf16 / fp32 ratio. Inputs are
seeded synthetic sentences that fill the length (the time of a forward depends on the tokens, not the words).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from typing import Any, Literal

import torch
from transformers import BertConfig, BertForSequenceClassification

from benchmarks.common import load_bench_model, synthetic_texts
from core.config import TrainConfig
from core.data.batches import model_inputs
from core.models.registry import get_model_spec
from core.oracle import compute_oracle
from core.precision import BF16_MIN_HIDDEN, autocast, cpu_flags, describe, hidden_size_of
from core.train import fine_tune, run_to_end

#: the two precisions compared side by side
Compared = Literal["fp32", "bf16"]


def _encode(tokenizer: Any, n: int, length: int, num_labels: int, seed: int = 0) -> dict[str, torch.Tensor]:
    enc = tokenizer(synthetic_texts(n, words=max(48, length * 2), seed=seed), truncation=True, max_length=length,
                    padding="max_length", return_tensors="pt")
    labels = torch.arange(n) % num_labels
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _row(label: str, ms: dict[str, float]) -> str:
    return (f"{label:<34} fp32 {ms['fp32']:9.1f} ms   bf16 {ms['bf16']:9.1f} ms   "
            f"bf16/fp32 {ms['bf16'] / ms['fp32']:.2f}  (speed-up {ms['fp32'] / ms['bf16']:.2f}x)")


def _sized_bert(hidden: int, num_labels: int) -> torch.nn.Module:
    """A 6-layer random BERT classifier of width ``hidden`` (the tiny model's vocabulary), built from a config."""
    torch.manual_seed(0)
    heads = max(1, hidden // 64) if hidden >= 64 else max(1, hidden // 8)
    cfg = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=6, num_attention_heads=heads,
                     intermediate_size=4 * hidden, max_position_embeddings=512)
    cfg.num_labels = num_labels
    return BertForSequenceClassification(cfg)


def _pair_ms(model: torch.nn.Module, batch: dict[str, torch.Tensor], repeats: int) -> dict[str, float]:
    """Median ms of a training step and of a forward, fp32 and bf16 interleaved on copies of ``model``."""
    inputs = model_inputs(batch)
    both: tuple[Compared, Compared] = ("fp32", "bf16")
    models = {prec: copy.deepcopy(model) for prec in both}
    opts = {prec: torch.optim.AdamW([q for q in m.parameters() if q.requires_grad], lr=1e-5)
            for prec, m in models.items()}

    def train_step(prec: Compared) -> None:
        m = models[prec].train()
        with autocast(prec):
            loss = torch.nn.functional.cross_entropy(m(**inputs).logits.float(), batch["labels"])
        opts[prec].zero_grad(set_to_none=True)
        loss.backward()
        opts[prec].step()

    @torch.no_grad()
    def forward(prec: Compared) -> None:
        m = models[prec].eval()
        with autocast(prec, inference=True):
            m(**inputs)

    times: dict[str, list[float]] = {f"{k}_{p}": [] for k in ("train", "fwd") for p in ("fp32", "bf16")}
    for fn in (train_step, forward):
        for prec in both:
            fn(prec)  # warm-up
    for _ in range(repeats):
        for prec in both:
            times[f"train_{prec}"].append(_median_ms(lambda: train_step(prec), 1))
            times[f"fwd_{prec}"].append(_median_ms(lambda: forward(prec), 1))
    return {k: statistics.median(v) for k, v in times.items()}


def crossover(repeats: int, models: tuple[str, ...] = ("tiny-bert", "minilm-l6", "e5-small"),
              sizes: tuple[int, ...] = (32, 64, 128, 256, 384)) -> list[tuple[str, int, dict[str, float]]]:
    """Rows of (label, hidden size, median ms) for the real models and the sized random BERTs."""
    rows = []
    tok = load_bench_model("tiny-bert", 6)[1]
    for key in models:
        model, tokenizer, used = load_bench_model(key, 6)
        hidden = get_model_spec(used).hidden_size or 0
        rows.append((used, hidden, _pair_ms(model, _encode(tokenizer, 32, 32, 6), repeats)))
        print(_crossover_row(*rows[-1]), flush=True)
    for hidden in sizes:
        rows.append(("random BERT, 6 layers", hidden, _pair_ms(_sized_bert(hidden, 6), _encode(tok, 32, 32, 6),
                                                                  repeats)))
        print(_crossover_row(*rows[-1]), flush=True)
    return rows


def _crossover_row(label: str, hidden: int, ms: dict[str, float]) -> str:
    return (f"{label:<24} hidden {hidden:>4}   train step fp32 {ms['train_fp32']:8.1f} ms  bf16 {ms['train_bf16']:8.1f}"
            f" ms  bf16/fp32 {ms['train_bf16'] / ms['train_fp32']:.2f}   forward bf16/fp32 "
            f"{ms['fwd_bf16'] / ms['fwd_fp32']:.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks precision")
    p.add_argument("--model", default="e5-small")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--oracle-rows", type=int, nargs="+", default=[500, 2000])
    p.add_argument("--crossover", action="store_true",
                   help="fp32 vs bf16 by model width (what auto decides by), instead of the e5-small detail")
    args = p.parse_args(argv or [])
    torch.set_num_threads(args.threads)
    if args.crossover:
        print(f"{torch.get_num_threads()} threads, batch 32, length 32; CPU bf16 units: "
              f"{', '.join(sorted(cpu_flags() & {'amx_bf16', 'avx512_bf16', 'bf16'})) or 'none'}; auto picks bf16 "
              f"from hidden size {BF16_MIN_HIDDEN} (median of {args.repeats} interleaved repeats)")
        crossover(args.repeats)
        return 0
    num_labels = 6
    base, tokenizer, key = load_bench_model(args.model, num_labels)
    base.eval()
    print(f"{key}, {torch.get_num_threads()} threads, batch 32; CPU bf16 units: "
          f"{', '.join(sorted(cpu_flags() & {'amx_bf16', 'avx512_bf16', 'bf16'})) or 'none'}; "
          f"auto here: {describe('auto', None, hidden_size_of(base))}")
    print(f"median of {args.repeats} interleaved repeats (after one warm-up each)")
    for length in (32, 128):
        ms = _pair_ms(base, _encode(tokenizer, 32, length, num_labels), args.repeats)
        print(_row(f"training step, length {length}", {p: ms[f"train_{p}"] for p in ("fp32", "bf16")}))
        print(_row(f"forward only, length {length}", {p: ms[f"fwd_{p}"] for p in ("fp32", "bf16")}))
    for rows in args.oracle_rows:
        data = _encode(tokenizer, rows, 32, num_labels, seed=1)
        ms = {}
        for prec in ("fp32", "bf16"):
            start = time.perf_counter()
            compute_oracle(base, data, device=torch.device("cpu"), precision=prec)
            ms[prec] = (time.perf_counter() - start) * 1000
        print(_row(f"oracle, one step, {rows} val rows", ms).replace(" ms", " ms"))
    # the whole fine_tune loop (scheduler, clipping, batching) at the app's step budget
    data = _encode(tokenizer, 320, 32, num_labels, seed=2)
    ms = {}
    for prec in ("fp32", "bf16"):
        model = copy.deepcopy(base)
        start = time.perf_counter()
        run_to_end(fine_tune(model, data, TrainConfig(epochs=1.0, precision=prec), device=torch.device("cpu")))
        ms[prec] = (time.perf_counter() - start) * 1000
    print(_row("fine_tune, 320 rows x 1 epoch", ms))
    return 0
