"""AppTest of the Playground page (pages/playground.py) on a store holding one real tiny pruning run: it opens the run
from the URL, shows the teacher's and the pruned model's predictions, recomputes the teacher when a layer is switched
off, draws the layer-by-layer views and the error analysis, opens a flipped example in the text box, and says what to
do for an empty text, an unknown run and an empty store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.config import DataConfig
from core.jobs.execute import execute_run
from core.playground import compare, error_analysis, load_run
from core.pruning.config import PruneConfig
from core.runs.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "pages" / "playground.py"
TEXT = "i think the tennis match was great"


@pytest.fixture(scope="module")
def pg_store(tmp_path_factory) -> tuple[Path, str]:
    """A finished tiny run that removed 4 layers without distillation: some test examples flip."""
    root = tmp_path_factory.mktemp("pg-page-store")
    store = RunStore(root)
    cfg = PruneConfig(model="tiny-bert", dataset="keywords", strategy="top_down", layers_to_remove=4,
                      step_epochs=0.5, calibration_size=32, distill=False,
                      data=DataConfig(train_cap=160, val_cap=48, test_cap=90, max_length=10))
    rid = store.create_run(kind="prune", model=cfg.model, dataset=cfg.dataset, strategy=cfg.strategy,
                           config=cfg.to_dict())
    assert execute_run(store, rid) == "done", store.get_run(rid).error
    return root, rid


@pytest.fixture()
def env(pg_store, monkeypatch):
    monkeypatch.setenv("PRUNE_STORE_DIR", str(pg_store[0]))
    return pg_store


def page(run_id: str | None = None) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.session_state["sel_model"] = "tiny-bert"
    at.session_state["sel_dataset"] = "keywords"
    if run_id:
        at.query_params["run"] = run_id
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def chart_titles(at: AppTest) -> list[str]:
    return [(json.loads(c.proto.spec)["layout"].get("title") or {}).get("text", "") for c in at.get("plotly_chart")]


def clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_type_a_text_see_two_predictions_and_switch_a_layer_off(env):
    root, rid = env
    at = page(rid).run()
    clean(at)
    assert at.title[0].value == "Playground" and at.query_params["run"] == rid
    at.text_area(key="pg_text").set_value(TEXT).run()
    clean(at)
    loaded = load_run(RunStore(root), rid)
    want = compare(loaded, TEXT)
    shown = metrics(at)
    assert shown["Teacher (12 layers)"] == want.teacher.label
    assert shown["Pruned model (8 layers)"] == want.compressed.label
    assert "True class (test split)" not in shown  # a typed text has no true class
    verdict = "agree" if want.agree else "disagree"
    assert any(f"The teacher and the pruned model {verdict}" in m.value for m in [*at.success, *at.warning])
    titles = chart_titles(at)
    assert titles[:3] == ["Class probabilities", "How the prediction forms, layer by layer (our definition)",
                          "Each layer's change on this text (1 − cosine)"]
    assert any("Our definition" in c.value for c in at.caption)

    pills = at.pills(key=f"pg_layers_{rid}")
    pills.set_value([i for i in range(12) if i not in (0, 7)]).run()
    clean(at)
    off = compare(loaded, TEXT, [0, 7]).teacher_off
    shown = metrics(at)
    assert shown["Teacher without layers 0, 7 (10 layers)"] == off.label
    assert shown["Teacher (12 layers)"] == want.teacher.label
    formation = [json.loads(c.proto.spec) for c in at.get("plotly_chart")][1]
    assert list(formation["data"][0]["x"]) == ["embeddings"] + [str(i) for i in range(12) if i not in (0, 7)]


def test_error_analysis_and_a_flipped_example_opens_in_the_text_box(env):
    root, rid = env
    store = RunStore(root)
    analysis = error_analysis(store, load_run(store, rid))
    flips = analysis.flip_counts()
    assert flips["lost"] + flips["gained"] > 0  # the fixture's run flips some examples
    at = page(rid).run()
    clean(at)
    shown = metrics(at)
    assert shown["Teacher accuracy"] == f"{analysis.accuracy('teacher'):.3f}"
    assert shown["Lost (teacher right → wrong)"] == str(flips["lost"])
    assert shown["Gained (teacher wrong → right)"] == str(flips["gained"])
    assert any("the accuracies the run stored" in c.value for c in at.caption)
    titles = chart_titles(at)
    for title in ("Confusion matrices on the test split", "Accuracy per class (95 % intervals)",
                  "Accuracy by text length (thirds of the test split)"):
        assert title in titles
    direction = "lost" if flips["lost"] else "gained"
    at.segmented_control(key="pg_flip_dir").set_value(direction).run()
    clean(at)
    first = analysis.flips(direction).iloc[0]
    at.selectbox(key=f"pg_flip_pick_{direction}_all classes").set_value(0).run()
    clean(at)
    assert at.text_area(key="pg_text").value == first["text"]
    assert metrics(at)["True class (test split)"] == first["class"]
    assert metrics(at)["Teacher (12 layers)"] == first["teacher"]
    assert metrics(at)["Pruned model (8 layers)"] == first["compressed"]


def test_empty_text_and_unknown_run_say_what_to_do(env):
    root, rid = env
    at = page("20000101-000000-nosuch").run()
    assert not at.exception
    assert any("No run '20000101-000000-nosuch'" in w.value for w in at.warning)
    assert at.query_params["run"] == rid  # the newest finished run instead
    at.text_area(key="pg_text").set_value("   ").run()
    assert not at.exception and not at.error
    assert any("Type or paste a text" in i.value for i in at.info)


def test_an_empty_store_explains_the_next_step(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNE_STORE_DIR", str(tmp_path))
    monkeypatch.setenv("PRUNE_CACHE_DIR", str(tmp_path / "cache"))  # no cached teacher either
    at = page().run()
    assert not at.exception
    assert any("Nothing to play with yet" in i.value for i in at.info)


def test_a_weak_teacher_is_flagged_and_a_stale_one_not_offered(env, tmp_path, monkeypatch):
    """A private cache: the run's teacher made weak (its stored test accuracy the majority-class rate) and a copy
    claiming an older split version, which the page leaves out and says so."""
    import shutil

    from core.data.splits import SPLIT_VERSION
    from core.teacher import check_teacher, teacher_dir

    root, rid = env
    loaded = load_run(RunStore(root), rid)
    key, source = loaded.teacher_key, teacher_dir(loaded.teacher_key)
    monkeypatch.setenv("PRUNE_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copytree(source, teacher_dir(key))
    shutil.copytree(source, teacher_dir("0" * 20))
    meta_path = teacher_dir(key) / "teacher.json"
    meta = json.loads(meta_path.read_text())
    task = loaded.task
    base = check_teacher(meta["metrics"]["test"], task.encoded["train"]["labels"], task.encoded["test"]["labels"],
                         task.label_names, task.max_length)
    meta["metrics"]["test"] |= {"accuracy": base.baseline_accuracy, "macro_f1": base.baseline_macro_f1}
    meta_path.write_text(json.dumps(meta))
    stale = json.loads((teacher_dir("0" * 20) / "teacher.json").read_text()) | {"split_version": SPLIT_VERSION - 1}
    (teacher_dir("0" * 20) / "teacher.json").write_text(json.dumps(stale))

    at = page(f"teacher:{key}").run()
    clean(at)
    assert at.query_params["run"] == f"teacher:{key}"
    assert len(at.selectbox(key="pg_choice").options) == 2  # the run and the weak teacher; not the stale copy
    assert any(c.value.startswith("1 cached teacher is not offered") for c in at.caption)
    [weak] = [w.value for w in at.warning if w.value.startswith("Weak teacher")]
    assert f"{base.baseline_accuracy:.3f} [" in weak and f"majority-class rate {base.baseline_accuracy:.3f}" in weak
    assert "Teacher (12 layers)" in metrics(at)  # still opens
