"""``python -m core study paper``: the paper check (``data/reference``) remade from the profile bank (the one-step
table with fair baselines and dataset-level tests) and the full-path study's runs (the store's, the shipped table's
and the recorded pack's, paired only on the same teacher)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from core.fusion.bank import load_bank, load_outcomes
from core.paths import PROJECT_ROOT
from core.runs.pack import PackError, load_pack, pack_dir
from core.runs.store import RunStore
from core.studies import full_path_agreement as fpa
from core.studies import full_path_outcomes as fpo
from core.studies import full_path_tests as fpt
from core.studies import paper
from core.studies.config import StudyConfig
from core.studies.dataset_tests import dataset_comparisons
from core.studies.fair import direction_table, direction_text, selected_single
from core.studies.full_path import at_budget
from core.studies.full_path_tests import SPREAD, choice_sentence, pair_text
from core.studies.regret import regret_over_datasets


def _print_fair(table: Any) -> None:
    """The paper check's fair baselines and dataset-level tests, as the reference files hold them."""
    def pts(v: float, lo: float, hi: float) -> str:
        return f"{v:.2f} [{lo:.2f}, {hi:.2f}]"
    overall = regret_over_datasets(table)
    print("\nmean regret over datasets (95 % bootstrap over datasets, then steps; random: its expectation):")
    for r in overall.itertuples():
        draw = f"  one seeded draw: ±{r.draw_sd:.2f} (sd)" if r.draw_sd == r.draw_sd else ""
        print(f"  {r.strategy:<18} {pts(r.regret, r.low, r.high)}  {r.datasets} datasets, {r.seeds} seeds{draw}")
    directions = direction_table(table)
    if len(directions):
        print("\nsingle-signal directions (regret: learned rule | always lowest | always highest):")
        for r in directions.to_dict("records"):
            print(f"  {r['strategy']:<18} {pts(r['regret'], r['regret_low'], r['regret_high'])} | "
                  f"{pts(r['regret_lowest'], r['regret_lowest_low'], r['regret_lowest_high'])} | "
                  f"{pts(r['regret_highest'], r['regret_highest_low'], r['regret_highest_high'])}  "
                  f"{direction_text(r)}")
    tests = dataset_comparisons(table)
    if len(tests):
        print("\nover datasets (B - A, points; > 0 favours A):")
        for r in tests.to_dict("records"):
            print(f"  {r['a']} vs {r['b']}: {pts(r['estimate'], r['low'], r['high'])}, sign-flip p = "
                  f"{r['sign_flip_p']:.3f} ({r['favour_a']} of {r['datasets']} favour {r['a']}): {r['verdict']}"
                  + (f"\n      {r['power']}" if isinstance(r.get("power"), str) and r["power"] else ""))


