"""Playground: one text through a finished run's teacher and compressed model, teacher layers switched off by hand,
the prediction read layer by layer, and what the compressed model gets wrong on the run's test split.

Thin: models are opened by :mod:`core.playground` (kept in ``st.cache_resource``), the error analysis is computed
there (kept in the run's folder and in ``st.cache_data``), figures come from :mod:`ui.playground_plots`."""

from __future__ import annotations

import random
from functools import partial

import pandas as pd
import streamlit as st

from core.playground import (
    CHANGE_DEFINITION,
    LENS_DEFINITION,
    PlaygroundError,
    compare,
    error_analysis,
    load_run,
    load_teacher,
    playable_runs,
    stale_note,
    teachers_offered,
    trace,
)
from core.runs.store import RunStore
from ui import cached_store as ustore
from ui import links, recorded_play, router, state, widgets
from ui import playground_plots as plots

router.ensure_routed()  # a cold server's first deep link runs this file without app.py

TEACHER_PREFIX = "teacher:"
TEXT_KEY = "pg_text"
EXAMPLE_KEY = "pg_example"  # (text, true class) of the example drawn from the test split
FLIP_ROWS_KEY = "pg_flip_rows"


@st.cache_resource(show_spinner=False, max_entries=3)
def _open(root: str, choice: str):
    """A run's models and task (or a cached teacher alone), loaded once per server."""
    store = RunStore(root)
    if choice.startswith(TEACHER_PREFIX):
        return load_teacher(choice[len(TEACHER_PREFIX):], store)
    return load_run(store, choice)


@st.cache_data(show_spinner=False, max_entries=8)
def _errors(root: str, run_id: str):
    return error_analysis(RunStore(root), _open(root, run_id))


def _set_text(text: str, label: str | None) -> None:
    st.session_state[TEXT_KEY] = text
    st.session_state[EXAMPLE_KEY] = (text, label) if label is not None else None


def _draw_example(frame: pd.DataFrame, label_names: tuple[str, ...]) -> None:
    row = frame.iloc[random.randrange(len(frame))]
    _set_text(str(row["text"]), str(label_names[int(row["label"])]))


def _open_flip(key: str) -> None:
    """Load the flipped example chosen in the selectbox (or clicked in the table) into the text box."""
    rows = st.session_state.get(FLIP_ROWS_KEY) or []
    if key.startswith("pg_flip_table"):
        picked = st.session_state[key].selection.rows
        index = picked[0] if picked else None
    else:
        index = st.session_state[key]
    if index is not None and 0 <= index < len(rows):
        _set_text(*rows[index])


state.init()
widgets.page_header("Playground", "Type a sentence, switch layers off, and see what the pruned model now gets "
                                  "wrong.")

root = ustore.root()
store = ustore.store()
runs = playable_runs(store)
teachers, stale = teachers_offered()  # the cache read once per rerun
if note := stale_note(stale):  # teachers of older splits are left out: say so
    st.caption(note)
choices = [r.id for r in runs] + [TEACHER_PREFIX + t.key for t in teachers]
labels = {r.id: widgets.run_label(r) for r in runs} | {TEACHER_PREFIX + t.key: t.label for t in teachers}
if not choices:
    if not recorded_play.offer("Nothing of your own to play with yet: rerun a recorded run here"):
        widgets.empty_state("Nothing to play with yet: the playground opens a finished pruning or merging run (or a "
                            "fine-tuned teacher). Start a run on the Live pruning page; the tiny demo finishes in "
                            "about a minute.", widgets.LIVE_PAGE, "Live pruning")
    router.stop_page()

asked = widgets.query_run_ids()
if asked and asked[0] not in choices:
    try:  # say why this run cannot open (unknown, another kind, no model), then show the newest one
        from core.playground import check_run

        check_run(store, asked[0])
        why = f"Run {asked[0]} is not finished."
    except PlaygroundError as exc:
        why = str(exc)
    st.warning(f"{why} Showing the newest finished run instead.")
choice = st.selectbox("Open a finished run, or a teacher alone", choices, format_func=labels.get, key="pg_choice",
                      index=choices.index(asked[0]) if asked and asked[0] in choices else 0)
if widgets.query_run_ids() != [choice]:
    widgets.set_query_runs([choice])
if recorded_play.recorded_runs():
    with st.expander("Recorded runs ship without weights: rerun one here to play with its models",
                     expanded=bool(st.session_state.get(recorded_play.RERUN_KEY))):
        recorded_play.offer("Rerun a recorded run")

