"""The benchmarks (``python -m benchmarks NAME``): the registry and its command line, and one smoke test per
benchmark that runs its entry function in-process, small (the tiny model, the fewest rows, one repeat), and checks
what it printed or wrote: the table's rows, ratios positive and finite, the number of configurations.

Three cannot run in seconds: ``e5convert`` converts the real embedded e5-small (its smoke test times
:func:`measure` on a stand-in conversion and checks its arguments), ``first-open`` starts the app and a browser, and
``deploy`` exports two ONNX models (tens of seconds each: their smoke tests check the arguments and the pure parts;
tests/test_deploy.py runs the deploy benchmark end to end on its own tiny run)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmarks import BENCHMARKS, entry
from benchmarks import main as bench_cli
from core.config import DataConfig
from core.jobs.execute import execute_run
from core.pruning.config import PruneConfig
from core.runs.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
ONE = ["--threads", "1"]
#: one small budget for every benchmark that trains a tiny teacher on keywords, so they share one cached teacher
CAPS = {"train_cap": 64, "val_cap": 24, "test_cap": 24}
CAP_FLAGS = [f"--{k.replace('_', '-')}={v}" for k, v in CAPS.items()]


@pytest.fixture(autouse=True)
def _threads():
    """The benchmarks set torch's threads (``--threads``); the test puts them back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[RunStore, str]:
    """A store with one finished tiny pruned run (1 of 12 layers removed), for the playground benchmark."""
    store = RunStore(tmp_path_factory.mktemp("bench-store"))
    cfg = PruneConfig(model="tiny-bert", dataset="keywords", strategy="top_down", layers_to_remove=1,
                      step_epochs=0.25, data=DataConfig(**CAPS), calibration_size=16,
                      distill=False, allow_weak_teacher=True, precision="fp32")
    rid = store.create_run(kind="prune", model=cfg.model, dataset=cfg.dataset, strategy=cfg.strategy,
                           config=cfg.to_dict())
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert execute_run(store, rid) == "done", store.get_run(rid).error
    finally:
        torch.set_num_threads(before)
    return store, rid


def _numbers(pattern: str, text: str) -> list[float]:
    """Every number the regex ``pattern``'s one group captured in ``text`` (at least one)."""
    found = [float(m) for m in re.findall(pattern, text)]
    assert found, f"{pattern!r} not in:\n{text}"
    return found


def _positive(*values: float) -> bool:
    return all(math.isfinite(v) and v > 0 for v in values)


def _run(name: str, argv: list[str], capsys) -> str:
    """Benchmark ``name``'s entry function on ``argv``: it succeeds; what it printed."""
    assert entry(name)(argv) == 0
    return capsys.readouterr().out


# ----------------------------------------------------------------------------------------- the smoke tests
def smoke_signals(request, capsys):
    out = _run("signals", ["--model", "tiny-bert", "--n", "16", "--max-length", "16", "--batch-size", "8",
                           "--repeats", "1", "--device", "cpu", *ONE], capsys)
    assert "12 signals" in out and "tiny-bert on cpu" in out and "2 batches of 8" in out
    seconds = _numbers(r"\) [^\n]*?\s+(\d+\.\d+)\n", out + "\n")
    assert len(seconds) == 3 and _positive(*seconds)  # plain, one pass, naive
    assert _positive(*_numbers(r"one-pass / plain\s+= (\d+\.\d+)", out), *_numbers(r"naive / one-pass\s+= (\d+\.\d+)",
                                                                                      out))


def smoke_oracle(request, capsys):
    out = _run("oracle", ["--model", "tiny-bert", "--rows", "24", "--batch-size", "12", *ONE], capsys)
    assert "model tiny-bert: 12 layers; 24 rows" in out
    assert _positive(*_numbers(r"naive  oracle:\s+(\d+\.\d+) s", out), *_numbers(r"cached oracle:\s+(\d+\.\d+) s", out),
                     *_numbers(r"ratio cached/naive: (\d+\.\d+)", out))
    # the cached oracle is the naive one, faster: the same scores
    assert max(_numbers(r"diff\| (\d\.\d+e[+-]\d+)", out)) <= 1e-5


def smoke_latency(request, capsys):
    out = _run("latency", ["--model", "tiny-bert", "--max-removed", "2", "--batch-size", "2", "--length", "8",
                           "--repeats", "2", *ONE], capsys)
    rows = [line.split() for line in out.splitlines() if line.split()[:1] and line.split()[0].isdigit()]
    assert [r[:2] for r in rows] == [["0", "12"], ["1", "11"], ["2", "10"]]
    assert _positive(*(float(r[2]) for r in rows), *(float(r[3]) for r in rows))
    ideal = [float(r[4]) for r in rows]
    assert ideal[0] == pytest.approx(1.0) and ideal[0] < ideal[1] < ideal[2] < 12 / 10 + 1e-9


