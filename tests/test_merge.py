"""Feed-forward sublayer merging on the tiny 12-layer BERT: activations, CKA, alignment, merging and tying,
saving and loading, training, window selection, the parameter budget, the event loop, the store and the CLI."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from core.cli.merge import main as merge_cli
from core.config import ConfigError, DataConfig, TrainConfig
from core.merging import config as C
from core.merging import ffn as F
from core.merging import loop as L
from core.merging import windows as W
from core.models.registry import count_parameters, encoder_layers, load_pretrained
from core.signals.functions import linear_cka
from core.train import DistillConfig, fine_tune, run_to_end

WINDOW = (4, 5, 6)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny model's ops are too small to share between threads: on the shared, busy 2-core machine two
    threads made each training step ~25x slower (threads waiting for each other), one thread does not."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _batch(tokenizer, texts):
    enc = tokenizer(texts, padding="longest", return_tensors="pt", return_token_type_ids=False)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


@pytest.fixture()
def batch(tiny_tokenizer):
    b = _batch(tiny_tokenizer, ["good movie", "the film was really very bad and the music was awful too",
                                "love it", "what a terrible slow boring long game", "no"])
    assert (b["attention_mask"] == 0).any()
    return b


@pytest.fixture()
def model(tiny_model):
    """The tiny model with larger random encoder weights, so merging visibly changes the function."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in tiny_model.named_parameters():
            if p.ndim == 2 and "embeddings" not in name:
                p.normal_(0.0, 0.2, generator=gen)
    return tiny_model.eval()


@pytest.fixture()
def calib(keyword_batches):
    from core.data.batches import batches, take

    return list(batches(take(keyword_batches["train"], 64), 32))


@torch.no_grad()
def logits(model, batch):
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def ffn_ptrs(model, position):
    first, second = F.ffn_linears(encoder_layers(model)[position])
    return first.weight.data_ptr(), first.bias.data_ptr(), second.weight.data_ptr(), second.bias.data_ptr()


# ---------------------------------------------------------------------------------------------- config
def test_config_defaults_and_round_trip():
    cfg = C.MergeConfig()
    assert cfg.window is None and cfg.window_size == C.DEFAULT_WINDOW_SIZE and cfg.selection == "accuracy"
    cfg = C.MergeConfig(model="tiny-bert", dataset="keywords", window="4-9", epochs=0.5, lr=1e-3,
                        kd=DistillConfig(epochs=1.0), data=DataConfig(train_cap=100),
                        teacher=TrainConfig(epochs=1.0))
    assert cfg.window_size == 6
    back = C.MergeConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    assert C.MergeConfig(auto_k=3).window_size == 3


@pytest.mark.parametrize("kwargs, field", [
    ({"window": "4"}, "MergeConfig.window"), ({"window": "6-4"}, "MergeConfig.window"),
    ({"window": "4-6", "auto_k": 3}, "window or auto_k"), ({"auto_k": 1}, "MergeConfig.auto_k"),
    ({"selection": "vibes"}, "MergeConfig.selection"), ({"reference": "best"}, "MergeConfig.reference"),
    ({"lr": 0.0}, "MergeConfig.lr"), ({"epochs": -1.0}, "MergeConfig.epochs"),
    ({"distill": "yes"}, "MergeConfig.distill"), ({"calibration_size": 2}, "MergeConfig.calibration_size"),
    ({"model": " "}, "MergeConfig.model"),
])
def test_config_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        C.MergeConfig(**kwargs)


def test_parse_window():
    assert C.parse_window("4-6") == (4, 5, 6)
    assert C.parse_window(" 0 - 11 ") == tuple(range(12))


