"""``python -m benchmarks train``: one epoch of fine-tuning with random batches against length-grouped batches
(``TrainConfig.group_by_length``), interleaved in one process from the same starting weights; prints padded
tokens, seconds and the ratio."""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import replace

import torch

from core.config import DataConfig
from core.data.batches import batches, lengths, take
from core.data.task import prepare_task
from core.models.registry import load_classifier
from core.teacher import default_train_config
from core.train import fine_tune, run_to_end


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks train")
    p.add_argument("--model", default="e5-small")
    p.add_argument("--dataset", default="trec")
    p.add_argument("--rows", type=int, default=640, help="training rows per epoch")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv or [])
    torch.set_num_threads(args.threads)
    task = prepare_task(args.model, args.dataset, DataConfig(train_cap=max(args.rows, 10)))
    base = load_classifier(task.model, task.num_labels).eval()
    data = take(task.encoded["train"], args.rows)
    cfg = default_train_config(task.model.key, task.num_labels)
    configs = {grouped: replace(cfg, epochs=1.0, group_by_length=grouped) for grouped in (False, True)}
    tokens = {grouped: sum(b["input_ids"].numel() for b in batches(data, c.batch_size, shuffle=True, seed=c.seed,
                                                                    group_by_length=grouped))
              for grouped, c in configs.items()}
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for grouped, run_cfg in configs.items():
            model = copy.deepcopy(base)
            start = time.perf_counter()
            run_to_end(fine_tune(model, data, run_cfg, device=torch.device("cpu")))
            seconds[grouped].append(time.perf_counter() - start)
    real = int(lengths(data).sum())
    print(f"{task.model.key} on {task.dataset_key}: {len(data['labels'])} rows, batch {cfg.batch_size}, "
          f"{torch.get_num_threads()} threads; real tokens {real:,}; best of {args.rounds} rounds, interleaved")
    for grouped, label in ((False, "random batches"), (True, "length-grouped batches")):
        print(f"{label:<24} padded tokens {tokens[grouped]:>8,}   epoch {min(seconds[grouped]):7.1f} s")
    print(f"grouped / random: tokens {tokens[True] / tokens[False]:.2f}, time "
          f"{min(seconds[True]) / min(seconds[False]):.2f}")
    return 0
