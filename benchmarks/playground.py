"""``python -m benchmarks playground RUN_ID``: how fast the playground answers, against the issue's targets.

- load: the run's compressed model, its teacher and the task (once per session in the app)
- predict: the teacher and the compressed model on one text of ``--tokens`` tokens (default 128), both together
  (target at most 300 ms), and at the run's own max length
- toggle: switching one teacher layer off, i.e. what the page recomputes (the teacher without the layer, the
  comparison and the layer-by-layer trace) (target under 1 s)
- errors: the error analysis of the run's test split the first time (target under 30 s for 1,000 rows) and
  read back from the run's folder the second time

Medians over ``--repeats`` after one warm-up; the machine's thread count is printed with the numbers. Run it as the
app runs, with ``OMP_WAIT_POLICY=PASSIVE`` (``app.py`` sets it): on a busy 2-core machine spinning OpenMP threads
made a tiny model's 2-thread forward 100x slower here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from core.playground import compare, error_analysis, load_run, trace
from core.playground.predict import predict
from core.runs.store import RunStore

if TYPE_CHECKING:
    from core.playground import Loaded

TARGETS_MS = {"predict": 300.0, "toggle": 1000.0, "errors_first": 30_000.0}


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _verdict(ms: float, target: float) -> str:
    return f"{'within' if ms <= target else 'OVER'} the target of {target:,.0f} ms ({ms / target:.2f}x of it)"


def long_text(loaded: Loaded, tokens: int) -> str:
    """Test texts of the run joined until the tokenizer gives at least ``tokens`` tokens."""
    parts, text = [], ""
    for t in loaded.task.splits.test["text"].astype(str):
        parts.append(t)
        text = " ".join(parts)
        if len(loaded.task.tokenizer(text)["input_ids"]) >= tokens:
            break
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks playground", description=__doc__.splitlines()[0])
    parser.add_argument("run_id", help="a finished pruning (or merging) run of the store")
    parser.add_argument("--tokens", type=int, default=128, help="length of the timed text in tokens (default 128)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep-errors", action="store_true", help="time the error analysis as it is kept (the "
                        "default computes it again first, so the first-time figure is measured)")
    args = parser.parse_args(argv or [])
    torch.set_num_threads(args.threads)

    store = RunStore()
    t0 = time.perf_counter()
    loaded = load_run(store, args.run_id)
    load_s = time.perf_counter() - t0
    run, compressed = loaded.of_run()
    print(f"run {args.run_id}: {run.name}; precision {loaded.precision}; {torch.get_num_threads()} threads; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    print(f"load (task + both models): {load_s:.2f} s")

    text = long_text(loaded, args.tokens)
    enc = loaded.task.tokenizer(text, truncation=True, max_length=args.tokens, return_tensors="pt",
                                return_token_type_ids=False)
    batch = {k: v.to(next(loaded.teacher.parameters()).device) for k, v in enc.items()}
    n_tokens = int(batch["input_ids"].shape[1])

    def both() -> None:
        predict(loaded, loaded.teacher, batch)
        predict(loaded, compressed, batch)

    ms = _median_ms(both, args.repeats)
    print(f"predict, teacher + compressed, {n_tokens} tokens: {ms:.1f} ms, {_verdict(ms, TARGETS_MS['predict'])}")
    ms_run = _median_ms(lambda: compare(loaded, text), args.repeats)
    print(f"predict as the page does (tokenise + both models) at the run's max length {loaded.max_length}: "
          f"{ms_run:.1f} ms")

    layer = loaded.teacher_layers[len(loaded.teacher_layers) // 2]

    # what one switch recomputes: the teacher without the layer and its trace
    def toggle_at(tokens_batch: dict[str, torch.Tensor]) -> None:
        predict(loaded, loaded.teacher, tokens_batch, [layer])
        predict(loaded, loaded.teacher, tokens_batch)
        predict(loaded, compressed, tokens_batch)

    ms = _median_ms(lambda: toggle_at(batch), args.repeats)
    ms_page = _median_ms(lambda: (compare(loaded, text, [layer]), trace(loaded, text, [layer])), args.repeats)
    print(f"toggle layer {layer} off, {n_tokens} tokens (three predictions): {ms:.1f} ms, "
          f"{_verdict(ms, TARGETS_MS['toggle'])}")
    print(f"toggle as the page does (comparison + layer-by-layer trace) at max length {loaded.max_length}: "
          f"{ms_page:.1f} ms, {_verdict(ms_page, TARGETS_MS['toggle'])}")

    t0 = time.perf_counter()
    first = error_analysis(store, loaded, refresh=not args.keep_errors)
    first_ms = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    again = error_analysis(store, loaded)
    again_ms = (time.perf_counter() - t0) * 1000
    if first.cached:
        print(f"error analysis of {first.n} test rows: kept from before (first computed in {first.seconds:.2f} s, "
              f"{_verdict(first.seconds * 1000, TARGETS_MS['errors_first'])}); read back: {again_ms:.0f} ms")
    else:
        print(f"error analysis of {first.n} test rows, first time: {first_ms / 1000:.2f} s, "
              f"{_verdict(first_ms, TARGETS_MS['errors_first'])}; read back: {again_ms:.0f} ms (cached={again.cached})")
    print(first.stored_note())
    return 0

