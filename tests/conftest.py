"""Shared fixtures. Every test runs offline against a private cache and run store."""

from __future__ import annotations

import atexit
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

import pytest


def _ram_temp(min_free_gib: float = 4.0) -> str | None:
    """A folder for the suite's temporary files on Linux's RAM-backed /dev/shm, or None (the system's temporary
    folder stays) where TMPDIR is set, /dev/shm is missing or not writable, or has less than ``min_free_gib`` free.

    Every run the tests make writes its events to a store's SQLite file, one committed transaction on a new
    connection each, and SQLite syncs each commit (and the WAL it check-points when the connection closes) to disk:
    1.1-1.3 ms a write on the 2-core VM's disk when it is quiet, up to ~15 ms beside a training job, 0.2 ms on
    /dev/shm. The tests' stores and caches are thrown away, so they need no disk."""
    if os.environ.get("TMPDIR"):
        return None
    try:
        shm = os.statvfs("/dev/shm")
        if shm.f_bavail * shm.f_frsize < min_free_gib * 2**30:
            return None
        folder = Path("/dev/shm") / f"prune-tests-{os.getuid()}"
        folder.mkdir(mode=0o700, exist_ok=True)
        probe = Path(tempfile.mkdtemp(dir=folder))
        probe.rmdir()
    except (OSError, AttributeError):
        return None
    return str(folder)


def _session_folder(prefix: str) -> str:
    """A new temporary folder, removed when this process exits."""
    folder = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, folder, True)
    return folder


# pytest's tmp_path folders (it keeps those of its last 3 runs) and the folders below go under tempfile's folder
tempfile.tempdir = _ram_temp() or tempfile.tempdir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep instead of spinning
# one cache for the whole session (the e5 conversion is done once); reuse a developer's cache when given
if not os.environ.get("PRUNE_CACHE_DIR"):
    os.environ["PRUNE_CACHE_DIR"] = _session_folder("prune-cache-")  # pytest-xdist's workers inherit it
os.environ["PRUNE_STORE_DIR"] = _session_folder("prune-store-")
# an empty profile bank: fusion tests decide what the bank holds (tests/test_bank.py checks the shipped one)
os.environ["PRUNE_BANK_DIR"] = _session_folder("prune-bank-")
# The suite runs on a simulated CPU (core.precision.CPU_BF16_ENV), never on the one it happens to run on: by
# default one without bf16 units; `PRUNE_CPU_BF16=1 bash scripts/test.sh` runs it as on a CPU with them. Worker
# processes the tests start inherit it. Tests that are not about precision must not even depend on the
# simulated one: see _precision_is_pinned below.
os.environ.setdefault("PRUNE_CPU_BF16", "0")
# no recorded pack (data/pack): the pages' empty states are tested as a fresh install without it; tests/test_pack.py
# builds its own pack and points PRUNE_PACK_DIR at it
os.environ["PRUNE_PACK_DIR"] = "off"

import pandas as pd  # noqa: E402
import torch  # noqa: E402

# under pytest-xdist (scripts/test.sh runs two workers) each worker takes its share of the cores, so the two do not
# oversubscribe them; a worker process a test starts still uses every core
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))

import core.precision as _precision  # noqa: E402

_detect_bf16_units = _precision.cpu_has_bf16_units
_ABOUT_PRECISION: list[bool] = [False]  # True while a test marked `precision` runs


class PrecisionFollowsMachine(AssertionError):
    """A test or fixture that is not about precision let ``auto`` decide from the CPU's bf16 units."""


def _describing() -> bool:
    """True when called under core.precision.describe: a line that says what auto does here is not a verdict."""
    frame = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "describe" and code.co_filename.endswith(os.path.join("core", "precision.py")):
            return True
        frame = frame.f_back
    return False


def _guarded_bf16_units() -> bool:
    if not _ABOUT_PRECISION[0] and not _describing():
        raise PrecisionFollowsMachine(
            "precision 'auto' was resolved from the CPU's bf16 units in a test that is not about precision: its "
            "verdict would change with the machine. Pin precision='fp32' in the test or fixture (or mark the test "
            "@pytest.mark.precision and make it hold under PRUNE_CPU_BF16=0 and =1).")
    return _detect_bf16_units()


_precision.cpu_has_bf16_units = _guarded_bf16_units


