"""The playground (core.playground) on the tiny random model: skipping layers in the forward pass gives exactly the
logits of surgery, the layer-by-layer reading and per-example Block Influence, a real tiny pruning run opened beside
its teacher, the error analysis agreeing with the accuracies the run stored (and read back from the run's folder),
clear messages for bad input, and the ``predict`` / ``errors`` commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.config import DataConfig
from core.jobs.execute import execute_run
from core.models.surgery import keep_layers, remove_layers
from core.playground import (
    PlaygroundError,
    cached_error_analysis,
    compare,
    error_analysis,
    load_run,
    skip_logits,
    trace,
)
from core.playground.errors import OUTCOMES_FILE
from core.playground.predict import layer_change
from core.pruning.config import PruneConfig
from core.runs import artifacts
from core.runs.store import RunStore

SMALL = DataConfig(train_cap=150, val_cap=45, test_cap=60, max_length=16)
TEXTS = ["good good great love it", "the match was awful and i hate tennis a lot today"]


def sharpen(model, seed: int = 1):
    """Larger random weights: every layer visibly changes the output, so a mix-up of layers shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2 and "embeddings" not in name:
                p.normal_(0.0, 0.3, generator=gen)
    return model.eval()


@pytest.fixture()
def model(tiny_model):
    return sharpen(tiny_model)


@pytest.fixture()
def batch(tiny_tokenizer):
    enc = tiny_tokenizer(TEXTS, padding="longest", return_tensors="pt", return_token_type_ids=False)
    assert (enc["attention_mask"] == 0).any()  # one text is padded: the mask takes part
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


# ------------------------------------------------------------------------------------------ forward
@pytest.mark.parametrize("off", [[0], [7], [3, 7], [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11]])
def test_skipping_layers_gives_exactly_the_logits_of_surgery(model, batch, off):
    with torch.no_grad():
        want = remove_layers(model, off)(**batch).logits
        full = model(**batch).logits
    got = skip_logits(model, batch, off, precision="fp32")
    assert torch.equal(got, want)
    assert not torch.allclose(got, full, atol=1e-3)  # the layers mattered: a skip that did nothing would fail
    assert len(model.bert.encoder.layer) == 12  # nothing was removed from the model


def test_skipping_on_a_pruned_model_uses_original_indices_and_bf16_matches_too(model, batch):
    pruned = keep_layers(model, [0, 3, 4, 8, 11])
    with torch.no_grad():
        want = remove_layers(pruned, [4, 11])(**batch).logits
    assert torch.equal(skip_logits(pruned, batch, [4, 11], precision="fp32"), want)
    from core.precision import autocast

    with torch.no_grad(), autocast("bf16", "cpu", inference=True):
        want16 = remove_layers(model, [2, 9])(**batch).logits.float()
    assert torch.equal(skip_logits(model, batch, [2, 9], precision="bf16"), want16)
    with pytest.raises(PlaygroundError, match=r"Layer\(s\) \[1\] are not in the model"):
        skip_logits(pruned, batch, [1], precision="fp32")
    with pytest.raises(PlaygroundError, match="Every layer"):
        skip_logits(pruned, batch, [0, 3, 4, 8, 11], precision="fp32")


def test_block_influence_of_one_text_is_one_minus_the_cosine_over_its_tokens(model, batch):
    from core.models.forward import embed

    one = {k: v[1:] for k, v in batch.items()}  # the unpadded text
    with torch.no_grad():
        hidden, mask = embed(model, one)
        states = [hidden]
        for layer in model.bert.encoder.layer:
            states.append(layer(states[-1], mask))
    bi = layer_change(states, one["attention_mask"], list(model.bert.encoder.layer))
    by_hand = [float((1 - torch.cosine_similarity(a[0], b[0], dim=-1)).mean()) for a, b in zip(states, states[1:])]
    np.testing.assert_allclose(bi, by_hand, rtol=1e-5)
    assert len(set(np.round(bi, 4))) > 6  # layers differ


