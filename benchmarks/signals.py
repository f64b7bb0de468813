"""``python -m benchmarks signals``: what does computing all twelve signals in one instrumented pass cost?

In one process, on the same calibration batches, it times

(a) a plain training-style pass: forward + cross-entropy + ``loss.backward()`` per batch;
(b) the one-pass extraction of all twelve signals (plus block influence), :func:`compute_signals`;
(c) a naive extraction that runs a separate pass per signal (``compute_signals(..., signals=[key])``);

and prints the times and the ratios one-pass / plain (goal: <= 1.5) and naive / one-pass. Each timing is
the median of ``repeats`` interleaved rounds after one warm-up round.

Calibration text: a seeded generator of varied English sentences with a sentiment keyword as label
(:func:`calibration_frame`), so the benchmark needs no dataset package.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F

from core.data.batches import Batch, batches, default_device, encode, model_inputs
from core.models.registry import load_classifier, load_tokenizer
from core.signals.compute import DEFAULT_COLUMNS, compute_signals
from core.signals.registry import SIGNAL_KEYS

_SUBJECTS = ("the film", "this phone", "our hotel room", "the new album", "the service", "my order",
             "the match last night", "her latest novel", "the city council", "the software update",
             "the restaurant", "the concert", "this laptop", "the lecture", "the airline")
_POSITIVE = ("was wonderful", "felt genuinely great", "exceeded every expectation", "made me happy",
             "is the best I have tried", "worked perfectly", "was a delight from start to finish")
_NEGATIVE = ("was terrible", "felt like a waste of time", "broke after two days", "made me angry",
             "is the worst I have tried", "failed again", "was a disappointment from start to finish")
_TAILS = ("", "and I would say so again", "according to everyone I asked", "despite the price",
          "to be honest", "which surprised me", "even on a rainy Monday", "as far as I can tell")


def calibration_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` varied synthetic sentences with a balanced binary sentiment label (``text``, ``label``)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        verb = rng.choice(_POSITIVE if label else _NEGATIVE)
        text = " ".join(w for w in (rng.choice(_SUBJECTS).capitalize(), verb, rng.choice(_TAILS)) if w) + "."
        rows.append((text, label))
    return pd.DataFrame(rows, columns=["text", "label"])


def plain_pass(model: torch.nn.Module, calib: Sequence[Batch]) -> None:
    """A training-style step without the optimiser: forward, cross-entropy, backward (grads cleared)."""
    model.train()
    for batch in calib:
        loss = F.cross_entropy(model(**model_inputs(batch)).logits, batch["labels"])
        loss.backward()
        model.zero_grad(set_to_none=True)
    model.eval()


def naive_pass(model: torch.nn.Module, calib: Sequence[Batch]) -> None:
    """One separate pass (or weight read-out) per signal, then block influence."""
    for key in DEFAULT_COLUMNS:
        compute_signals(model, calib, signals=(key,))


def _seconds(fn: Callable[[], object]) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run_bench(model_name: str = "e5-small", n: int = 256, max_length: int = 32, batch_size: int = 32,
              repeats: int = 3, device: torch.device | str | None = None) -> dict:
    """Time (a) plain forward+backward, (b) one-pass extraction, (c) naive per-signal extraction.

    The three are interleaved in every repeat (a, b, c, a, b, c, ...) after one warm-up round, and each
    time is the median over repeats, so load from other processes hits all three alike.
    """
    device = torch.device(device) if device is not None else default_device()
    model = load_classifier(model_name, num_labels=2, seed=0).to(device)
    for name, p in model.named_parameters():  # as core.train fine-tunes by default: word embeddings frozen
        if "word_embeddings" in name:
            p.requires_grad_(False)
    data = encode(load_tokenizer(model_name), calibration_frame(n), max_length)
    calib = list(batches(data, batch_size, device=device))
    passes = {"plain_s": lambda: plain_pass(model, calib), "one_pass_s": lambda: compute_signals(model, calib),
              "naive_s": lambda: naive_pass(model, calib)}
    for fn in passes.values():  # warm-up: lazy hook installation, allocator, scikit-learn imports
        fn()
    times: dict[str, list[float]] = {k: [] for k in passes}
    for _ in range(repeats):
        for key, fn in passes.items():
            times[key].append(_seconds(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"model": model_name, "device": str(device), "n": n, "max_length": max_length,
            "batch_size": batch_size, "batches": len(calib), "repeats": repeats,
            "threads": torch.get_num_threads(), "signals": len(SIGNAL_KEYS), **med,
            "one_pass_over_plain": med["one_pass_s"] / med["plain_s"],
            "naive_over_one_pass": med["naive_s"] / med["one_pass_s"]}


def format_result(r: dict) -> str:
    goal = "met" if r["one_pass_over_plain"] <= 1.5 else "NOT met"
    return "\n".join([
        f"signals bench: {r['model']} on {r['device']} ({r['threads']} threads), {r['n']} examples, "
        f"max length {r['max_length']}, {r['batches']} batches of {r['batch_size']}, median of {r['repeats']}",
        f"{'pass':<44}{'seconds':>10}",
        f"{'(a) plain forward + backward':<44}{r['plain_s']:>10.3f}",
        f"{'(b) one-pass extraction, all ' + str(r['signals']) + ' signals':<44}{r['one_pass_s']:>10.3f}",
        f"{'(c) naive, one pass per signal':<44}{r['naive_s']:>10.3f}",
        f"one-pass / plain   = {r['one_pass_over_plain']:.2f}  (goal <= 1.5: {goal})",
        f"naive / one-pass   = {r['naive_over_one_pass']:.2f}",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks signals", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="e5-small", help="registry key or hub id (default: e5-small)")
    parser.add_argument("--n", type=int, default=256, help="calibration examples (default 256)")
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = run_bench(args.model, args.n, args.max_length, args.batch_size, args.repeats, args.device)
    print(format_result(result))
    return 0