try:
    with st.spinner("Loading the models (once per session)…"):
        loaded = _open(root, choice)
except (PlaygroundError, ValueError, RuntimeError, OSError) as exc:
    st.error(f"This cannot be opened: {exc}")
    router.stop_page()
if loaded.weak_note:
    st.warning(loaded.weak_note)

test = loaded.task.splits.test
compressed = loaded.compressed_name
if loaded.run is not None:
    removed = loaded.removed_layers
    st.caption(f"{loaded.title}: the teacher has {len(loaded.teacher_layers)} layers, the {compressed} "
               f"{len(loaded.compressed_layers)}" + (f" (layers {', '.join(map(str, removed))} removed)." if removed
                                                    else " (its feed-forward sublayers merged).")
               + f" Texts are read up to {loaded.max_length} tokens, as in the run.")
else:
    st.caption(f"The {loaded.title}: no compressed model, so only the teacher and your layer switches.")

# ------------------------------------------------------------------------------------------------ the text
if st.session_state.get(TEXT_KEY) is None or st.session_state.get("pg_loaded") != choice:
    st.session_state["pg_loaded"] = choice
    first = test.iloc[0]
    _set_text(str(first["text"]), str(loaded.label_names[int(first["label"])]))

links.text("text", TEXT_KEY)  # ?text= opens this text
st.subheader("Your text")
left, right = st.columns([4, 1], vertical_alignment="bottom")
left.text_area("Type or paste a text", key=TEXT_KEY, height=90)
right.button("Random test example", key="pg_random", on_click=_draw_example, args=(test, loaded.label_names),
             help="Draw a text from the run's test split (its true class is shown)", width="stretch")
text = st.session_state.get(TEXT_KEY) or ""
example = st.session_state.get(EXAMPLE_KEY)
true_label = example[1] if example and example[0] == text else None

layers = loaded.teacher_layers
links.layers_off("off", f"pg_layers_{choice}", layers)  # ?off=3,7 opens with those layers switched off
on = st.pills("Teacher's layers: click one to switch it off", layers, selection_mode="multi", default=layers,
              key=f"pg_layers_{choice}", format_func=lambda i: f"layer {i}")
off = [i for i in layers if i not in (on or [])]
st.caption("A layer switched off is skipped in the teacher's forward pass: exactly what the model with that layer "
           "cut out computes (no retraining), so you feel what the oracle measures when it tries each removal.")
if loaded.run is not None and removed:
    st.caption(f"Tip: switch off layers {', '.join(map(str, removed))} to see the {compressed} as it was before its "
               "fine-tuning.")

if not text.strip():
    st.info("Type or paste a text above (or draw a random test example) to see the predictions.")
    router.stop_page()
if len(off) == len(layers):
    st.warning("Every layer is switched off: switch at least one back on.")
    router.stop_page()

try:
    result = compare(loaded, text, off)
    formed = trace(loaded, text, off)
except PlaygroundError as exc:
    st.warning(str(exc))
    router.stop_page()

# ------------------------------------------------------------------------------------------------ predictions
st.subheader("Predictions")
shown = [("Teacher", result.teacher, plots.TEACHER)]
if result.teacher_off is not None:
    shown.append((f"Teacher without layer{'s' if len(off) > 1 else ''} {', '.join(map(str, off))}",
                  result.teacher_off, plots.TEACHER_OFF))
if result.compressed is not None:
    shown.append((compressed.capitalize(), result.compressed, plots.COMPRESSED))
cols = st.columns(len(shown) + (1 if true_label else 0))
for col, (name, pred, _) in zip(cols, shown):
    col.metric(f"{name} ({len(pred.layers)} layers)", pred.label, f"p = {pred.confidence:.2f}", delta_color="off",
               delta_arrow="off", border=True)
if true_label:
    cols[-1].metric("True class (test split)", true_label, border=True)
if result.agree is not None:
    verdict = "agree" if result.agree else "disagree"
    (st.success if result.agree else st.warning)(f"The teacher and the {compressed} {verdict} on this text.")
if result.truncated:
    kept = "first and last" if loaded.truncation == "head+tail" else "first"
    st.caption(f"This text has {result.text_tokens} tokens; the models read its {kept} {loaded.max_length} "
               "(the run's max length).")
widgets.chart(plots.probability_bars(loaded.label_names, [(n, p.probs, c) for n, p, c in shown]), key="pg_probs")
st.caption("Both models read the same text; each bar is how sure a model is that the text belongs to that class.")

