"""The command line (`python -m core`): lists, teaches, runs and exports on the tiny model, and rejects bad
values with the field's name."""

from __future__ import annotations


def test_cli_lists_teaches_runs_exports_and_rejects_bad_values(tmp_path, monkeypatch, capsys):
    import json

    from core.cli import main as cli

    monkeypatch.setenv("PRUNE_STORE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("PRUNE_CACHE_DIR", str(tmp_path / "cache"))
    data = ["--model", "tiny-bert", "--dataset", "keywords", "--train-cap", "150", "--val-cap", "45",
            "--test-cap", "45"]
    assert cli.main(["models", "--json"]) == 0
    models = {m["key"]: m for m in json.loads(capsys.readouterr().out)}
    assert {"e5-small", "minilm-l6", "tiny-bert"} <= set(models)
    assert cli.main(["datasets", "--json"]) == 0
    assert "trec" in {d["key"] for d in json.loads(capsys.readouterr().out)}

    assert cli.main(["teach", *data, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["cached"] is False and first["metrics"]["test"]["accuracy"] >= 0.9
    assert cli.main(["teach", *data, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cached"] is True  # the run below reuses it too

    assert cli.main(["run", *data, "--strategy", "top_down", "--layers", "2", "--epochs", "0.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "done" and [s["n_layers"] for s in out["steps"]] == [12, 11, 10]
    assert out["summary"]["removed_order"] == [11, 10]  # top-down removes the last layers first
    assert "total" in out["summary"]["timings_s"]

    assert cli.main(["export", out["run_id"], str(tmp_path / "exported"), "--json"]) == 0
    capsys.readouterr()
    from transformers import AutoModelForSequenceClassification

    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "exported").config.num_hidden_layers == 10

    assert cli.main(["run", *data, "--strategy", "magic"]) == 2
    assert "PruneConfig.strategy" in capsys.readouterr().err
    assert cli.main(["teach", "--model", "tiny-bert", "--dataset", "keywords", "--max-length", "1"]) == 2
    assert "DataConfig.max_length" in capsys.readouterr().err
    # `merge` passes every option on to its own parser; `bench` says where the benchmarks went
    assert cli.main(["merge", "--model", "tiny-bert", "--layers", "5"]) == 2
    assert "MergeConfig.window" in capsys.readouterr().err
    assert cli.main(["bench", "oracle", "--help"]) == 2
    assert "benchmarks moved: run `python -m benchmarks oracle`" in capsys.readouterr().err
