"""The lesson (issue 31 items 1-3): its guesses scored by their rules, the shipped readings checked, the figures it
quotes read from the reference files (not written into its text), its runs picked from whatever the store holds,
every chapter drawn from a tiny recorded pack (and a line, never an empty page or an exception, without one), and a
link's chapter, run and layers opened or refused with a notice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.lesson import course, guesses, reference
from core.lesson.readings import MANIFEST_FILE, ReadingsError, file_name, load_readings, parse_readings
from core.runs.record import Run, RunStatus
from tests.lesson_pack import LessonPack, shared_lesson_pack
from tests.test_app_pages import assert_clean, texts

ROOT = Path(__file__).resolve().parent.parent
N_CHAPTERS = 10


@pytest.fixture(scope="module")
def lesson_pack(tmp_path_factory) -> LessonPack:
    return shared_lesson_pack(tmp_path_factory)


@pytest.fixture()
def lesson_env(lesson_pack, monkeypatch, tmp_path) -> LessonPack:
    """A fresh store, the tiny pack, its bank and readings."""
    monkeypatch.setenv("PRUNE_STORE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("PRUNE_PACK_DIR", str(lesson_pack.pack))
    monkeypatch.setenv("PRUNE_BANK_DIR", str(lesson_pack.bank))
    monkeypatch.setenv("PRUNE_READINGS_DIR", str(lesson_pack.readings))
    return lesson_pack


def lesson(chapter: int | None = None, opened: bool = True, **query: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / "lesson.py"), default_timeout=120)
    if chapter is not None:
        at.session_state["lesson_chapter"] = chapter
        if opened:
            at.session_state[f"lesson_open_{chapter}"] = True
    for key, value in query.items():
        at.query_params[key] = value
    return at


# ------------------------------------------------------------------------------------------ scoring rules
def _oracle(acc: dict[int, float], n: int = 200, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An oracle table and per-example outcomes whose accuracies are exactly ``acc`` (n validation rows)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    table, parts = [], []
    for layer, a in acc.items():
        right = np.zeros(n, bool)
        right[rng.permutation(n)[:round(a * n)]] = True
        parts.append(pd.DataFrame({"example": range(n), "label": labels, "pred": np.where(right, labels, 1 - labels),
                                   "original_layer": layer}))
        table.append({"original_layer": layer, "accuracy": right.mean(), "loss": 1 - right.mean(),
                      "kl_to_current": 0.1 * (1 + layer)})
    return pd.DataFrame(table), pd.concat(parts, ignore_index=True)


def test_a_layer_guess_costs_its_regret_against_the_most_accurate_removal():
    oracle, outcomes = _oracle({0: 0.60, 1: 0.90, 2: 0.89, 3: 0.70})
    found = guesses.reveal_layer(oracle, outcomes, guess=3, forest=2)
    assert found.best.layer == 1 and found.best.regret_points == 0 and found.best.as_good_as_best
    assert found.guess.rank == 3 and found.guess.regret_points == pytest.approx(20.0)
    assert found.guess.regret is not None and found.guess.regret.low > 0 and not found.scored  # beyond noise
    assert found.forest is not None and found.forest.regret_points == pytest.approx(1.0)
    assert found.forest.as_good_as_best  # one point on 200 rows: its paired interval holds 0
    assert found.oracle_pick == 0  # the lowest KL, not the most accurate
    assert guesses.reveal_layer(oracle, outcomes, guess=1, forest=None).scored
    with pytest.raises(ValueError, match="not a candidate"):
        guesses.layer_cost(oracle, outcomes, 7)


def test_the_same_layer_is_scored_on_every_seed_of_the_bank():
    rows, parts = [], []
    for seed, acc in ((0, {0: 0.8, 1: 0.9}), (1, {0: 0.9, 1: 0.5})):
        table, outcomes = _oracle(acc, seed=seed)
        run_id = f"run{seed}"
        rows += [{"model": "m", "dataset": "d", "seed": seed, "run_id": run_id, "step": 1, "original_layer": int(r),
                  "oracle_accuracy": a, "oracle_loss": 1 - a} for r, a in zip(table["original_layer"],
                                                                              table["accuracy"])]
        parts.append(outcomes.assign(run_id=run_id, step=1, correct=outcomes["pred"] == outcomes["label"]))
    frame, bank_outcomes = pd.DataFrame(rows), pd.concat(parts, ignore_index=True)
    seeds = guesses.bank_seed_costs(frame, bank_outcomes, "m", "d", layer=1)
    assert [(s.seed, s.best_layer, s.rank) for s in seeds] == [(0, 1, 1), (1, 0, 2)]
    assert seeds[0].as_good_as_best and not seeds[1].as_good_as_best
    assert seeds[1].regret_points == pytest.approx(40.0) and seeds[1].regret.low > 0 and seeds[1].val_rows == 200
    assert guesses.bank_seed_costs(frame, None, "m", "other", layer=1) == ()


def test_forest_or_signal_is_a_tie_under_the_noise_floor():
    def side(strategy, regrets):
        return guesses.duel_side(strategy, strategy, regrets, None)
    close = guesses.reveal_duel(side("rf", [0.01, 0.02]), side("we", [0.02, 0.02]), floor=1.0)
    assert close.difference == pytest.approx(0.5) and close.answer == guesses.TIE and close.scored(guesses.TIE)
    clear = guesses.reveal_duel(side("rf", [0.0, 0.01]), side("we", [0.04, 0.03]), floor=1.0)
    assert clear.answer == guesses.FOREST and not clear.scored(guesses.SIGNAL)
    assert guesses.reveal_duel(side("rf", [0.03]), side("we", [0.0]), floor=None).answer == guesses.SIGNAL
    assert guesses.reveal_duel(side("rf", [0.0]), side("we", [0.0]), floor=None).answer == guesses.TIE


def test_a_distillation_guess_scores_inside_the_interval_or_within_a_point():
    from core.runs.noise import Comparison
    from core.stats import Interval

    gain = Comparison(Interval(0.03, 0.01, 0.05), True, "after", "before")
    assert guesses.reveal_kd(2.0, gain).scored and guesses.reveal_kd(5.0, gain).scored
    assert guesses.reveal_kd(3.9, Comparison(Interval(0.03, 0.029, 0.031), True, "a", "b")).scored  # within a point
    assert not guesses.reveal_kd(8.0, gain).scored and not guesses.reveal_kd(-1.0, gain).scored


# ------------------------------------------------------------------------------------------ what it reads
def test_the_noise_figures_come_from_the_reliability_file(tmp_path):
    shipped = pd.read_csv(ROOT / "data" / "reference" / reference.RELIABILITY_CSV)
    at_1000 = shipped[shipped["val_rows"] == 1000].groupby("score")["spearman_seeds"].mean()
    found = reference.reliability(1000)
    assert found is not None and found.val_rows == 1000 and found.seeds == (0, 1)
    assert found.value("accuracy", "spearman_seeds") == pytest.approx(at_1000["accuracy"])
    assert found.value("kl", "spearman_seeds") == pytest.approx(at_1000["kl"])
    changed = shipped.assign(spearman_seeds=0.5)  # another study: the lesson says what the file says
    changed.to_csv(tmp_path / reference.RELIABILITY_CSV, index=False)
    assert reference.reliability(900, tmp_path).value("accuracy", "spearman_seeds") == 0.5
    assert reference.reliability(1000, tmp_path / "none") is None


def test_the_shipped_readings_are_the_trec_presets_through_the_e5_teacher():
    found = load_readings("e5-small", "trec")
    assert found is not None and len(found.label_names) == 6 and found.layers == tuple(range(12))
    assert len(found.sentences) >= 5 and all(set(s.off) == set(range(12)) for s in found.sentences)
    for s in found.sentences:
        assert len(s.full.lens) == 13 and all(len(s.off[k].lens) == 12 for k in s.off)
        if s.expected:
            assert s.full.label(found.label_names) == s.expected  # the teacher reads them as a reader would


def test_changed_or_malformed_readings_are_refused(tmp_path):
    shutil.copytree(ROOT / "data" / "readings", tmp_path / "r")
    path = tmp_path / "r" / file_name("e5-small", "trec")
    data = json.loads(path.read_text())
    path.write_text(path.read_text().replace("0.", "0.1", 1))
    with pytest.raises(ReadingsError, match="does not match its checksum"):
        load_readings("e5-small", "trec", tmp_path / "r")
    assert load_readings("e5-small", "sms-spam", tmp_path / "r") is None  # none ship: no complaint
    (tmp_path / "r" / MANIFEST_FILE).unlink()
    assert load_readings("e5-small", "trec", tmp_path / "r") is None
    data["sentences"][0]["full"]["probs"][0] += 0.5
    with pytest.raises(ReadingsError, match="do not sum to 1"):
        parse_readings(data)
    del data["sentences"][0]["off"]["3"]
    with pytest.raises(ReadingsError, match="one reading per layer"):
        parse_readings(data)


def _run(strategy: str, dataset: str, status: RunStatus = RunStatus.DONE, recorded: bool = True) -> Run:
    return Run.from_dict({"id": f"{dataset}-{strategy}", "kind": "prune", "model": "e5-small", "dataset": dataset,
                          "strategy": strategy, "status": str(status), "config": {}, "summary": {}, "created_at": 1.0,
                          "finished_at": 2.0, "recorded": recorded})


def test_the_lesson_stands_on_whatever_runs_are_there():
    runs = [_run("rf_fusion", "rotten-tomatoes"), _run("oracle", "rotten-tomatoes"), _run("rf_fusion", "trec"),
            _run("weight_entropy", "trec"), _run("attention_entropy", "trec"),
            _run("oracle", "trec", RunStatus.RUNNING)]
    found = course.lesson_runs(runs, ["weight_entropy", "attention_entropy"],
                               best_signal=lambda model, c: "attention_entropy" if "attention_entropy" in c else None)
    assert found.dataset == "trec" and found.forest.id == "trec-rf_fusion" and found.oracle is None  # unfinished
    assert found.signal.strategy == "attention_entropy" and set(found.missing) == {"oracle", "top_down"}
    assert found.datasets == ("trec", "rotten-tomatoes")
    assert course.lesson_runs(runs, [], dataset="rotten-tomatoes").oracle.id == "rotten-tomatoes-oracle"
    empty = course.lesson_runs([], [])
    assert empty.dataset is None and empty.any is None and len(empty.missing) == 4


def test_the_feed_forward_share_matches_a_real_bert_layer():
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertLayer

    for hidden, width in ((384, 1536), (32, 64)):
        layer = BertLayer(BertConfig(hidden_size=hidden, intermediate_size=width, num_attention_heads=4))
        total = sum(p.numel() for p in layer.parameters())
        ffn = sum(p.numel() for m in (layer.intermediate.dense, layer.output.dense) for p in m.parameters())
        assert course.ffn_parameters(total, hidden) == ffn
    assert course.ffn_parameters(1000, 384) is None


def test_layers_in_a_link_read_as_integers_and_the_rest_is_reported():
    from ui.links import parse_layers

    assert parse_layers("3, 7,x,,12") == ([3, 7, 12], ["x"])


# ------------------------------------------------------------------------------------------ the page
def test_every_chapter_draws_from_the_recorded_pack(lesson_env):
    for n in range(1, N_CHAPTERS + 1):
        at = lesson(n).run()
        assert_clean(at)
        shown = texts(at)
        assert f"{n}. " in shown and "not in the pack yet" not in shown, (n, shown[:400])
        assert "recorded" in shown or n in (1, 6, 10), n  # a chapter on a run says it is recorded, with its budget
        assert str(lesson_env.pack) not in shown and str(lesson_env.store) not in shown
        assert at.session_state["sel_dataset"] == "keywords" and at.session_state["sel_model"] == "tiny-bert"


def test_without_a_pack_every_chapter_says_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNE_STORE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("PRUNE_READINGS_DIR", str(tmp_path / "no-readings"))
    for n in range(1, N_CHAPTERS + 1):
        at = lesson(n).run()
        assert_clean(at)
        lines = [i.value for i in at.info]
        if n != 6:  # the noise chapter reads the shipped reference files, not a run
            assert lines, n
            assert any("not in the pack yet" in x or "No precomputed readings" in x or "No finished merge" in x
                       for x in lines), (n, lines)


def test_before_the_pack_lands_the_guess_stands_on_the_shipped_bank(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNE_STORE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("PRUNE_BANK_DIR", str(ROOT / "data" / "bank"))
    at = lesson(3)
    at.session_state["lesson_pick_layer"] = 4
    at.session_state["lesson_shown_layer"] = True
    at.run()
    assert_clean(at)
    shown = texts(at)
    assert "reads step 1 of the profile bank's seed 0 of the same model and dataset" in shown
    assert "Your pick: L4" in shown and "bank seed(s)" in shown and "The forest's pick" not in shown
    assert at.session_state["sel_model"] == "e5-small" and at.session_state["sel_dataset"] == "trec"


def test_a_bank_step_reads_like_a_stored_step():
    from core.fusion.features import ORACLE_KL

    rows = pd.DataFrame([{"model": "m", "dataset": "d", "seed": s, "run_id": f"r{s}", "step": 1, "original_layer": k,
                          "oracle_accuracy": 0.5 + 0.1 * k, "oracle_loss": 1.0 - 0.1 * k, ORACLE_KL: 0.3 - 0.1 * k,
                          "taylor": float(k)} for s in (1, 0) for k in range(3)])
    outcomes = pd.DataFrame([{"run_id": "r0", "step": 1, "original_layer": k, "example": e, "correct": int(e < k + 1)}
                             for k in range(3) for e in range(4)])
    found = course.bank_step(rows, outcomes, "m", "d")
    assert found.seed == 0 and found.run_id == "r0" and list(found.oracle["original_layer"]) == [0, 1, 2]
    assert guesses.oracle_pick(found.oracle) == 2 and guesses.most_accurate(found.oracle) == 2
    cost = guesses.layer_cost(found.oracle, found.outcomes, 0)
    assert cost.accuracy.accuracy == 0.25 and cost.regret_points == pytest.approx(20.0)  # the table's, not outcomes'
    assert course.bank_step(rows, None, "m", "other") is None


def test_a_guess_is_revealed_scored_once_and_counted(lesson_env):
    at = lesson(3).run()
    assert at.button(key="lesson_reveal_layer").disabled  # no guess, no reveal
    at.session_state["lesson_pick_layer"] = 4
    at.run()
    at.button(key="lesson_reveal_layer").click().run()
    assert_clean(at)
    shown = texts(at)
    assert "Your pick: L4" in shown and "The forest's pick" in shown and "Luck or insight" in shown
    assert "bank seed(s)" in shown  # the tiny bank holds seeds 0 and 1 of this model and dataset
    assert at.session_state["lesson_score"] == {"layer": True}  # the tiny oracle ties every layer
    at.session_state["lesson_chapter"] = 8
    at.session_state["lesson_open_8"] = True
    at.session_state["lesson_pick_kd"] = 15.0
    at.run()
    at.button(key="lesson_reveal_kd").click().run()
    assert_clean(at)
    assert "Won back" in texts(at) and at.session_state["lesson_score"]["kd"] is False
    at.session_state["lesson_pick_kd"] = 0.0  # a second try does not change the first reveal's score
    at.run()
    assert at.session_state["lesson_score"]["kd"] is False and "Score: 1 of 2" in texts(at)


def test_a_link_opens_its_chapter_and_a_bad_one_the_nearest_with_a_notice(lesson_env):
    at = lesson(chapter=None)
    at.query_params["chapter"] = "7"
    at.query_params["step"] = "9"
    at.run()
    assert_clean(at)
    shown = texts(at)
    assert "7. Recovery" in shown and "step 9 does not exist here" in shown and at.session_state["lesson_step"] == 2
    assert at.query_params["step"] == "2" and at.query_params["chapter"] == "7"  # the link now says what is shown
    at = lesson(chapter=None)
    at.query_params["chapter"] = "42"
    at.query_params["run"] = "20000101-000000-gone00"
    at.run()
    assert_clean(at)
    shown = texts(at)
    assert f"chapter 42 does not exist (chapters 1–{N_CHAPTERS})" in shown and f"{N_CHAPTERS}. Pruning" in shown
    assert "20000101-000000-gone00 from the link are not in this store" in shown
    at = lesson(chapter=None)
    at.query_params["chapter"] = "1"
    at.query_params["off"] = "99"
    at.run()
    assert_clean(at)
    assert "layer 99 does not exist here" in texts(at) and at.session_state["lesson_off"] == 11


def test_instructor_switches_hide_controls_and_enlarge_text_for_the_session(lesson_env):
    from ui.links import HIDE_CSS, PRESENT_CSS

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    for key, value in {"hide": "controls", "present": "1", "chapter": "2", "bogus": "x"}.items():
        at.query_params[key] = value
    at.run()
    assert_clean(at)
    assert not [s.label for s in at.sidebar.selectbox if s.label in ("Model", "Dataset")]  # the selectors are hidden
    styles = [m.value for m in at.markdown]
    assert HIDE_CSS in styles and PRESENT_CSS in styles
    assert any("does not know, ignored: bogus" in w.value for w in at.warning)
    assert "bogus" not in at.query_params and at.query_params["hide"] == "controls"
    at.switch_page("pages/signals.py").run()  # another page of the same session: still hidden, still presenting
    assert_clean(at)
    assert HIDE_CSS in [m.value for m in at.markdown] and at.query_params["present"] == "1"
    assert not [s.label for s in at.sidebar.selectbox if s.label in ("Model", "Dataset")]