def smoke_train(request, capsys):
    out = _run("train", ["--model", "tiny-bert", "--dataset", "keywords", "--rows", "48", "--rounds", "1", *ONE],
               capsys)
    assert "tiny-bert on keywords: 48 rows" in out
    random, grouped = (_numbers(rf"{label} +padded tokens +(\d+)", out.replace(",", ""))
                       for label in ("random batches", "length-grouped batches"))
    assert random[0] > 0 and 0 < grouped[0] <= random[0]  # grouping by length never pads more
    assert _positive(*_numbers(r"time (\d+\.\d+)", out))


def smoke_precision(request, capsys):
    out = _run("precision", ["--model", "tiny-bert", "--repeats", "1", "--oracle-rows", "16", *ONE], capsys)
    ratios = _numbers(r"bf16/fp32 (\d+\.\d+)", out)
    # training step and forward at lengths 32 and 128, the oracle at 16 rows, fine_tune
    assert len(ratios) == 6 and _positive(*ratios)
    assert "oracle, one step, 16 val rows" in out and "fine_tune, 320 rows" in out


def smoke_crossover(request, capsys):
    """``precision --crossover``'s function (the real models' widths need MiniLM and e5-small: only the tiny one)."""
    from benchmarks.precision import crossover

    rows = crossover(repeats=1, models=("tiny-bert",), sizes=(64,))
    assert [(label, hidden) for label, hidden, _ in rows] == [("tiny-bert", 32), ("random BERT, 6 layers", 64)]
    assert all(_positive(*(ms[k] for k in ("train_fp32", "train_bf16", "fwd_fp32", "fwd_bf16"))) for _, _, ms in rows)


def smoke_parity(request, capsys):
    tmp = request.getfixturevalue("tmp_path")
    _run("parity", ["--model", "tiny-bert", "--datasets", "keywords", *CAP_FLAGS, "--calibration", "16", "--out",
                    str(tmp), *ONE], capsys)
    teachers, oracle, signals = (pd.read_csv(tmp / f"{name}.csv") for name in ("teachers", "oracle", "signals"))
    assert teachers["precision"].tolist() == ["fp32", "bf16"]
    assert 0.0 <= teachers["eval_only_argmax_agreement"].iloc[-1] <= 1.0
    assert oracle["step"].tolist() == [1, 3] and oracle["layers"].tolist() == [12, 10]
    assert len(signals) >= 12 and (signals["max_relative_change"] >= 0).all()
    rho = signals["spearman"].dropna()
    assert len(rho) and rho.between(-1, 1).all()


def smoke_teacher(request, capsys):
    tmp = request.getfixturevalue("tmp_path")
    out = tmp / "bench.json"
    text = _run("teacher", ["--model", "tiny-bert", "--datasets", "keywords", "--rows", "120", "--json", str(out)],
                capsys)
    rows = json.loads(out.read_text())
    assert [r["recipe"] for r in rows] == ["old", "default"]
    for r in rows:
        assert r["dataset"] == "keywords:skewed" and r["model"] == "tiny-bert"
        assert r["train_rows"] + r["val_rows"] + r["test_rows"] == 120 and r["steps"] > 0
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["macro_f1"] <= 1 and r["guard"] in ("passes", "weak")
        assert r["baseline_accuracy"] == pytest.approx(0.65, abs=0.1) and r["seconds"] >= 0
    assert "tiny-bert: 120 rows" in text and "1 seed" in text and text.count("keywords:skewed") == 2


def smoke_long_text(request, capsys):
    out = request.getfixturevalue("tmp_path") / "long.json"
    text = _run("long-text", ["--model", "tiny-bert", "--datasets", "keywords", *CAP_FLAGS, "--out", str(out)], capsys)
    result = json.loads(out.read_text())
    assert [r["setting"] for r in result["rows"]] == ["32, head", "auto, head", "auto, head+tail"]
    assert result["rows"][0]["length"] == 32 and all(r["length"] <= 128 for r in result["rows"])
    assert all(0 <= r["low"] <= r["accuracy"] <= r["high"] <= 1 for r in result["rows"])
    assert len(result["paired"]) == 2 and text.count("| keywords |") == 3