def cmd_paper(args: argparse.Namespace) -> int:
    """Recompute the paper check from the bank (one-step) and the store's study runs (full path)."""
    bank = load_bank(args.bank)
    store = RunStore(args.store) if args.store else None
    # with the bank's per-example outcomes: scored on held-out halves with a noise floor; else on the same rows
    table = paper.one_step_table(bank.rows, outcomes=load_outcomes(args.bank, bank))
    summary = paper.summarise_one_step(table)
    out = Path(args.out) if args.out else None
    # the shipped full-path rows and their per-example outcomes, grown by the store's runs and the pack's runs of the
    # full-path study; runs are paired only on the same teacher (core.studies.full_path_outcomes)
    pack, study = _full_path_pack(args)
    full, outcomes = fpo.collect(store, out, pack=pack, study=study, fresh_only=args.fresh_full_path)
    tests, per_tree = fpt.full_path_tests(full, outcomes)
    shown = at_budget(full)  # the claims stand on one budget: the newest study's (older rows stay in the file)
    budget = paper.bank_budget(bank, summary)
    claim_rows = paper.claims(summary, table, shown, budget=budget, full_budget=paper.full_budget(shown))
    cap = int(tests["train_cap"].iloc[0]) if len(tests) else None
    claim_rows += fpt.claim_rows(tests, paper.full_budget(at_budget(full, cap)) if cap else "")
    selected = selected_single(bank.rows, table)  # "the best single signal", picked without the scored dataset
    folder = paper.write_reference(table, summary, full, claim_rows, out,
                                   meta={"bank": bank.manifest.get("coverage"), "budget": budget,
                                         "scoring": paper.scoring_text(table), "selected_single": selected})
    if len(outcomes):
        fpo.write_outcomes(folder, outcomes)
    fpt.write_tests(folder, tests, per_tree)
    agreement = fpa.agreement(full, cap)  # does the strategies' order repeat from tree to tree?
    fpa.write_agreement(folder, agreement)
    if args.json:
        print(json.dumps(claim_rows, indent=1))
        return 0
    cols = ["dataset", "strategy", "regret", "regret_low", "regret_high", "regret_min", "regret_max", "top1",
            "spearman", "seeds", "steps", "position"]  # regret_low/high: 95 % bootstrap interval over steps
    print(summary[summary["strategy"] != "oracle"][cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"one-step regret {paper.scoring_text(table)}")
    _print_fair(table)
    if selected:
        print(f"\nthe best single signal picked without the scored dataset: {selected['regret']:.2f} "
              f"[{selected['low']:.2f}, {selected['high']:.2f}]; picks: {selected['picks']}")
        for m, name in ((selected.get("minus_rf"), "RF fusion"), (selected.get("minus_random"), "random (expected)")):
            if m:
                print(f"  minus {name}: {m['estimate']:+.2f} [{m['low']:+.2f}, {m['high']:+.2f}], sign-flip p = "
                      f"{m['sign_flip_p']:.3f}")
    for c in claim_rows:
        print(f"\n[{c['key']}] paper: {c['paper']}\n  ours ({c['measure']}, {c.get('noise', '?')}): {c['ours']}")
    _print_full_path(full, tests)
    for stage in fpa.STAGES:
        if text := fpa.agreement_sentence(agreement, stage=stage):
            print(f"\n{stage.replace('_', ' ')}: " + text.replace("**", ""))
    print(f"\nwritten to {folder}")
    return 0


def _full_path_pack(args: argparse.Namespace) -> tuple[Any, Any]:
    """The recorded pack and the full-path study whose runs it may hold (``--pack off``: none); a pack that is
    refused is said and left out."""
    if args.pack is not None and args.pack.strip().lower() in ("", "0", "off", "none", "false", "no"):
        return None, None
    try:
        pack = load_pack(args.pack if args.pack is not None else pack_dir())
    except PackError as exc:
        print(f"the recorded pack is left out of the full-path table: {exc}", file=sys.stderr)
        return None, None
    if pack is None:
        return None, None
    return pack, StudyConfig.load(args.study_file or PROJECT_ROOT / "data" / "studies" / "full-path.toml")


def _print_full_path(full: Any, tests: Any) -> None:
    """Where the full-path table's runs come from, how they pair, and the comparisons over datasets."""
    if full is None or full.empty:
        return
    print("\nfull-path runs by budget and source (pairing):")
    cols = [c for c in ("train_cap", "source", "pairing") if c in full.columns]
    for key, n in full.fillna({c: "-" for c in cols}).groupby(cols).size().items():
        print(f"  {key}: {n}")
    if tests is None or tests.empty:
        return
    for stage in ("after_kd", "before_kd"):
        print(f"\nfull path, {stage.replace('_', ' ')} (A − B, accuracy points; > 0: A more accurate):")
        for r in tests[(tests["stage"] == stage) & (tests["a"] != SPREAD)].to_dict("records"):
            print("  " + pair_text(r, str(r["a"]), str(r["b"])))
    print("\n" + choice_sentence(tests).replace("**", ""))