# ------------------------------------------------------------------------------------------ a real run
@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[RunStore, str]:
    """A finished tiny pruning run (2 layers removed by the oracle, no distillation) in its own store."""
    store = RunStore(tmp_path_factory.mktemp("playground-store"))
    cfg = PruneConfig(model="tiny-bert", dataset="keywords", strategy="oracle", layers_to_remove=2, step_epochs=1.0,
                      data=SMALL, calibration_size=32, distill=False)
    rid = store.create_run(kind="prune", model=cfg.model, dataset=cfg.dataset, strategy=cfg.strategy,
                           config=cfg.to_dict())
    assert execute_run(store, rid) == "done", store.get_run(rid).error
    return store, rid


@pytest.fixture(scope="module")
def loaded(run):
    store, rid = run
    return load_run(store, rid)


def test_a_run_opens_with_its_teacher_and_the_removed_layers(run, loaded):
    store, rid = run
    summary = store.read_json(rid, artifacts.SUMMARY)
    assert loaded.run.id == rid and loaded.compressed_name == "pruned model"
    assert loaded.teacher_layers == list(range(12))
    assert sorted(loaded.removed_layers) == sorted(summary["removed_order"])
    assert len(loaded.compressed_layers) == 10
    # the teacher is the run's: its stored test accuracy is what the cached teacher scores
    from core.train import evaluate

    scores = evaluate(loaded.teacher, loaded.task.encoded["test"], 128, precision=loaded.precision)
    assert scores["accuracy"] == pytest.approx(summary["teacher"]["test_accuracy"], abs=1e-9)


def test_compare_and_switching_the_removed_layers_off_is_the_pruned_model_before_fine_tuning(loaded):
    text = "the tennis match was great"
    result = compare(loaded, text)
    assert result.teacher_off is None and result.compressed is not None
    assert abs(sum(result.teacher.probs) - 1) < 1e-5 and abs(sum(result.compressed.probs) - 1) < 1e-5
    assert result.agree == (result.teacher.index == result.compressed.index)
    assert result.teacher.label == loaded.label_names[result.teacher.index]
    off = compare(loaded, text, loaded.removed_layers)
    assert off.teacher_off.layers == tuple(loaded.compressed_layers)
    assert off.teacher.probs == result.teacher.probs  # the full teacher is untouched by the switch
    # the same layers removed by surgery from the teacher give the same probabilities
    from core.playground.predict import encode_text

    batch = encode_text(loaded, text)
    cut = remove_layers(loaded.teacher, loaded.removed_layers)
    from core.precision import autocast

    with torch.no_grad(), autocast(loaded.precision, "cpu", inference=True):
        want = torch.softmax(cut(**batch).logits.float(), -1)[0].tolist()
    # equal up to fp32 rounding: the copy surgery makes sits at other addresses, and the CPU's fp32 matrix
    # products may round differently by the buffers' alignment (a 1e-9 logit difference measured on a 2-core
    # EPYC at 1 and 2 threads; the unmodified model through the same pieces is exact: test_forward)
    assert list(off.teacher_off.probs) == pytest.approx(want, abs=1e-6)
    assert json.loads(json.dumps(off.to_dict()))["layers_off"] == sorted(loaded.removed_layers)
    long = compare(loaded, " ".join(["good"] * 40))
    assert long.truncated and long.tokens == loaded.max_length == 16 and long.text_tokens > 40
    assert not result.truncated


def test_the_layer_by_layer_reading_ends_at_the_prediction(loaded):
    result = trace(loaded, "i love this great football match", layers_off=[5])
    lens, change = result.lens, result.change
    assert list(lens["after"]) == ["embeddings"] + [str(i) for i in range(12) if i != 5]
    assert list(change["layer"]) == [i for i in range(12) if i != 5]
    assert (change["change"] >= 0).all() and change["change"].max() > 0
    last = lens.iloc[-1][list(loaded.label_names)].to_numpy(dtype=float)
    direct = compare(loaded, "i love this great football match", [5]).teacher_off
    np.testing.assert_allclose(last, direct.probs, atol=1e-6)
    assert result.prediction.label == direct.label == lens["predicted"].iloc[-1]