def smoke_merge(request, capsys):
    csv = request.getfixturevalue("tmp_path") / "merge.csv"
    _run("merge", ["--model", "tiny-bert", "--datasets", "keywords", "--sizes", "2", "--epochs", "0.25", "--kd-epochs",
                   "0.25", *CAP_FLAGS, "--out", str(csv), *ONE], capsys)
    table = pd.read_csv(csv)
    assert table["method"].tolist() == ["merge", "prune"] and (table["k"] == 2).all()
    assert (table["params_removed"] > 0).all() and table["removed_%"].between(0, 100, inclusive="neither").all()
    for col in ("teacher_acc", "no_tune_acc", "ft_acc", "kd_acc"):
        assert table[col].between(0, 1).all(), col


def smoke_study(request, capsys):
    out = _run("study", ["--strategies", "top_down", "random", "--layers", "1", "--epochs", "0.25", "--kd-epochs",
                         "0.25", *CAP_FLAGS, "--calibration", "16"], capsys)
    assert "tiny-bert on keywords: 2 strategies, 1 layers removed" in out
    assert _positive(*_numbers(r"shared / alone = (\d+\.\d+)", out))
    # the shared tree gives every strategy the result it gets alone (main returns 1 otherwise)
    assert "identical shared vs alone: True" in out


def smoke_outcomes(request, capsys):
    out = _run("outcomes", ["--repeats", "1"], capsys)
    assert out.startswith("tiny-bert on keywords") and "12 oracle candidates" in out
    assert _positive(*_numbers(r"frames (\d+\.\d+) s", out), *_numbers(r"Parquet writes (\d+\.\d+) s", out))
    bytes_line = next(line for line in out.replace(",", "").splitlines() if "bytes per step:" in line)
    sizes = {k: int(v) for k, v in re.findall(r"(test|val|oracle_val) (\d+)", bytes_line)}
    assert set(sizes) == {"test", "val", "oracle_val"} and all(n > 0 for n in sizes.values())
    assert _numbers(r"total (\d+)", bytes_line)[0] == sum(sizes.values())


def smoke_deploy(request, capsys):
    """The ONNX exports it times take tens of seconds even for the tiny model, so the run itself is
    tests/test_deploy.py's ``test_bench_deploy_prints_every_row_and_keeps_the_result`` (its module's tiny run and
    exports); here: its flags become the measurement's settings, and bad ones are refused before anything runs."""
    from benchmarks.deploy import bench_config, build_parser
    from core.config import ConfigError

    args = build_parser().parse_args(["RUN", "--repeats", "1", "--warmup", "0", "--batch-sizes", "1", "2",
                                      "--seq-lengths", "16", "--int8"])
    cfg = bench_config(args)
    assert (cfg.batch_sizes, cfg.seq_lengths, cfg.repeats, cfg.warmup, cfg.int8) == ((1, 2), (16,), 1, 0, True)
    with pytest.raises(ConfigError, match="DeployBenchConfig.repeats"):
        entry("deploy")(["RUN", "--repeats", "0"])
    with pytest.raises(SystemExit):
        entry("deploy")([])  # the run id is required


def smoke_playground(request, capsys):
    store, rid = request.getfixturevalue("tiny_run")
    request.getfixturevalue("monkeypatch").setenv("PRUNE_STORE_DIR", str(store.root))
    out = _run("playground", [rid, "--tokens", "16", "--repeats", "1", *ONE], capsys)
    assert _positive(*_numbers(r"load \(task \+ both models\): (\d+\.\d+) s", out))
    # predict, as the page predicts, toggle, as the page toggles: each a positive time
    assert len(ms := _numbers(r": (\d+\.\d+) ms", out)) == 4 and _positive(*ms)
    verdicts = re.findall(r"(within|OVER) the target of [\d,]+ ms", out)
    assert len(verdicts) == 4  # predict, toggle twice, the error analysis
    assert "error analysis of 24 test rows, first time" in out


def smoke_first_open(request, capsys):
    import tests.test_browser as browser
    from benchmarks.first_open import table

    with pytest.raises(SystemExit) as exit_info:
        entry("first-open")(["--help"])
    assert exit_info.value.code == 0 and "--pack" in capsys.readouterr().out
    request.getfixturevalue("monkeypatch").setattr(browser, "CHROMIUM", Path("/nonexistent/chromium"))
    assert entry("first-open")(["--repeats", "1"]) == 2 and "is missing" in capsys.readouterr().err
    lines = table([(1.0, 4.0, 2.0), (3.0, 6.0, 1.0)]).splitlines()
    assert len(lines) == 4 and lines[-1].split()[1:4] == ["2.0", "5.0", "1.5"]  # the medians


