"""``python -m core predict RUN_ID "text" [--layers-off 3,7] [--json]`` and ``python -m core errors RUN_ID``: the
playground (:mod:`core.playground`) headless."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from core.playground import compare, error_analysis, load_run
from core.playground.load import PlaygroundError
from core.playground.predict import encode_text
from core.runs.store import RunStore


def layers_arg(value: str) -> list[int]:
    """``3,7`` -> ``[3, 7]`` (original layer indices); empty means none."""
    try:
        return [int(v) for v in value.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers-off takes layer indices separated by commas, like 3,7; got "
                                         f"{value!r}") from None


def _probs(names: tuple[str, ...], pred: Any) -> str:
    return "  ".join(f"{n}={p:.3f}" for n, p in zip(names, pred.probs))


def cmd_predict(args: argparse.Namespace) -> int:
    if not args.text.strip():
        raise PlaygroundError("The text is empty: give a sentence in quotes, e.g. python -m core predict RUN_ID "
                              "\"what is the capital of France?\"")
    loaded = load_run(RunStore(), args.run_id)
    run, _ = loaded.of_run()
    encode_text(loaded, args.text)  # checks the text before any model runs
    result = compare(loaded, args.text, args.layers_off)
    if args.json:
        print(json.dumps({"run_id": run.id, "precision": loaded.precision, **result.to_dict()}, indent=2))
        return 0
    names = result.label_names
    cut = f"; the models read {result.tokens}, the run's max length ({loaded.truncation})" if result.truncated else ""
    lines = [f"run {run.id}: {run.name}", f"text: {result.text!r} ({result.text_tokens} tokens{cut})"]
    rows = [("teacher", f"{len(result.teacher.layers)} layers", result.teacher)]
    if result.teacher_off is not None:
        rows.append((f"teacher without layers {', '.join(map(str, result.layers_off))}",
                     f"{len(result.teacher_off.layers)} layers", result.teacher_off))
    if result.compressed is None:  # of_run above: the run has a compressed model, so compare predicted with it
        raise PlaygroundError(f"run {run.id}: no prediction of its compressed model")
    rows.append((loaded.compressed_name, f"{len(result.compressed.layers)} layers", result.compressed))
    width = max(len(r[0]) for r in rows)
    for name, depth, pred in rows:
        lines.append(f"{name:<{width}}  {depth:>9}  {pred.label:<14} p={pred.confidence:.3f}   {_probs(names, pred)}")
    lines.append("teacher and " + loaded.compressed_name + (" agree" if result.agree else " DISAGREE"))
    print("\n".join(lines))
    return 0


def _matrix(names: tuple[str, ...], matrix: np.ndarray) -> str:
    short = [n[:10] for n in names]
    width = max(max(len(s) for s in short), len(str(int(matrix.max()) if matrix.size else 0))) + 1
    head = " " * (width + 6) + "".join(f"{s:>{width}}" for s in short)
    rows = [f"true {s:<{width}} " + "".join(f"{v:>{width}}" for v in row) for s, row in zip(short, matrix)]
    return "\n".join([head + "   (columns: predicted)", *rows])


def cmd_errors(args: argparse.Namespace) -> int:
    store = RunStore()
    loaded = load_run(store, args.run_id)
    run, _ = loaded.of_run()
    analysis = error_analysis(store, loaded, refresh=args.refresh)
    if args.json:
        print(json.dumps(analysis.to_dict(), indent=2, default=float))
        return 0
    names, name = analysis.label_names, analysis.compressed_name
    flips = analysis.flip_counts()
    where = "read back from" if analysis.cached else "computed and kept in"
    out = [f"run {run.id}: {run.name}",
           f"{analysis.stored_note()} ({where} the run's folder; first computed in {analysis.seconds:.1f} s)", "",
           "teacher:", _matrix(names, analysis.confusion("teacher")), "",
           f"{name}:", _matrix(names, analysis.confusion("compressed")), "",
           f"flipped: {flips['lost']} teacher right -> {name} wrong, {flips['gained']} teacher wrong -> {name} right "
           f"({flips['both_right']} both right, {flips['both_wrong']} both wrong)", "",
           "per-class accuracy (95 % Wilson interval):"]
    for r in analysis.per_class().to_dict(orient="records"):
        out.append(f"  {r['class']:<16} n={r['n']:<5} teacher {r['teacher_accuracy']:.3f} [{r['teacher_low']:.3f}, "
                   f"{r['teacher_high']:.3f}]   {name} {r['compressed_accuracy']:.3f} [{r['compressed_low']:.3f}, "
                   f"{r['compressed_high']:.3f}]")
    out.append("accuracy by text length (thirds by word count):")
    for r in analysis.by_length().itertuples():
        out.append(f"  {r.third:<7} {r.words:>7} words  n={r.n:<5} teacher {r.teacher_accuracy:.3f}   "
                   f"{name} {r.compressed_accuracy:.3f}")
    print("\n".join(out))
    return 0


def add_parsers(sub: Any) -> None:
    """The ``predict`` and ``errors`` commands on the main parser's subparsers."""
    p = sub.add_parser("predict", help="a finished run's teacher and compressed model on one text (--layers-off "
                       "switches teacher layers off)")
    p.add_argument("run_id")
    p.add_argument("text")
    p.add_argument("--layers-off", type=layers_arg, default=[], metavar="I,J",
                   help="original layer indices to switch off in the teacher, e.g. 3,7")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_predict)

    p = sub.add_parser("errors", help="what a finished run's compressed model gets wrong on the test split: "
                       "confusion matrices, flips, per-class accuracy, accuracy by length")
    p.add_argument("run_id")
    p.add_argument("--refresh", action="store_true", help="compute again instead of reading the kept outcomes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_errors)