def test_error_analysis_agrees_with_the_stored_accuracies_and_is_kept(run, loaded):
    store, rid = run
    summary = store.read_json(rid, artifacts.SUMMARY)
    first = error_analysis(store, loaded, refresh=True)
    assert not first.cached and (store.run_dir(rid) / OUTCOMES_FILE).exists()
    n = first.n
    assert n == len(loaded.task.splits.test)
    t_acc, c_acc = summary["teacher"]["test_accuracy"], summary["before_kd"]["test_accuracy"]
    assert first.accuracy("teacher") == pytest.approx(t_acc, abs=1e-9)
    assert first.accuracy("compressed") == pytest.approx(c_acc, abs=1e-9)
    assert first.matches_stored and "the accuracies the run stored" in first.stored_note()
    for model, acc in (("teacher", t_acc), ("compressed", c_acc)):
        matrix = first.confusion(model)
        assert matrix.sum() == n and np.trace(matrix) == round(acc * n)
        assert list(matrix.sum(axis=1)) == [int((first.examples["label"] == c).sum())
                                         for c in range(len(loaded.label_names))]
    flips = first.flip_counts()
    assert sum(flips.values()) == n
    assert (flips["gained"] - flips["lost"]) == round(c_acc * n) - round(t_acc * n)
    lost, gained = first.flips("lost"), first.flips("gained")
    assert len(lost) == flips["lost"] and len(gained) == flips["gained"]
    assert (lost["teacher"] == lost["class"]).all() and (lost["compressed"] != lost["class"]).all()
    assert (gained["teacher"] != gained["class"]).all() and (gained["compressed"] == gained["class"]).all()
    texts = set(loaded.task.splits.test["text"])
    assert set(lost["text"]) <= texts and set(gained["text"]) <= texts
    assert sum(len(first.flips("lost", name)) for name in loaded.label_names) == flips["lost"]
    with pytest.raises(ValueError, match="Unknown class 'nope'"):
        first.flips("lost", "nope")
    per_class = first.per_class()
    assert per_class["n"].sum() == n
    right = (per_class["teacher_accuracy"] * per_class["n"]).sum()
    assert right == pytest.approx(t_acc * n)
    assert (per_class["teacher_low"] <= per_class["teacher_accuracy"]).all()
    assert (per_class["teacher_accuracy"] <= per_class["teacher_high"]).all()
    thirds = first.by_length()
    assert list(thirds["third"]) == ["short", "medium", "long"] and thirds["n"].sum() == n
    assert abs(thirds["n"].max() - thirds["n"].min()) <= 1
    assert (thirds["compressed_accuracy"] * thirds["n"]).sum() == pytest.approx(c_acc * n)

    again = error_analysis(store, loaded)
    assert again.cached  # read back from the run's folder
    assert again.to_dict()["confusion_compressed"] == first.to_dict()["confusion_compressed"]
    assert list(again.examples["text"]) == list(first.examples["text"])
    read = cached_error_analysis(store, rid)
    assert read is not None and read.flip_counts() == flips and read.matches_stored


def test_the_teacher_key_is_recomputed_for_models_saved_without_it(run, loaded):
    import copy

    from core.playground.load import _run_config, _teacher_key_of

    bare = copy.deepcopy(loaded.compressed)
    del bare.config.teacher_key
    assert _teacher_key_of(_run_config(loaded.run), loaded.task, bare) == loaded.teacher_key