def smoke_e5convert(request, capsys):
    from benchmarks.e5convert import line, measure

    out = request.getfixturevalue("tmp_path") / "converted"

    def convert(folder: Path) -> None:
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"\0" * 2**20)

    result = measure(out, convert, lambda folder: (folder / "model.safetensors").exists(), checks=5)
    assert _positive(result["convert_wall"], result["cached_check"], result["ratio"])
    assert result["folder_mib"] == pytest.approx(1.0)
    assert line("enpt", result).startswith("variant=enpt convert_wall=")
    with pytest.raises(RuntimeError, match="does not pass its own check"):
        measure(out.with_name("again"), convert, lambda folder: False, checks=1)
    with pytest.raises(SystemExit) as exit_info:
        entry("e5convert")(["--help"])
    assert exit_info.value.code == 0 and "enpt" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        entry("e5convert")(["no-such-variant"])


SMOKE: dict[str, Callable] = {"signals": smoke_signals, "oracle": smoke_oracle, "latency": smoke_latency,
                              "train": smoke_train, "precision": smoke_precision, "parity": smoke_parity,
                              "teacher": smoke_teacher, "long-text": smoke_long_text, "merge": smoke_merge,
                              "study": smoke_study, "outcomes": smoke_outcomes, "deploy": smoke_deploy,
                              "playground": smoke_playground, "first-open": smoke_first_open,
                              "e5convert": smoke_e5convert}


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_benchmark_runs_small(name, request, capsys):
    SMOKE[name](request, capsys)


def test_precision_crossover_times_both_precisions_by_width(request, capsys):
    smoke_crossover(request, capsys)


# ----------------------------------------------------------------------------------- registry and command line
def test_every_benchmark_module_is_registered_and_smoke_tested():
    modules = {p.stem for p in (ROOT / "benchmarks").glob("*.py")} - {"__init__", "__main__", "common"}
    assert {b.module for b in BENCHMARKS.values()} == modules
    assert set(SMOKE) == set(BENCHMARKS)
    for name in BENCHMARKS:
        assert callable(entry(name))


def test_help_lists_every_benchmark_with_what_it_measures(capsys):
    assert bench_cli(["--help"]) == 0
    out = capsys.readouterr().out
    for name, bench in BENCHMARKS.items():
        assert re.search(rf"^  {re.escape(name)} +{re.escape(bench.what)}$", out, re.M), name
    assert bench_cli(["no-such-bench"]) == 2 and "no benchmark named 'no-such-bench'" in capsys.readouterr().err
    assert bench_cli([]) == 2


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_each_benchmark_has_its_own_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_cli([name, "--help"])
    assert exit_info.value.code == 0 and f"usage: python -m benchmarks {name}" in capsys.readouterr().out


def test_python_m_benchmarks_help_loads_no_benchmark():
    code = ("import sys; from benchmarks import main; main(['--help']); "
            "print('LOADED', sorted(m for m in sys.modules if m.startswith('benchmarks.') or m == 'torch'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "LOADED []" in out.stdout and "usage: python -m benchmarks NAME" in out.stdout


def test_core_bench_says_where_the_benchmarks_went(capsys):
    from core.cli import main as cli

    assert cli.main(["bench", "oracle", "--rows", "8"]) == 2
    assert "benchmarks moved: run `python -m benchmarks oracle`" in capsys.readouterr().err
    assert cli.main(["bench"]) == 2 and "python -m benchmarks NAME" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- pure parts of benchmarks
def test_skewed_subsample_sizes_and_errors():
    from benchmarks.teacher import feasible_rows, skewed_subsample

    frame = pd.DataFrame({"text": [f"t{i}" for i in range(300)], "label": [0] * 150 + [1] * 100 + [2] * 50,
                          "split": ["train"] * 300})
    out = skewed_subsample(frame, 200, 0.65, seed=0)
    counts = out["label"].value_counts()
    assert len(out) == 200 and "split" not in out.columns and out["text"].is_unique
    assert abs(counts[0] - 0.65 * 200) <= 1 and abs(counts[1] - counts[2]) <= 1
    assert skewed_subsample(frame, 200, 0.65, seed=0).equals(out)  # seeded
    assert skewed_subsample(frame, 200, 0.5, seed=0)["label"].value_counts()[2] == 50  # the rest goes to class 1
    for majority in (1 / 3, 0.2, 1.0, 1.5):
        with pytest.raises(ValueError, match=f"got {majority}"):
            skewed_subsample(frame, 200, majority, seed=0)
    with pytest.raises(ValueError, match="got 301"):
        skewed_subsample(frame, 301, 0.65, seed=0)
    with pytest.raises(ValueError, match="largest class has only 150 rows"):
        skewed_subsample(frame, 250, 0.65, seed=0)
    assert feasible_rows(frame, 250, 0.65) == 231 and len(skewed_subsample(frame, 231, 0.65, seed=0)) == 231