# ------------------------------------------------------------------------------------------------ layer by layer
st.subheader("Inside the teacher, layer by layer")
a, b = st.columns(2, gap="large")
with a:
    widgets.chart(plots.formation_lines(formed.lens, loaded.label_names, off), key="pg_formation")
    st.caption("After each layer we ask the teacher's own classifier what it would answer now: watch the answer "
               "form as the text goes up the layers. " + LENS_DEFINITION)
with b:
    widgets.chart(plots.change_bars(formed.change), key="pg_change")
    st.caption("How much each layer changes this text's token vectors: a layer with a small bar barely changes "
               "them and is the first that Block Influence would cut. " + CHANGE_DEFINITION)

# ------------------------------------------------------------------------------------------------ errors
st.subheader(f"What the {compressed or 'compressed model'} gets wrong")
if loaded.run is None:
    st.info("Open a finished run above to compare its compressed model with the teacher on the whole test split.")
    router.stop_page()
with st.spinner(f"Predicting the {len(test)} test examples with both models (once per run)…"):
    analysis = _errors(root, loaded.run.id)
(st.caption if analysis.matches_stored else st.warning)(analysis.stored_note())
flips = analysis.flip_counts()
m = st.columns(4)
m[0].metric("Teacher accuracy", f"{analysis.accuracy('teacher'):.3f}")
m[1].metric(f"{compressed.capitalize()} accuracy", f"{analysis.accuracy('compressed'):.3f}")
m[2].metric("Lost (teacher right → wrong)", flips["lost"])
m[3].metric("Gained (teacher wrong → right)", flips["gained"])

widgets.chart(plots.confusion_pair(analysis.label_names, analysis.confusion("teacher"),
                                   analysis.confusion("compressed"), compressed), key="pg_confusion")
st.caption("Each row is the true class and each column what the model answered: the diagonal counts what it gets "
           "right, everything else shows which classes it mixes up.")
c1, c2 = st.columns(2, gap="large")
with c1:
    widgets.chart(plots.class_accuracy(analysis.per_class(), compressed), key="pg_per_class")
    st.caption("The share of each class the model gets right; the whiskers are 95 % Wilson intervals, so bars whose "
               "whiskers overlap may differ only by chance.")
with c2:
    widgets.chart(plots.length_accuracy(analysis.by_length(), compressed), key="pg_by_length")
    st.caption("The test texts split into three equal groups by word count: does the compressed model lose more on "
               "long texts?")

st.markdown("**Flipped examples**")
f1, f2 = st.columns([2, 1])
flip_names = {"lost": f"teacher right → {compressed} wrong ({flips['lost']})",
              "gained": f"teacher wrong → {compressed} right ({flips['gained']})"}
direction = f1.segmented_control("Which flips", ["lost", "gained"], default="lost", key="pg_flip_dir",
                                 format_func=flip_names.get)
klass = f2.selectbox("True class", ["all classes", *analysis.label_names], key="pg_flip_class")
table = analysis.flips(direction or "lost", None if klass == "all classes" else klass)
view = f"{direction}_{klass}"  # the table and the picker start afresh when the filter changes
st.session_state[FLIP_ROWS_KEY] = [(str(t), str(c)) for t, c in zip(table["text"], table["class"])]
st.caption("Test examples the two models disagree on being right: what compression cost (or, now and then, fixed). "
           "Click a row, or choose it below, to open it in the playground above.")
if table.empty:
    st.info("No flipped example" + ("" if klass == "all classes" else f" of class {klass}") + " in this direction.")
else:
    st.dataframe(table.drop(columns=["row"]), hide_index=True, on_select=partial(_open_flip, f"pg_flip_table_{view}"),
                 selection_mode="single-row", key=f"pg_flip_table_{view}",
                 column_config={"teacher_conf": st.column_config.NumberColumn("teacher p", format="%.2f"),
                                "compressed_conf": st.column_config.NumberColumn(f"{compressed} p", format="%.2f"),
                                "text": st.column_config.TextColumn("text", width="large")})
    st.selectbox("Open a flipped example in the playground", list(range(len(table))), index=None,
                 key=f"pg_flip_pick_{view}", placeholder="choose an example", on_change=_open_flip,
                 args=(f"pg_flip_pick_{view}",),
                 format_func=lambda i: f"[{table['class'].iloc[i]} → {table['compressed'].iloc[i]}] "
                                       f"{str(table['text'].iloc[i])[:90]}")