def test_a_cached_teacher_opens_alone(run, loaded):
    from core.playground import cached_teachers, load_teacher

    store, _ = run
    [info] = [t for t in cached_teachers() if t.key == loaded.teacher_key]
    assert (info.model, info.dataset) == ("tiny-bert", "keywords") and info.data.test_cap == SMALL.test_cap
    alone = load_teacher(info.key, store)
    assert alone.run is None and alone.compressed is None and alone.task.fingerprint == loaded.task.fingerprint
    result = compare(alone, "great tennis", [2])
    assert result.compressed is None and result.agree is None
    assert result.teacher.probs == compare(loaded, "great tennis").teacher.probs
    with pytest.raises(PlaygroundError, match="needs a finished run"):
        error_analysis(store, alone)
    with pytest.raises(PlaygroundError, match="No teacher 'nope'"):
        load_teacher("nope", store)


def test_a_merge_run_opens_and_its_error_analysis_agrees_with_its_stored_accuracy(tmp_path):
    from core.merging.config import MergeConfig

    store = RunStore(tmp_path / "store")
    cfg = MergeConfig(model="tiny-bert", dataset="keywords", window="5-8", epochs=0.5, distill=False,
                      compare_pruning=False, calibration_size=32, data=SMALL)
    rid = store.create_run(kind="merge", model=cfg.model, dataset=cfg.dataset, strategy="merge-fixed",
                           config=cfg.to_dict())
    assert execute_run(store, rid) == "done", store.get_run(rid).error
    merged = load_run(store, rid)
    assert merged.compressed_name == "merged model" and merged.removed_layers == []
    assert merged.compressed.bert.encoder.layer[5].intermediate is merged.compressed.bert.encoder.layer[8].intermediate
    analysis = error_analysis(store, merged)
    summary = store.read_json(rid, artifacts.SUMMARY)
    assert analysis.accuracy("compressed") == pytest.approx(summary["final"]["test_accuracy"], abs=1e-9)
    assert analysis.accuracy("teacher") == pytest.approx(summary["teacher"]["test_accuracy"], abs=1e-9)
    assert analysis.matches_stored and "merged model" in analysis.stored_note()


# ------------------------------------------------------------------------------------------ bad input
def test_bad_input_gets_a_clear_message(run, loaded):
    store, rid = run
    with pytest.raises(PlaygroundError, match="The text is empty"):
        compare(loaded, "   ")
    with pytest.raises(PlaygroundError, match="No run 'nope'"):
        load_run(store, "nope")
    queued = store.create_run(kind="prune", model="tiny-bert", dataset="keywords", strategy="oracle",
                              config=store.get_run(rid).config)
    with pytest.raises(PlaygroundError, match=rf"Run {queued} has no saved model \(status: queued\)"):
        load_run(store, queued)
    store.request_cancel(queued)
    with pytest.raises(PlaygroundError, match="status: cancelled.*only a finished run saves its model"):
        load_run(store, queued)
    other = store.create_run(kind="deploy", model="tiny-bert", dataset="keywords", strategy="deploy", config={})
    with pytest.raises(PlaygroundError, match=f"Run {other} is a 'deploy' run"):
        load_run(store, other)


