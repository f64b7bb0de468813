"""Long texts (issue 23) on the command line: --max-length N|auto, --max-auto-length, --truncation, and the
defaults (auto for files, uploads and hub datasets; 32 for the embedded ones)."""

from __future__ import annotations

import pytest


def test_cli_length_flags_and_defaults():
    from core.cli.main import _data_cfg, build_parser

    parser = build_parser()
    args = parser.parse_args(["teach", "--dataset", "reviews.csv"])
    assert _data_cfg(args, "upload:abc").max_length == "auto"
    args = parser.parse_args(["teach", "--dataset", "trec"])
    assert _data_cfg(args, "trec").max_length == 32
    args = parser.parse_args(["teach", "--max-length", "auto", "--max-auto-length", "256", "--truncation",
                              "head+tail"])
    cfg = _data_cfg(args, "trec")
    assert (cfg.max_length, cfg.max_auto_length, cfg.truncation) == ("auto", 256, "head+tail")
    assert _data_cfg(parser.parse_args(["teach", "--max-length", "64"]), "upload:x").max_length == 64
    with pytest.raises(SystemExit):
        parser.parse_args(["teach", "--truncation", "tail"])
