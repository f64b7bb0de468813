"""Foundation: layout, config validation, UI-free core, the tiny model, splits, the training loop."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.config import ConfigError, DataConfig, TrainConfig
from core.data.batches import DataError, batches, encode, make_splits
from core.models.registry import (MODELS, ModelUnavailableError, count_parameters, encoder_layers, get_model_spec,
                         model_dir, original_layer_indices)
from core.train import DistillConfig, distillation_loss, evaluate, fine_tune, run_to_end
from tests.conftest import keyword_frame

ROOT = Path(__file__).resolve().parent.parent


def test_layout_exists():
    for name in ("app.py", "pages", "core", "tests", "data", "requirements.txt", "README.md", ".ci/run"):
        assert (ROOT / name).exists(), name


def test_core_never_imports_streamlit():
    for path in (ROOT / "core").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] == "streamlit" for n in names), f"{path} imports streamlit"
    # and importing every core module at runtime does not pull it in transitively
    code = ("import importlib, pkgutil, sys, core\n"
            "for m in pkgutil.walk_packages(core.__path__, 'core.'):\n"
            "    if m.name != 'core.__main__': importlib.import_module(m.name)\n"
            "print('streamlit' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("kwargs, field", [
    ({"max_length": 4}, "DataConfig.max_length"),
    ({"train_cap": "many"}, "DataConfig.train_cap"),
    ({"val_fraction": 0.9}, "DataConfig.val_fraction"),
    ({"seed": -1}, "DataConfig.seed"),
])
def test_data_config_errors_name_field_and_value(kwargs, field):
    with pytest.raises(ConfigError) as err:
        DataConfig(**kwargs)
    assert field in str(err.value) and repr(list(kwargs.values())[0]) in str(err.value)


def test_train_and_distill_config_errors():
    with pytest.raises(ConfigError, match=r"TrainConfig.lr .* 0"):
        TrainConfig(lr=0)
    with pytest.raises(ConfigError, match="DistillConfig.alpha"):
        DistillConfig(alpha=1.5)
    with pytest.raises(ConfigError, match="TrainConfig.batch_size"):
        TrainConfig(batch_size=True)


def test_configs_are_frozen():
    cfg = DataConfig()
    with pytest.raises(Exception):
        cfg.seed = 3  # type: ignore[misc]


def test_registry_entries_and_hub_offline_error(monkeypatch):
    assert {"e5-small", "minilm-l6", "bert-base-uncased", "tiny-bert"} <= set(MODELS)
    assert MODELS["e5-small"].num_layers == 12
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as err:
        model_dir(get_model_spec("bert-base-uncased"))
    msg = str(err.value)
    assert "offline" in msg.lower() and "e5-small" in msg and "minilm-l6" in msg
    with pytest.raises(ModelUnavailableError):
        get_model_spec("not a model id")


def test_tiny_model_shape(tiny_model):
    assert len(encoder_layers(tiny_model)) == 12
    assert tiny_model.config.hidden_size == 32 and tiny_model.config.num_attention_heads == 4
    assert original_layer_indices(tiny_model) == list(range(12))
    counts = count_parameters(tiny_model)
    assert counts["total"] == sum(p.numel() for p in tiny_model.parameters())
    assert counts["encoder"] + counts["embeddings"] + counts["head"] == counts["total"]


def test_splits_are_stratified_seeded_and_capped():
    frame = keyword_frame(n=300, classes=3)
    cfg = DataConfig(train_cap=90, val_cap=30, test_cap=30, seed=5)
    a = make_splits(frame, ["a", "b", "c"], cfg)
    b = make_splits(frame, ["a", "b", "c"], cfg)
    assert a.sizes() == {"train": 90, "val": 30, "test": 30}
    assert a.train.equals(b.train) and a.test.equals(b.test)
    assert a.train["label"].value_counts().tolist() == [30, 30, 30]
    c = make_splits(frame, ["a", "b", "c"], DataConfig(train_cap=90, val_cap=30, test_cap=30, seed=6))
    assert not a.train.equals(c.train)
    # no row is in two splits
    assert not set(a.train["text"]) & set(a.test["text"]) - set(frame["text"][frame["text"].duplicated()])


def test_official_test_split_is_respected():
    frame = keyword_frame(n=200)
    frame["split"] = ["test" if i % 4 == 0 else "train" for i in range(len(frame))]
    s = make_splits(frame, ["a", "b"], DataConfig(train_cap=500, val_cap=500, test_cap=500))
    assert len(s.test) == 50


def test_split_errors_say_what_to_do():
    frame = keyword_frame(n=40)
    with pytest.raises(DataError, match="single class"):
        make_splits(frame.assign(label=0), ["a"], DataConfig())
    rare = frame.copy()
    rare.loc[0, "label"] = 2
    with pytest.raises(DataError, match="fewer than 3 rows"):
        make_splits(rare, ["a", "b", "c"], DataConfig())


def test_batches_trim_padding_and_carry_extra_tensors(tiny_tokenizer):
    frame = keyword_frame(n=20)
    data = encode(tiny_tokenizer, frame, 32)
    data["teacher_logits"] = torch.arange(20 * 2, dtype=torch.float).view(20, 2)
    seen = 0
    for b in batches(data, 8, shuffle=True, seed=1):
        assert b["input_ids"].shape == b["attention_mask"].shape
        assert int(b["attention_mask"].sum(1).max()) == b["input_ids"].shape[1]
        assert b["teacher_logits"].shape == (b["labels"].shape[0], 2)
        seen += b["labels"].shape[0]
    assert seen == 20


def test_length_grouped_batches_cover_every_row_once_and_pad_less():
    from core.data import batches as D

    gen = torch.Generator().manual_seed(0)
    n, width = 1000, 40
    lens = torch.randint(2, width + 1, (n,), generator=gen)
    mask = (torch.arange(width)[None, :] < lens[:, None]).long()
    data = {"input_ids": torch.arange(n)[:, None].repeat(1, width) * mask, "attention_mask": mask,
            "labels": torch.arange(n)}

    def padded(**kw):
        rows, tokens = [], 0
        for b in batches(data, 16, shuffle=True, seed=3, **kw):
            rows += b["labels"].tolist()
            tokens += b["input_ids"].numel()
            assert torch.equal(b["input_ids"][:, 0], b["labels"])  # rows stay whole
        return rows, tokens

    grouped_rows, grouped_tokens = padded(group_by_length=True)
    random_rows, random_tokens = padded()
    assert sorted(grouped_rows) == list(range(n)) == sorted(random_rows)
    assert grouped_tokens < 0.8 * random_tokens
    assert grouped_rows != sorted(grouped_rows, key=lambda i: -int(lens[i]))  # shuffled, not one global sort
    again, _ = padded(group_by_length=True)
    assert again == grouped_rows  # seeded


def test_evaluation_splits_are_in_length_order_with_their_frames(tiny_tokenizer):
    from core.data.batches import lengths, sort_by_length

    frame = keyword_frame(n=30)
    data = encode(tiny_tokenizer, frame, 32)
    ordered, ordered_frame = sort_by_length(data, frame)
    lens = lengths(ordered)
    assert bool((lens[:-1] >= lens[1:]).all())
    assert torch.equal(encode(tiny_tokenizer, ordered_frame, 32)["input_ids"][:, :ordered["input_ids"].shape[1]],
                       ordered["input_ids"])  # the frame was reordered row for row


def test_fine_tune_learns_and_is_deterministic(keyword_batches):
    from core.models.registry import load_classifier

    from core.teacher import default_train_config

    cfg = default_train_config("tiny-bert")
    results = []
    for _ in range(2):
        model = load_classifier("tiny-bert", 2, seed=0)
        before = evaluate(model, keyword_batches["val"])
        last = run_to_end(fine_tune(model, keyword_batches["train"], cfg))
        results.append((last.loss, evaluate(model, keyword_batches["val"])))
    assert results[0] == results[1]
    assert results[0][1]["accuracy"] >= 0.9
    assert before["accuracy"] < results[0][1]["accuracy"]


def test_fine_tune_can_be_stopped_between_batches(keyword_batches, tiny_model):
    gen = fine_tune(tiny_model, keyword_batches["train"], TrainConfig(epochs=3, batch_size=16))
    first = next(gen)
    gen.close()
    assert first.step == 1 and first.total_steps == 30
    assert not tiny_model.training


def test_distillation_loss_matches_definition():
    torch.manual_seed(0)
    s, t = torch.randn(5, 3), torch.randn(5, 3)
    y = torch.tensor([0, 1, 2, 1, 0])
    T, alpha = 2.0, 0.3
    p_t = torch.softmax(t / T, -1)
    kl = (p_t * (torch.log(p_t) - torch.log_softmax(s / T, -1))).sum(-1).mean()
    ce = torch.nn.functional.cross_entropy(s, y)
    expected = alpha * T * T * kl + (1 - alpha) * ce
    assert torch.allclose(distillation_loss(s, t, y, T, alpha), expected, atol=1e-6)
    assert torch.allclose(distillation_loss(t, t, y, T, 1.0), torch.tensor(0.0), atol=1e-6)