# ----------------------------------------------------------------------------------------- activations
def test_activations_mask_padding_and_match_an_unpadded_pass(model, tiny_tokenizer, batch):
    acts = F.ffn_activations(model, [batch], layers=[0, 7])
    assert set(acts) == {0, 7}
    tokens = int(batch["attention_mask"].sum())
    assert acts[7].shape == (tokens, model.config.intermediate_size)
    alone = F.ffn_activations(model, [_batch(tiny_tokenizer, ["good movie"])], layers=[7])[7]
    n = alone.shape[0]
    # "good movie" is the first row: its tokens come first and do not depend on the padding around them
    torch.testing.assert_close(acts[7][:n], alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(acts[0][:n], alone, atol=1e-3)  # layers are told apart


def test_activations_equal_the_intermediate_module_output(model, batch):
    layer = encoder_layers(model)[3]
    seen = []
    handle = layer.intermediate.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    try:
        acts = F.ffn_activations(model, [batch], layers=[3])[3]
    finally:
        handle.remove()
    torch.testing.assert_close(acts, seen[0][batch["attention_mask"].bool()])


def test_hooks_are_removed_even_on_error(model, batch):
    with pytest.raises(RuntimeError, match="boom"):
        with F.capture_ffn(model) as captured:
            model(**batch)
            assert len(captured[0]) == 1
            raise RuntimeError("boom")
    assert all(not layer.output._forward_pre_hooks for layer in encoder_layers(model))


# -------------------------------------------------------------------------------------------- CKA
def feature_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """The one linear CKA from the centred feature moments of raw (samples, features) matrices."""
    xc, yc = (x - x.mean(0)).double().numpy(), (y - y.mean(0)).double().numpy()
    return linear_cka(xc.T @ xc, yc.T @ yc, yc.T @ xc)


def test_linear_cka_properties_and_its_gram_form():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 20, generator=gen)
    q, _ = torch.linalg.qr(torch.randn(20, 20, generator=gen))
    noise = torch.randn(300, 20, generator=gen)
    assert feature_cka(x, x) == pytest.approx(1.0)
    assert feature_cka(x, 3.0 * x @ q + 1.0) == pytest.approx(1.0, abs=1e-9)
    assert feature_cka(x, noise) < 0.2
    for y in (x, 3.0 * x @ q + 1.0, noise, x[:, :5]):  # samples x samples Grams: the same number
        xc, yc = (x - x.mean(0)).double().numpy(), (y - y.mean(0)).double().numpy()
        assert linear_cka(xc @ xc.T, yc @ yc.T) == pytest.approx(feature_cka(x, y), abs=1e-9)
    assert linear_cka(np.zeros((4, 4)), np.eye(4)) == 0.0


def test_cka_matrix_agrees_with_linear_cka():
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(200, 16, generator=gen)
    acts = {0: base, 1: base + 0.3 * torch.randn(200, 16, generator=gen), 2: torch.randn(200, 16, generator=gen)}
    sim = W.cka_matrix(acts, max_tokens=1000)
    for a in acts:
        for b in acts:
            assert sim.loc[a, b] == pytest.approx(feature_cka(acts[a], acts[b]), abs=1e-6)
    assert sim.loc[0, 1] > sim.loc[0, 2]


def test_ffn_similarity_heatmap(model, calib):
    sim = W.ffn_similarity(model, calib)
    assert sim.shape == (12, 12) and list(sim.index) == list(range(12))
    np.testing.assert_allclose(np.diag(sim.to_numpy()), 1.0)
    np.testing.assert_allclose(sim.to_numpy(), sim.to_numpy().T)
    assert ((sim.to_numpy() > -1e-9) & (sim.to_numpy() <= 1 + 1e-9)).all()


# -------------------------------------------------------------------------------------- alignment
@torch.no_grad()
def test_permuted_layer_computes_the_same_function(model, batch):
    layer = encoder_layers(model)[2]
    hidden = model.bert.embeddings(input_ids=batch["input_ids"])
    before = layer(hidden)
    perm = torch.randperm(model.config.intermediate_size, generator=torch.Generator().manual_seed(0))
    w_before = layer.intermediate.dense.weight.detach().clone()
    F.permute_ffn(layer, perm)
    assert not torch.equal(layer.intermediate.dense.weight, w_before)
    assert float((layer(hidden) - before).abs().max()) < 1e-6


def test_match_neurons_recovers_a_planted_permutation():
    gen = torch.Generator().manual_seed(0)
    ref = torch.randn(500, 48, generator=gen)
    perm = torch.randperm(48, generator=gen).numpy()
    other = ref[:, perm] + 0.1 * torch.randn(500, 48, generator=gen)  # other neuron q is ref neuron perm[q]
    found, stats = F.match_neurons(ref, other)
    assert np.array_equal(found, np.argsort(perm))
    assert stats["corr_aligned"] > 0.9 > stats["corr_identity"] and stats["moved"] > 0.9
    assert torch.allclose(other[:, found], ref, atol=0.6)


def plant_permuted_copies(model, window):
    """Give every layer of ``window`` a permuted copy of the first layer's FFN; returns the permutations."""
    layers = encoder_layers(model)
    gen = torch.Generator().manual_seed(3)
    perms = {}
    for p in window[1:]:
        perm = torch.randperm(model.config.intermediate_size, generator=gen)
        F._write_ffn_state(layers[p], F.aligned_ffn_state(layers[window[0]], perm))
        perms[p] = perm.numpy()
    return perms


