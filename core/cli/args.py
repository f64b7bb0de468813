"""Command-line arguments shared by several commands (``run``, ``teach``, ``compare``, ``merge``, ``study``): the
sequence length and truncation, and the precision. A module of its own so that every command's parser imports it
without importing another command."""

from __future__ import annotations

import argparse
from typing import TypedDict

from core.config import PRECISIONS, TRUNCATIONS, DataConfig
from core.data.registry import DEFAULT_DATASET
from core.data.truncation import AUTO_PERCENTILE, default_max_length, parse_max_length
from core.models.registry import get_model_spec
from core.precision import describe


def add_budget_args(p: argparse.ArgumentParser) -> None:
    """The data budget every command that trains shares: the three row caps, the length flags, the seed and the
    precision (:func:`add_length_args`, :func:`add_precision_arg`)."""
    d = DataConfig()
    p.add_argument("--train-cap", type=int, default=d.train_cap)
    p.add_argument("--val-cap", type=int, default=d.val_cap)
    p.add_argument("--test-cap", type=int, default=d.test_cap)
    add_length_args(p)
    p.add_argument("--seed", type=int, default=d.seed)
    add_precision_arg(p)


def add_precision_arg(p: argparse.ArgumentParser) -> None:
    """``--precision auto|fp32|bf16`` (:mod:`core.precision`; our default auto)."""
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto (our default: bf16 mixed precision where the CPU/GPU has bf16 units, else fp32), fp32 "
                   "or bf16; recorded with the results")


def precision_line(precision: str, model: str | None = None) -> str:
    """The one line the commands print before they train: what the setting resolves to here for ``model``
    (its hidden size decides ``auto``), and why; it names the PRUNE_CPU_BF16 override when one is set."""
    return describe(precision, None, get_model_spec(model).hidden_size if model else None)


def add_length_args(p: argparse.ArgumentParser) -> None:
    """``--max-length N|auto``, ``--max-auto-length`` and ``--truncation`` (read back by :func:`length_settings`)."""
    d = DataConfig()
    p.add_argument("--max-length", type=parse_max_length, default=None,
                   help=f"tokens per text, or 'auto': the {AUTO_PERCENTILE:g}th percentile of the training texts' "
                   f"token counts, at most --max-auto-length (default: auto for files, uploads and hub datasets, "
                   f"{d.max_length} for the embedded ones)")
    p.add_argument("--max-auto-length", type=int, default=d.max_auto_length,
                   help=f"the longest length 'auto' may choose: a cost budget (default {d.max_auto_length})")
    p.add_argument("--truncation", choices=TRUNCATIONS, default=d.truncation,
                   help="what of a longer text is kept: head (its first tokens) or head+tail (its first and last "
                   "tokens, Sun et al. 2019)")


class LengthSettings(TypedDict):
    """``DataConfig``'s length fields as the flags set them."""

    max_length: int | str
    max_auto_length: int
    truncation: str


def length_settings(args: argparse.Namespace, dataset: str | None) -> LengthSettings:
    """``DataConfig``'s length fields from :func:`add_length_args`' flags; ``--max-length`` unset: the dataset's
    default (:func:`core.data.truncation.default_max_length`)."""
    length = args.max_length if args.max_length is not None else default_max_length(dataset or DEFAULT_DATASET)
    return {"max_length": length, "max_auto_length": args.max_auto_length, "truncation": args.truncation}
