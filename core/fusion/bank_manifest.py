"""The profile bank's manifest (``data/bank/manifest.json``) as typed records: what
:func:`core.fusion.bank_build.write_bank` writes and :func:`core.fusion.bank.load_bank` hands out after checking its
format, version, checksum and rows."""

from __future__ import annotations

from typing import NotRequired, TypedDict


class BankCoverage(TypedDict):
    """What the bank holds of one model on one dataset: its seeds, steps and rows."""

    model: str
    dataset: str
    seeds: list[int]
    steps: int
    rows: int


class OutcomesEntry(TypedDict):
    """The manifest's entry for the per-example outcomes companion: its file, rows, checksum, columns, how many
    layer-steps and steps it covers, and its size."""

    file: str
    rows: int
    sha256: str
    columns: list[str]
    layer_steps: int
    steps: int
    bytes: int
    bytes_per_layer_step: float


class BankManifest(TypedDict):
    """``manifest.json`` of the bank, as :func:`write_bank` writes it; :func:`load_bank` checks the first four
    keys. A bank written before a key existed lacks it (``study``, ``note``, ``precision``, ``split_version``,
    ``outcomes``): read the others with ``.get``."""

    format: str
    version: int
    rows: int
    sha256: str
    file: NotRequired[str]
    columns: NotRequired[list[str]]
    coverage: NotRequired[list[BankCoverage]]
    study: NotRequired[str | None]
    note: NotRequired[str]
    precision: NotRequired[str]
    split_version: NotRequired[int]
    outcomes: NotRequired[OutcomesEntry]
