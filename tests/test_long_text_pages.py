"""Long texts (issue 23) on the Setup page: an upload gets the length chosen from the data, shown with why, the
share of texts it covers and its time per run, with one-click overrides; the uploader names the upload limit."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def long_upload(tmp_path, monkeypatch) -> str:
    """A stored upload of 120 texts of 30-89 words of the tiny model's vocabulary (one token each)."""
    from core.data.upload import read_upload
    from core.data.upload_store import save_upload
    from core.models.tiny import TINY_WORDS
    from core.runs.store import RunStore

    monkeypatch.setenv("PRUNE_STORE_DIR", str(tmp_path / "store"))
    rows = [(" ".join(TINY_WORDS[(i + j) % 100] for j in range(30 + i % 60)) + f" {'good' if i % 2 else 'bad'}",
             "pos" if i % 2 else "neg") for i in range(120)]
    data = pd.DataFrame(rows, columns=["review", "sentiment"]).to_csv(index=False).encode()
    loaded = read_upload(data, "long.csv", "review", "sentiment")
    return str(save_upload(RunStore(tmp_path / "store"), loaded, "long.csv"))


def _setup(dataset: str) -> AppTest:
    from ui.state import default_budgets

    at = AppTest.from_file(str(ROOT / "pages" / "setup.py"), default_timeout=90)
    at.session_state["sel_model"] = "tiny-bert"
    at.session_state["sel_dataset"] = dataset
    at.session_state["budgets"] = {**default_budgets(), "train_cap": 80, "val_cap": 16, "test_cap": 16}
    return at


def _shown(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption") for e in getattr(at, kind))


def test_setup_shows_the_auto_length_of_an_upload_and_overrides_it_in_one_click(long_upload):
    at = _setup(long_upload).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = _shown(at)
    # the tiny model takes at most 128 tokens; its texts are 33-92 tokens long: auto covers them
    assert "Max length: 96 tokens** (auto)" in shown and "covers **100%**" in shown
    assert "Why: auto: the 95th percentile of the 80 training texts' token counts is" in shown
    assert "No finished tiny-bert run on this machine to estimate the time from yet" in shown
    assert "server.maxUploadSize" in shown and ".streamlit/config.toml" in shown
    next(b for b in at.button if b.label == "Use 32 tokens").click().run()
    assert not at.exception
    b = at.session_state["budgets"]
    assert (b["length_mode"], b["max_length"]) == ("fixed", 32)
    shown = _shown(at)
    assert "Max length: 32 tokens** (set)" in shown and "are cut (their first tokens kept)" in shown
    next(b for b in at.button if b.label == "Head+tail").click().run()
    assert at.session_state["budgets"]["truncation"] == "head+tail"
    assert "their first and last tokens kept" in _shown(at)
    next(b for b in at.button if b.label == "Auto: 96 tokens").click().run()
    assert at.session_state["budgets"]["length_mode"] == "auto" and "(auto)" in _shown(at)


def test_an_embedded_dataset_keeps_its_measured_32(long_upload):
    at = _setup("keywords").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Max length: 32 tokens** (set)" in _shown(at)


def test_the_run_config_of_an_upload_asks_for_auto():
    from ui.state import data_config, default_budgets

    b = default_budgets()
    assert data_config("upload:abc", b).max_length == "auto" and data_config("trec", b).max_length == 32
    assert data_config("trec", {**b, "length_mode": "auto"}).max_length == "auto"
    assert data_config("upload:abc", {**b, "length_mode": "fixed", "max_length": 64}).max_length == 64