# ------------------------------------------------------------------------------------------ CLI
def test_predict_and_errors_commands(run, monkeypatch, capsys):
    from core.cli.main import main

    store, rid = run
    monkeypatch.setenv("PRUNE_STORE_DIR", str(store.root))
    assert main(["predict", rid, "great love good", "--layers-off", "3,7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["run_id"] == rid and out["layers_off"] == [3, 7]
    assert list(out["teacher"]["probabilities"]) == list(load_run(store, rid).label_names)
    assert out["teacher_layers_off"]["layers"] == [i for i in range(12) if i not in (3, 7)]
    assert isinstance(out["agree"], bool)
    assert main(["predict", rid, "great love good"]) == 0
    text = capsys.readouterr().out
    assert "teacher" in text and "pruned model" in text and ("agree" in text or "DISAGREE" in text)
    assert main(["predict", rid, "  "]) == 2
    assert "The text is empty" in capsys.readouterr().err
    assert main(["predict", rid, "x", "--layers-off", "12"]) == 2
    assert "are not in the model" in capsys.readouterr().err
    assert main(["errors", rid]) == 0
    text = capsys.readouterr().out
    assert "flipped:" in text and "per-class accuracy" in text and "true " in text
    assert main(["errors", rid, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["matches_stored"] is True and payload["cached"] is True
    assert main(["errors", "no-such-run"]) == 2
    assert "No run 'no-such-run'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ stale and weak teachers
@pytest.fixture()
def own_cache(loaded, tmp_path, monkeypatch):
    """A private cache holding a copy of the run's teacher: its teacher.json is the test's to change."""
    import shutil

    from core.teacher import teacher_dir

    source = teacher_dir(loaded.teacher_key)
    monkeypatch.setenv("PRUNE_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copytree(source, teacher_dir(loaded.teacher_key))
    return teacher_dir(loaded.teacher_key) / "teacher.json"


def rewrite(meta_path, **changes) -> dict:
    """Change teacher.json's keys (None: drop the key, as in a teacher fine-tuned before it was recorded)."""
    meta = json.loads(meta_path.read_text())
    meta.update(changes)
    meta = {k: v for k, v in meta.items() if v is not None}
    meta_path.write_text(json.dumps(meta))
    return meta


def test_a_new_teacher_records_its_splits_and_a_good_one_opens_unflagged(run, loaded, own_cache):
    from core.data.splits import SPLIT_VERSION
    from core.playground import cached_teachers, load_teacher, stale_note, stale_teachers

    store, rid = run
    meta = json.loads(own_cache.read_text())
    assert meta["split_version"] == SPLIT_VERSION and meta["task"]["fingerprint"] == loaded.task.fingerprint
    assert [t.key for t in cached_teachers()] == [loaded.teacher_key] and stale_teachers() == []
    assert stale_note(stale_teachers()) == ""
    alone = load_teacher(loaded.teacher_key, store)
    check = alone.teacher_check
    assert check is not None and not check.weak and alone.weak_note == ""
    # the check is the one the run made on its teacher: the same numbers on the same rebuilt splits
    [event] = [e for e in store.events(rid) if e.stage == "teacher_check"]
    for name in ("accuracy", "accuracy_low", "baseline_accuracy", "baseline_macro_f1", "test_rows"):
        assert getattr(check, name) == pytest.approx(event.payload[name], abs=1e-12), name


def test_a_teacher_of_an_older_split_version_is_not_offered(run, loaded, own_cache):
    from core.data.splits import SPLIT_VERSION
    from core.playground import cached_teachers, load_teacher, stale_note, stale_teachers

    store, _ = run
    rewrite(own_cache, split_version=SPLIT_VERSION - 1)
    assert cached_teachers() == []
    [stale] = stale_teachers()
    assert stale.key == loaded.teacher_key and stale.stale
    note = stale_note([stale])
    assert note.startswith("1 cached teacher is not offered") and f"({SPLIT_VERSION - 1}; today's splits are " \
        f"version {SPLIT_VERSION})" in note
    with pytest.raises(PlaygroundError, match=rf"its splits are version {SPLIT_VERSION - 1} and today's are version "
                                              rf"{SPLIT_VERSION}: it was fine-tuned on a different split of the data"):
        load_teacher(loaded.teacher_key, store)


def test_a_run_whose_teacher_was_trained_on_older_splits_is_refused(run, loaded, own_cache):
    """The run was pruned and tuned on the splits its teacher saw: when those are not today's, it is not opened."""
    from core.data.splits import SPLIT_VERSION

    store, rid = run
    assert load_run(store, rid).teacher_key == loaded.teacher_key  # today's splits: opens from the private cache
    meta = json.loads(own_cache.read_text())
    rewrite(own_cache, split_version=SPLIT_VERSION - 1, task={**meta["task"], "fingerprint": "drawn-by-older-rules"})
    said = rf"Run {rid} cannot be opened: it and its teacher were trained on splits of version {SPLIT_VERSION - 1} "
    with pytest.raises(PlaygroundError, match=said + rf"\(today's are version {SPLIT_VERSION}\)"):
        load_run(store, rid)
    rewrite(own_cache, split_version=None)  # no version recorded: the fingerprint alone tells
    with pytest.raises(PlaygroundError, match=r"trained on a different split of the data \(older split rules"):
        load_run(store, rid)


def test_a_teacher_whose_key_no_longer_matches_its_rebuilt_task_is_refused(run, loaded, own_cache):
    """A teacher fine-tuned before split version 3 and before teacher.json recorded its splits: its folder is named by
    the key of the task drawn with the old split rules."""
    import dataclasses
    import shutil

    from core.config import TrainConfig, from_dict
    from core.data.batches import make_splits
    from core.data.datasets import load_dataset
    from core.data.splits import SPLIT_VERSION
    from core.data.task import task_from_splits
    from core.playground import cached_teachers, load_teacher
    from core.teacher import teacher_dir, teacher_key

    store, _ = run
    data = loaded.task.data_cfg
    dataset = load_dataset("keywords")
    old = task_from_splits(loaded.task.model, dataset, make_splits(dataset.frame, dataset.label_names, data), data,
                           split_version=SPLIT_VERSION - 1)
    meta = json.loads(own_cache.read_text())
    meta = rewrite(own_cache, split_version=None, task={**meta["task"], "fingerprint": old.fingerprint})
    old_key = teacher_key(old, dataclasses.replace(from_dict(TrainConfig, meta["train"]), precision=meta["precision"]))
    assert old_key != loaded.teacher_key
    shutil.move(own_cache.parent, teacher_dir(old_key))
    assert [t.key for t in cached_teachers()] == [old_key]  # no record: offered, and checked when opened
    with pytest.raises(PlaygroundError, match=r"fine-tuned on a different split of the data \(older split rules or a "
                                              r"changed dataset file\), so today's test rows may include rows it "
                                              r"trained on.*`python -m core teach --model tiny-bert --dataset "
                                              r"keywords`"):
        load_teacher(old_key, store)
    rewrite(teacher_dir(old_key) / "teacher.json", version=0)
    with pytest.raises(PlaygroundError, match=r"older training code \(teacher version 0"):
        load_teacher(old_key, store)
    # today's data under a key that is not its own: the data is not blamed
    rewrite(teacher_dir(old_key) / "teacher.json", version=meta["version"], task=loaded.task.describe())
    with pytest.raises(PlaygroundError, match="no longer matches its recorded training settings"):
        load_teacher(old_key, store)


def test_a_weak_teacher_opens_flagged_with_its_interval_and_the_majority_rate(run, loaded, own_cache):
    from core.playground import load_teacher
    from core.teacher import check_teacher

    store, _ = run
    meta = json.loads(own_cache.read_text())
    task = loaded.task
    real = check_teacher(meta["metrics"]["test"], task.encoded["train"]["labels"], task.encoded["test"]["labels"],
                         task.label_names, task.max_length)
    assert not real.weak  # the run's teacher is good: the rewrite below makes it weak
    rate = real.baseline_accuracy  # no better than always predicting the majority class
    rewrite(own_cache, metrics={**meta["metrics"], "test": {**meta["metrics"]["test"], "accuracy": rate,
                                                              "macro_f1": real.baseline_macro_f1}})
    alone = load_teacher(loaded.teacher_key, store)
    check = alone.teacher_check
    assert check is not None and check.weak and not check.beats_majority and check.accuracy == rate
    note = alone.weak_note
    assert note.startswith(f"Weak teacher: its predictions here say little beyond always answering "
                           f"{check.majority_class!r}")
    assert check.accuracy_text() in note and f"not above the majority-class rate {rate:.3f}" in note
    assert compare(alone, "great tennis").teacher.label in alone.label_names  # still opens: flagged, not refused
