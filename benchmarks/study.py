"""``python -m benchmarks study``: what the shared tree saves, and what Ray costs, measured in one process.

1. An 18-strategy grid on one dataset, walked as one tree (sharing) and as 18 separate walks (each strategy
   alone), same teacher (cached before timing): time with sharing / time alone (goal <= 0.6), the distinct model
   states and fine-tunes at each depth, and a check that every strategy's result is identical both ways.
2. ``--ray``: the same grid as a study on the Ray executor (local Ray, 2 CPUs) / the local executor
   (goal <= 1.15), including Ray's start-up.

Defaults: the tiny model. ``--model e5-small --train-cap 400 ...`` measures the real model at a small budget
(labelled in the output).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

from core.config import DataConfig
from core.pruning.config import strategy_keys
from core.pruning.tree import TreeWalk
from core.runs.store import RunStore
from core.studies import execute
from core.studies.config import StudyConfig


def _walk(cfgs: list[Any], ids: list[str]) -> tuple[float, dict[str, Any], Any]:
    t = time.perf_counter()
    walk = TreeWalk(cfgs, ids)
    done = {rid: ev.payload for rid, ev in walk.events() if ev.stage == "done"}
    return time.perf_counter() - t, done, walk.stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks study")
    p.add_argument("--model", default="tiny-bert")
    p.add_argument("--dataset", default=None, help="default: keywords for tiny-bert, else trec")
    p.add_argument("--layers", type=int, default=None, help="layers to remove (default 3 tiny, 2 otherwise)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--kd-epochs", type=float, default=1.0)
    p.add_argument("--train-cap", type=int, default=None)
    p.add_argument("--val-cap", type=int, default=None)
    p.add_argument("--test-cap", type=int, default=None)
    p.add_argument("--calibration", type=int, default=None)
    p.add_argument("--strategies", nargs="+", default=None, help="default: all 18")
    p.add_argument("--ray", action="store_true", help="also time the study on a local Ray against the local executor")
    args = p.parse_args(argv)
    tiny = args.model == "tiny-bert"
    dataset = args.dataset or ("keywords" if tiny else "trec")
    data = DataConfig(train_cap=args.train_cap or (150 if tiny else 400), val_cap=args.val_cap or (45 if tiny else 150),
                      test_cap=args.test_cap or (45 if tiny else 200))
    strategies = tuple(args.strategies or strategy_keys())
    study = StudyConfig(name="bench", models=(args.model,), datasets=(dataset,), strategies=strategies, seeds=(0,),
                        layers_to_remove=args.layers or (3 if tiny else 2), step_epochs=args.epochs, distill=True,
                        kd_epochs=args.kd_epochs, calibration_size=args.calibration or (32 if tiny else 64), data=data)
    cfgs = [study.prune_config(args.model, dataset, s, 0) for s in strategies]
    ids = [f"bench-{s}" for s in strategies]
    budget = (f"{args.model} on {dataset}: {len(strategies)} strategies, {study.layers_to_remove} layers removed, "
              f"{args.epochs:g} epoch(s) per step + {args.kd_epochs:g} KD; rows train/val/test {data.train_cap}/"
              f"{data.val_cap}/{data.test_cap}; calibration {study.calibration_size}; seed 0; "
              f"{os.cpu_count()} CPUs")
    print(budget)
    _walk(cfgs[:1], ids[:1])  # the teacher, trained and cached before anything is timed
    t_shared, shared, stats = _walk(cfgs, ids)
    t_alone, alone = 0.0, {}
    for cfg, rid in zip(cfgs, ids):
        t, done, _ = _walk([cfg], [rid])
        t_alone += t
        alone.update(done)
    same = all(shared[r]["removed_order"] == alone[r]["removed_order"] and shared[r].get("after_kd") ==
               alone[r].get("after_kd") for r in ids)
    print(f"shared tree   {t_shared:8.1f} s")
    print(f"each alone    {t_alone:8.1f} s   ({len(ids)} walks)")
    print(f"shared / alone = {t_shared / t_alone:.3f}  (goal <= 0.6)")
    print("distinct states per depth: " + ", ".join(f"depth {d}: {n}" for d, n in stats.states_per_depth.items()) +
          f"  (alone: {len(ids)} at every depth)")
    print("fine-tunes per depth:      " + ", ".join(f"depth {d}: {n}" for d, n in stats.finetunes_per_depth.items()) +
          f"; distillations {stats.distills} (alone: {len(ids)})")
    print(f"every strategy's result identical shared vs alone: {same}")
    if args.ray:
        _bench_ray(study)
    return 0 if same else 1


def _bench_ray(study: Any) -> None:
    import ray  # noqa: PLC0415 deferred: cost (ray): only with --ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    times = {}
    startup = 0.0
    for executor in ("local", "ray"):
        store = RunStore(tempfile.mkdtemp(prefix=f"bench-study-{executor}-"))
        s = execute.start_study(store, study)
        t = time.perf_counter()
        if executor == "local":
            execute.run_local(store, s.id)
        else:
            ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False,
                     runtime_env=execute.ray_runtime_env(None))
            startup = time.perf_counter() - t
            try:
                execute.run_ray(store, s.id)
            finally:
                ray.shutdown()
        times[executor] = time.perf_counter() - t
    print(f"local executor {times['local']:8.1f} s")
    print(f"Ray executor   {times['ray']:8.1f} s   (local Ray started and stopped inside the timing; "
          f"ray.init {startup:.1f} s of it)")
    print(f"ray / local = {times['ray'] / times['local']:.3f}  (goal <= 1.15); without Ray's start-up "
          f"{(times['ray'] - startup) / times['local']:.3f}")