def test_merging_permuted_copies_recovers_them_and_keeps_the_function(tiny_model, calib, batch):
    model = tiny_model.eval()
    planted = plant_permuted_copies(model, WINDOW)
    acts = F.ffn_activations(model, calib)
    perms, table = F.align_window(model, WINDOW, acts)
    for p, perm in planted.items():
        assert np.array_equal(perms[p], np.argsort(perm))
    assert list(table["layer"]) == list(WINDOW) and (table["corr_aligned"] >= table["corr_identity"]).all()
    merged = F.merge_aligned(model, WINDOW, perms)
    assert float((logits(merged, batch) - logits(model, batch)).abs().max()) < 1e-5


# ---------------------------------------------------------------------------------------- merge + tie
def test_merge_ties_one_shared_ffn_and_removes_its_parameters(model, calib, batch):
    before_w = {k: v.clone() for k, v in model.state_dict().items()}
    acts = F.ffn_activations(model, calib)
    perms, _ = F.align_window(model, WINDOW, acts)
    merged = F.merge_aligned(model, WINDOW, perms)
    layers = encoder_layers(merged)
    assert len({ffn_ptrs(merged, p) for p in WINDOW}) == 1
    assert layers[4].intermediate is layers[6].intermediate and layers[4].output.dense is layers[6].output.dense
    assert layers[4].output is not layers[5].output  # LayerNorm stays per layer
    assert layers[4].output.LayerNorm.weight.data_ptr() != layers[5].output.LayerNorm.weight.data_ptr()
    assert layers[4].attention is not layers[5].attention
    assert len({ffn_ptrs(merged, p) for p in range(12)}) == 10
    assert F.unique_ffn_count(merged) == 10
    removed = count_parameters(model)["total"] - count_parameters(merged)["total"]
    assert removed == 2 * W.ffn_parameter_count(model)
    assert merged.config.intermediate_size == model.config.intermediate_size
    assert layers[5].intermediate.dense.weight.shape == (model.config.intermediate_size, model.config.hidden_size)
    assert merged.config.merged_ffn_windows == [list(WINDOW)]
    # the merged FFN is the mean of the aligned ones
    states = [F.aligned_ffn_state(encoder_layers(model)[p], perms[p]) for p in WINDOW]
    torch.testing.assert_close(layers[5].intermediate.dense.weight,
                               torch.stack([s["w1"] for s in states]).mean(0))
    torch.testing.assert_close(layers[5].output.dense.bias, torch.stack([s["b2"] for s in states]).mean(0))
    # the input model is untouched and the merged model really computes something else
    assert all(torch.equal(before_w[k], v) for k, v in model.state_dict().items())
    assert F.unique_ffn_count(model) == 12
    assert float((logits(merged, batch) - logits(model, batch)).abs().max()) > 1e-4