@pytest.fixture(autouse=True)
def _precision_is_pinned(request):
    """Lets only tests marked ``precision`` consult the (simulated) CPU's bf16 units when resolving ``auto``."""
    _ABOUT_PRECISION[0] = request.node.get_closest_marker("precision") is not None
    yield
    _ABOUT_PRECISION[0] = False


def keyword_frame(n: int = 240, seed: int = 0, classes: int = 2) -> pd.DataFrame:
    """A synthetic task the tiny model learns in seconds: the label is given by one keyword."""
    from core.models.tiny import TINY_WORDS

    keys = [["good", "great", "love"], ["bad", "awful", "hate"], ["football", "tennis", "match"]][:classes]
    rng = random.Random(seed)
    filler = TINY_WORDS[:40]
    rows = []
    for i in range(n):
        label = i % classes
        left = " ".join(rng.choice(filler) for _ in range(rng.randint(2, 8)))
        right = " ".join(rng.choice(filler) for _ in range(rng.randint(2, 8)))
        rows.append((f"{left} {rng.choice(keys[label])} {right}", label))
    return pd.DataFrame(rows, columns=["text", "label"])


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from core.models.registry import load_tokenizer

    return load_tokenizer("tiny-bert")


@pytest.fixture()
def tiny_model():
    """A fresh tiny random 12-layer BERT classifier (hidden 32, 4 heads, 2 labels)."""
    from core.models.registry import load_classifier

    return load_classifier("tiny-bert", num_labels=2, seed=0)


@pytest.fixture(scope="session")
def keyword_splits():
    from core.config import DataConfig
    from core.data.batches import make_splits

    return make_splits(keyword_frame(), ["pos", "neg"], DataConfig(train_cap=160, val_cap=40, test_cap=40))


@pytest.fixture(scope="session")
def keyword_batches(keyword_splits, tiny_tokenizer):
    """Encoded train/val/test splits of the keyword task for the tiny tokenizer (max length 32)."""
    from core.data.batches import encode

    return {name: encode(tiny_tokenizer, getattr(keyword_splits, name), 32) for name in ("train", "val", "test")}


@pytest.fixture(scope="session")
def contrast():
    """The tiny model whose oracle is not flat (tests/contrast.py): identity layers that are harmless to
    remove next to layers whose removal ruins it. Built once per session (~10 s); copy.deepcopy it before
    changing it. Unpacks as ``model, tokenizer, task, harmless_layers, critical_layers``."""
    from tests.contrast import contrast_model

    return contrast_model(seed=0)


@pytest.fixture(scope="session")
def e5_dir() -> Path:
    """The real embedded 12-layer model, converted once per session (integration tests)."""
    from core.models.registry import model_dir

    return Path(model_dir("e5-small"))


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium (tests/test_browser.py: its path and flags), one per test module; skipped with
    the command that installs it when it is missing."""
    from tests.test_browser import CHROMIUM, launch

    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch(pw)
        try:
            yield b
        finally:
            b.close()


#: the test files that take longest, longest first (per-file sums of pytest's --junitxml times on 2 cores, quiet
#: machine, 2026-12-07): with ``--no-loadscope-reorder`` (scripts/test.sh) pytest-xdist's --dist loadfile hands files
#: out in collection order, so the long ones go first and the many short ones fill in at the end, instead of one long
#: file running alone while the other process idles. Without that flag xdist sorts files by their number of tests and
#: this list only breaks ties: the one-test Ray file (about a minute) went out among the last (the earlier timings
#: quoted here, 554 s then 509 s, were measured that way, so their difference was the machine, not this list).
#: With the flag, a clean clone on a quiet 2-core machine: 474 s, the two processes' test times 450 s and 454 s
#: (per-file sums replayed through xdist's scheduler; sorted by test count they would have been 502 s and 401 s)
SLOW_FIRST = ("test_lesson_browser.py", "test_browser.py", "test_job_queue.py", "test_pack_browser.py",
              "test_studies_ray.py", "test_deploy.py", "test_architecture.py", "test_app_pages.py", "test_studies.py",
              "test_trust.py", "test_pack.py", "test_benchmarks.py", "test_lesson.py", "test_study_pages.py",
              "test_runs.py", "test_report.py", "test_tiny_everywhere.py", "test_precision.py", "test_merge.py",
              "test_playground.py")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow files first (:data:`SLOW_FIRST`), the rest in their usual order; tests within a file keep theirs."""
    rank = {name: k for k, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