def test_windows_are_validated(model, calib):
    acts = F.ffn_activations(model, calib, layers=[0, 1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="consecutive"):
        F.merge_ffns(model, (1, 3), acts)
    with pytest.raises(ValueError, match="out of range"):
        F.merge_ffns(model, (11, 12), acts)
    merged, _ = F.merge_ffns(model, (1, 2), acts)
    with pytest.raises(ValueError, match="already share"):
        F.merge_ffns(merged, (2, 3), acts)
    twice, _ = F.merge_ffns(merged, (3, 4, 5), acts)
    assert twice.config.merged_ffn_windows == [[1, 2], [3, 4, 5]] and F.unique_ffn_count(twice) == 9


def test_reference_layer_choice(model, calib):
    acts = F.ffn_activations(model, calib, layers=WINDOW)
    _, table = F.align_window(model, WINDOW, acts, reference="last")
    assert set(table["reference"]) == {6}
    assert table.set_index("layer").loc[6, "moved"] == 0.0


@pytest.mark.parametrize("reference", ["first", "middle", "last"])
def test_every_layer_of_the_window_shares_the_mean_in_the_reference_order(model, calib, reference):
    """The shared FFN is the mean of the window's weights aligned to the reference layer, whichever it is."""
    acts = F.ffn_activations(model, calib, layers=WINDOW)
    perms, _ = F.align_window(model, WINDOW, acts, reference=reference)
    merged = F.merge_aligned(model, WINDOW, perms, reference=reference)
    states = [F.aligned_ffn_state(encoder_layers(model)[p], perms[p]) for p in WINDOW]
    first, second = F.ffn_linears(encoder_layers(merged)[WINDOW[0]])
    assert torch.allclose(first.weight, torch.stack([s["w1"] for s in states]).mean(0))
    assert torch.allclose(second.weight, torch.stack([s["w2"] for s in states]).mean(0))
    assert torch.allclose(second.bias, torch.stack([s["b2"] for s in states]).mean(0))
    assert len({ffn_ptrs(merged, p) for p in WINDOW}) == 1


# --------------------------------------------------------------------------------------- save / load
@pytest.fixture()
def merged(model, calib):
    acts = F.ffn_activations(model, calib)
    return F.merge_ffns(model, WINDOW, acts)[0]


def test_save_and_load_keep_the_tying_and_the_logits(merged, model, tiny_tokenizer, batch, tmp_path):
    from core.models.surgery import save_model

    raw = copy.deepcopy(model)
    F._tie(raw, WINDOW, WINDOW[0])  # tied without the save hook: transformers refuses undeclared shared tensors
    with pytest.raises(RuntimeError, match="shared tensors"):
        raw.save_pretrained(tmp_path / "raw")
    save_model(merged, tiny_tokenizer, tmp_path / "run")  # what the run store calls
    loaded = F.load_merged(tmp_path / "run")
    assert len({ffn_ptrs(loaded, p) for p in WINDOW}) == 1 and F.unique_ffn_count(loaded) == 10
    assert count_parameters(loaded)["total"] == count_parameters(merged)["total"] < count_parameters(model)["total"]
    assert loaded.config.merged_ffn_windows == [list(WINDOW)]
    assert torch.equal(logits(loaded, batch), logits(merged, batch))
    plain = load_pretrained(tmp_path / "run")  # a plain from_pretrained: untied in memory, same function
    assert F.unique_ffn_count(plain) == 12
    assert torch.equal(logits(plain, batch), logits(merged, batch))
    F.save_merged(loaded, tiny_tokenizer, tmp_path / "again")  # a re-tied model saves again
    assert torch.equal(logits(F.load_merged(tmp_path / "again"), batch), logits(merged, batch))


def test_compact_save_is_smaller_and_loads_back(merged, tiny_tokenizer, batch, tmp_path):
    F.save_merged(merged, tiny_tokenizer, tmp_path / "full")
    F.save_merged(merged, tiny_tokenizer, tmp_path / "compact", compact=True)
    full = (tmp_path / "full" / "model.safetensors").stat().st_size
    small = (tmp_path / "compact" / "model.safetensors").stat().st_size
    assert full - small >= 2 * W.ffn_parameter_count(merged) * 4  # two FFN copies of fp32 not written
    assert not hasattr(merged.config, "merged_ffn_compact")
    loaded = F.load_merged(tmp_path / "compact")
    assert F.unique_ffn_count(loaded) == 10 and not hasattr(loaded.config, "merged_ffn_compact")
    assert torch.equal(logits(loaded, batch), logits(merged, batch))


def test_load_refuses_copies_that_differ(merged, tmp_path):
    F.save_merged(merged, None, tmp_path / "m")
    plain = load_pretrained(tmp_path / "m")
    with torch.no_grad():
        encoder_layers(plain)[5].output.dense.weight.add_(0.1)
    plain.save_pretrained(tmp_path / "tampered")
    with pytest.raises(ValueError, match="does not hold the same FFN"):
        F.load_merged(tmp_path / "tampered")


def test_fine_tuning_keeps_the_ffn_shared(merged, keyword_batches):
    before = encoder_layers(merged)[5].intermediate.dense.weight.detach().clone()
    ptrs = {ffn_ptrs(merged, p) for p in WINDOW}
    cfg = TrainConfig(epochs=1.0, lr=1e-3, batch_size=32, freeze_word_embeddings=False, seed=0)
    run_to_end(fine_tune(merged, keyword_batches["train"], cfg, device=torch.device("cpu")))
    assert {ffn_ptrs(merged, p) for p in WINDOW} == ptrs and len(ptrs) == 1
    assert not torch.equal(encoder_layers(merged)[5].intermediate.dense.weight, before)


# ----------------------------------------------------------------------------------- window selection
def test_rank_windows_by_similarity_and_accuracy():
    rows = [{"window": "0-1", "start": 0, "end": 1, "mean_cka": 0.5, "val_accuracy": 0.8, "val_loss": 0.4},
            {"window": "1-2", "start": 1, "end": 2, "mean_cka": 0.9, "val_accuracy": 0.8, "val_loss": 0.3},
            {"window": "2-3", "start": 2, "end": 3, "mean_cka": 0.7, "val_accuracy": 0.6, "val_loss": 0.2}]
    assert W.chosen_window(W.rank_windows(rows, "similarity")) == (1, 2)
    by_acc = W.rank_windows(rows, "accuracy")
    assert W.chosen_window(by_acc) == (1, 2)  # tie on accuracy: the lower loss wins
    assert list(by_acc["rank"]) == [2, 1, 3]


def test_mean_window_cka_reads_the_block():
    import pandas as pd

    values = np.eye(4)
    values[1, 2] = values[2, 1] = 0.8
    values[2, 3] = values[3, 2] = 0.4
    sim = pd.DataFrame(values)
    assert W.mean_window_cka(sim, (1, 2)) == pytest.approx(0.8)
    assert W.mean_window_cka(sim, (1, 2, 3)) == pytest.approx((0.8 + 0.4 + 0.0) / 3)


def test_score_windows_by_accuracy_on_the_model(model, calib, keyword_batches):
    acts = F.ffn_activations(model, calib)
    sim = W.cka_matrix(acts)
    table = W.score_windows(model, 10, W.WindowScoring(acts, sim, "accuracy", "fp32", val=keyword_batches["val"],
                                                       device=torch.device("cpu")))
    assert list(table["window"]) == ["0-9", "1-10", "2-11"] and sorted(table["rank"]) == [1, 2, 3]
    assert table["val_accuracy"].between(0, 1).all()
    best = table.sort_values(["val_accuracy", "val_loss"], ascending=[False, True]).iloc[0]
    assert W.chosen_window(table) == tuple(range(int(best["start"]), int(best["end"]) + 1))
    with pytest.raises(ValueError, match="impossible"):
        W.candidate_windows(model, 13)


# ------------------------------------------------------------------------------------------- budget
def test_matched_pruning_depth_on_e5_sized_layers():
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(vocab_size=64, hidden_size=384, num_hidden_layers=12, num_attention_heads=12,
                     intermediate_size=1536, max_position_embeddings=64)
    model = BertForSequenceClassification(cfg)
    ffn = 2 * 384 * 1536 + 1536 + 384
    assert W.ffn_parameter_count(model) == ffn
    depths = {k: W.matched_pruning_depth(model, k)["depth"] for k in (2, 4, 6)}
    assert depths == {2: 1, 4: 2, 6: 3}  # an FFN is 2/3 of an e5-small layer
    info = W.matched_pruning_depth(model, 6)
    assert info["merge_removed"] == 5 * ffn
    for d in range(1, 12):  # the depth is the closest
        gap = abs(info["prune_removed"] - info["merge_removed"])
        assert gap <= abs(d * info["layer_params"] - info["merge_removed"])


# --------------------------------------------------------------------------------- events, store, CLI
def tiny_cfg(**kw) -> C.MergeConfig:
    base = dict(model="tiny-bert", dataset="keywords", auto_k=3, epochs=1.0, kd=DistillConfig(epochs=1.0),
                data=DataConfig(train_cap=96, val_cap=48, test_cap=48), calibration_size=32,
                teacher=TrainConfig(epochs=6, lr=3e-3, batch_size=16, freeze_word_embeddings=False,
                                    head_lr_multiplier=1.0))  # beats the majority class (the teacher guard)
    base.update(kw)
    return C.MergeConfig(**base)


def test_merge_events_end_to_end():
    events = list(L.merge_events(tiny_cfg(), device=torch.device("cpu")))
    stages = [e.stage for e in events]
    for stage in ("prepare", "teacher", "similarity", "select", "choice", "align", "merge", "finetune",
                  "distill", "step_done", "compare", "done"):
        assert stage in stages, stage
    assert stages[-1] == "done" and [e.step for e in events if e.stage == "step_done"] == [0, 1]
    progress = [e.progress for e in events if e.progress is not None]
    assert all(0.0 <= p <= 1.0 for p in progress) and progress[-1] == 1.0
    sim = next(e for e in events if "ffn_similarity" in e.tables).tables["ffn_similarity"]
    assert sim.shape == (12, 13)
    choice = next(e for e in events if e.stage == "choice")
    assert len(choice.tables["windows"]) == 10 and choice.payload["size"] == 3
    done = events[-1]
    s, model = done.payload, done.artifacts["model"]
    window = tuple(s["window"])
    assert W.chosen_window(choice.tables["windows"]) == window
    assert s["params"]["removed"] == 2 * s["budget"]["ffn_params"] == s["budget"]["merge_removed"]
    assert s["params"]["unique_ffns_after"] == 10 and s["ffn_still_shared"] is True
    assert len({ffn_ptrs(model, p) for p in window}) == 1
    assert set(s["merged"]) == {"no_tuning", "finetuned", "distilled"} and "after_kd" in s
    pr = s["pruning"]
    assert pr["depth"] == s["budget"]["depth"] == len(pr["removed_layers"])
    assert pr["distilled"]["num_layers"] == 12 - pr["depth"]
    # one record (core.metrics.measure_model) for both sides: final models timed and sized, tuned-on ones not
    for final in (s["final"], pr["distilled"], s["teacher"]):
        assert final["latency_ms"] > 0 and final["safetensors_bytes"] > 0 and final["val_accuracy"] >= 0
    assert "latency_ms" not in s["merged"]["no_tuning"] and "latency_ms" not in pr["finetuned"]
    assert s["final"]["num_layers"] == 12 and s["final"]["kept_layers"] == list(range(12))
    table = done.tables["comparison"]
    assert set(table["method"]) == {"teacher", "merge", "prune"} and len(table) == 7
    for key in ("prepare", "teacher", "activations", "similarity", "selection", "align", "merge", "finetune",
                "distill", "prune_select", "prune_finetune", "total"):
        assert key in s["timings_s"], key


def test_run_store_records_a_merge_run(tmp_path):
    from core.jobs.execute import execute_run
    from core.runs.store import RunStore

    store = RunStore(tmp_path / "store")
    cfg = tiny_cfg(window="2-4", auto_k=None, distill=False, compare_pruning=False)
    run_id = store.create_run(kind="merge", model=cfg.model, dataset=cfg.dataset, strategy="merge",
                              config=cfg.to_dict())
    assert execute_run(store, run_id) == "done", store.get_run(run_id).error
    summary = store.read_json(run_id, "summary.json")
    assert summary["window"] == [2, 3, 4] and summary["pruning"] is None and "after_kd" not in summary
    steps = store.steps(run_id)
    assert list(steps["step"]) == [0, 1] and steps.iloc[1]["window"] == "2-4"
    assert store.read_table(run_id, "steps/0/ffn_similarity.csv").shape == (12, 13)
    assert store.read_table(run_id, "steps/1/windows.csv")["window"].tolist() == ["2-4"]
    assert len(store.read_table(run_id, "steps/1/alignment.csv")) == 3
    loaded = F.load_merged(store.run_dir(run_id) / "model")
    assert F.unique_ffn_count(loaded) == 10 and loaded.config.merged_ffn_windows == [[2, 3, 4]]


def test_cli(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNE_STORE_DIR", str(tmp_path / "store"))
    code = merge_cli(["--model", "tiny-bert", "--dataset", "keywords", "--auto", "3", "--selection",
                       "similarity", "--epochs", "0.5", "--no-distill", "--no-compare-pruning", "--train-cap",
                       "64", "--val-cap", "32", "--test-cap", "32", "--calibration", "16"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "window " in out and "(similarity)" in out and "unique FFNs 12 -> 10" in out and "merge" in out
    assert merge_cli(["--layers", "5"]) == 2
    assert "MergeConfig.window" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- integration
@pytest.mark.integration
def test_e5_merge_round_trip(tmp_path):
    from core.data.batches import batches, encode
    from core.data.datasets import load_dataset
    from core.models.registry import load_classifier, load_tokenizer

    model = load_classifier("e5-small", 6).eval()
    tokenizer = load_tokenizer("e5-small")
    data = encode(tokenizer, load_dataset("trec").frame.head(48), 32)
    acts = F.ffn_activations(model, list(batches(data, 16)))
    assert acts[0].shape[1] == 1536
    merged, table = F.merge_ffns(model, (4, 5, 6), acts)
    assert (table["corr_aligned"] >= table["corr_identity"] - 1e-6).all()
    assert count_parameters(model)["total"] - count_parameters(merged)["total"] == 2 * W.ffn_parameter_count(model)
    F.save_merged(merged, tokenizer, tmp_path / "m")
    loaded = F.load_merged(tmp_path / "m")
    inputs = {k: data[k][:8] for k in ("input_ids", "attention_mask")}
    torch.testing.assert_close(logits(loaded, inputs), logits(merged, inputs), atol=1e-5, rtol=1e-5)
