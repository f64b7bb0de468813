"""Studies: start a grid of pruning runs (datasets x strategies x seeds at one budget) on this machine, and watch
its cells finish.

A study runs in its own worker process (started by the job layer, :mod:`core.jobs.studies`), which walks the cells
of one model, dataset and seed together as a tree and records every cell as an ordinary run. The study id lives in
the URL (``?study=<id>``), so a reload or a second tab re-attaches; a fragment re-reads the store every ``POLL_S``
seconds while the study is active. A study whose worker died is shown as interrupted and can be resumed: its
finished cells are never redone.
"""

from __future__ import annotations

import streamlit as st

from core.config import ConfigError, DataConfig
from core.data.ref import DatasetRef
from core.data.registry import DATASETS
from core.jobs.cancel import cancel_study
from core.jobs.studies import start_study_job, watch_study
from core.pruning.config import strategy_keys
from core.runs import noise
from core.runs.record import ACTIVE
from core.studies import records
from core.studies.config import StudyConfig
from core.studies.execute import start_study
from ui import bounds, cached_store, links, router, state, study_view, theme, widgets

router.ensure_routed()  # a cold server's first deep link runs this file without app.py

POLL_S = 2.0
STUDY_PARAM = "study"

state.init()
widgets.page_header("Studies", "A grid of pruning runs (datasets × strategies × seeds) on this machine. Runs of "
                               "the same dataset and seed share their teacher, signals, oracle and identical "
                               "fine-tunes; every cell becomes an ordinary run on the other pages.")


def _launch(study_id: str, resume: bool = False) -> bool:
    """Start the study's worker through the job layer (it reaps the process and reports a worker that ends
    before the study finishes as interrupted, with the exit code)."""
    try:
        start_study_job(cached_store.store(), study_id, resume=resume)
    except OSError as exc:
        widgets.show_error("Could not start the study's worker process", exc, "Check that Python can be run from "
                           "this server, then press Resume.")
        return False
    return True


def _active(study: records.Study) -> bool:
    """Worth polling: queued (its worker is starting) or running."""
    return study.status in ACTIVE


def _attach(study_id: str) -> None:
    st.query_params[STUDY_PARAM] = study_id


# ------------------------------------------------------------------------------------------ start
def _dataset_options() -> list[str]:
    keys = [k for k, spec in DATASETS.items() if spec.offline]
    return keys + [k for k in state.dataset_options() if k not in keys and DatasetRef.parse(k).is_upload]


def _start_form() -> None:
    model = state.model()
    b = state.budgets()
    options = _dataset_options()
    default_ds = [state.dataset()] if state.dataset() in options else options[:1]
    c1, c2 = st.columns([2, 3])
    datasets = c1.multiselect("Datasets", options, default=default_ds, format_func=state.dataset_label,
                              key="study_datasets", help="The embedded datasets and your uploads (Setup page).")
    strategies = c2.multiselect("Strategies", list(strategy_keys()), default=list(strategy_keys()),
                                format_func=theme.strategy_label, key="study_strategies")
    c = st.columns(6)
    seeds = c[0].multiselect("Seeds", list(range(10)), default=[int(b["seed"])] if int(b["seed"]) < 10 else [0],
                             key="study_seeds")
    rows = bounds.number_input(c[1], "Training rows", DataConfig.BOUNDS["train_cap"], b["train_cap"], 100,
                               key="study_rows")
    layers = bounds.number_input(c[2], "Layers to remove", StudyConfig.BOUNDS["layers_to_remove"],
                                 b["layers_to_remove"], hi=bounds.removable_layers(model), key="study_layers")
    epochs = bounds.number_input(c[3], "Epochs per step", StudyConfig.BOUNDS["step_epochs"], b["step_epochs"], 0.5,
                                 key="study_epochs")
    distill = c[4].toggle("Distillation", value=bool(b["distill"]), key="study_distill")
    kd_epochs = bounds.number_input(c[5], "KD epochs", StudyConfig.BOUNDS["kd_epochs"], b["kd_epochs"], 0.5,
                                    key="study_kd", disabled=not distill)
    name = st.text_input("Name", value="study", key="study_name", help="A label for the study's list and runs.")
    try:
        data = DataConfig(train_cap=int(rows), val_cap=int(b["val_cap"]), test_cap=int(b["test_cap"]),
                          max_length=int(b["max_length"]))
        cfg = StudyConfig(name=name or "study", models=(model,), datasets=tuple(datasets),
                          strategies=tuple(strategies), seeds=tuple(int(s) for s in seeds),
                          layers_to_remove=int(layers), step_epochs=float(epochs), distill=bool(distill),
                          kd_epochs=float(kd_epochs), calibration_size=int(b["calibration_size"]), data=data,
                          precision=str(b["precision"]))
    except ConfigError as exc:
        cfg, problem = None, str(exc)
    else:
        problem = None
    st.caption(f"Model **{state.model_label(model)}** (change it in the sidebar); validation {b['val_cap']:,} rows, "
               f"test {b['test_cap']:,} rows, length {b['max_length']}, precision {b['precision']} (Setup page).")
    if cfg is not None:
        target = cfg.prune_config(model, cfg.datasets[0], cfg.strategies[0], cfg.seeds[0]).to_dict()
        est = study_view.estimate(cached_store.runs(kind="prune"), model, cfg.n_cells, target)
        st.markdown(f"**{cfg.n_cells} cell(s)**: {len(cfg.datasets)} dataset(s) × {len(cfg.strategies)} "
                    f"strateg{'y' if len(cfg.strategies) == 1 else 'ies'} × {len(cfg.seeds)} seed(s). {est.text}")
    else:
        st.warning(f"Not a valid study yet: {problem}")
    if st.button("Start study", type="primary", icon=":material/play_arrow:", key="study_start",
                 disabled=cfg is None):
        _start(cfg)


def _start(cfg: StudyConfig | None) -> None:
    if cfg is None:
        return

    try:
        with st.spinner("Recording the study and fixing the profiles its fusion cells train on…"):
            study = start_study(cached_store.store(), cfg)
    except Exception as exc:  # e.g. a read-only store folder
        widgets.show_error("Could not record the study", exc, f"Check that `{cached_store.shown_root()}` is writable.")
        return
    if _launch(study.id):
        _attach(study.id)
        st.rerun()


# ------------------------------------------------------------------------------------------ watch
def _status_note(study: records.Study) -> None:
    if study.status == "done":
        took = (study.finished_at or study.created_at) - study.created_at
        st.success(f"**Finished** in {took / 60:.1f} min. Its runs are on Compare (pick the study there) and on "
                   "every other page.")
    elif study.status == "interrupted":
        st.warning(f"**Interrupted.** {study.error or 'The worker stopped.'} Resume finishes the missing cells; "
                   "finished cells are kept.")
    elif study.status == "failed":
        st.error(f"**Some cells failed.** {study.error or ''} Their runs hold the errors (Live pruning page). "
                 "Resume retries them.")
    elif study.status == "cancelled":
        st.info("**Cancelled.** Finished cells are kept; Resume runs the rest.")
    elif study.status == "queued":
        place = cached_store.job_place("study", study.id)  # waiting for a slot in the store's one queue
        st.progress(0.0, text=place.text if place else "Queued: the worker process is starting…")


def _resume(study_id: str) -> None:
    if _launch(study_id, resume=True):
        st.toast("Resumed: the worker skips the finished cells.")


def _cancel(study_id: str) -> None:
    cancel_study(cached_store.store(), study_id)
    st.toast("Cancel requested: running cells stop within one training batch.")


def panel(study_id: str, polling: bool) -> None:
    store = cached_store.store()
    try:
        study = watch_study(store, study_id)
    except KeyError:
        st.error(f"Study {study_id} is not in the store at `{cached_store.shown_root()}`. Pick another study above.")
        return
    cells = records.cell_table(store, study)
    c = study_view.counts(cells)
    head, buttons = st.columns([5, 2])
    head.markdown(f"### {widgets.STATUS_ICONS.get(study.status, '')} {study.name}")
    cfg = study.config
    head.caption(f"Study `{study.id}` · {', '.join(cfg.models)} · {cfg.data.train_cap:,} training rows · remove "
                 f"{cfg.layers_to_remove} layer(s), {cfg.step_epochs:g} epoch(s)/step"
                 + (f" · then KD {cfg.kd_epochs:g} epoch(s)" if cfg.distill else " · no KD")
                 + (f" · executor {study.executor}" if study.executor else ""))
    if study.status in ACTIVE:
        buttons.button("Cancel", key="study_cancel", on_click=_cancel, args=(study.id,),
                       disabled=study.cancel_requested, help="Running cells stop within one training batch; "
                                                             "finished cells are kept.")
    elif c["done"] < c["total"]:
        buttons.button("Resume", key="study_resume", type="primary", on_click=_resume, args=(study.id,),
                       icon=":material/replay:", help="Start the worker again; finished cells are skipped.")
    _status_note(study)
    m = st.columns(4)
    m[0].metric("Done", f"{c['done']} / {c['total']}")
    m[1].metric("Running", c["running"])
    m[2].metric("Waiting", c["waiting"])
    m[3].metric("Failed or stopped", c["failed"])
    st.progress(study_view.fraction_done(c), text=f"{c['done']} of {c['total']} cells finished")
    rows = study_view.cell_rows(cells, state.dataset_label)
    finals = {}
    for run_id in cells.loc[cells["status"] == "done", "run_id"].dropna() if not cells.empty else []:
        run = cached_store.get_run(run_id)
        if run is not None:
            finals[run_id] = cached_store.final_intervals(run)
    rows = study_view.with_results(rows, finals)
    st.dataframe(study_view.styled(rows), hide_index=True, key="study_cells",
                 column_config={"step": st.column_config.NumberColumn("step", format="%d"),
                                "run": st.column_config.TextColumn("run id")})
    seeds = study_view.over_seeds_table(cells, finals, state.dataset_label)
    if not seeds.empty:
        st.dataframe(seeds, hide_index=True, key="study_seeds")
    st.caption("Final accuracy: after distillation when it ran. " + noise.METHOD_NOTE + " Over seeds: the mean "
               "with a Student-t 95 % interval and the spread (sd) of the seeds. Which strategy is ahead, with "
               "paired intervals: the Compare page (pick this study there).")
    if _active(study) != polling:
        st.rerun()  # switch the whole page between polling and the finished view (Resume, finish, cancel)


def _pick(studies: list[records.Study]) -> None:
    if not studies:
        return
    by_id = {s.id: s for s in studies}
    current = st.query_params.get(STUDY_PARAM)
    st.session_state["study_pick"] = current if current in by_id else None
    st.selectbox("Open a study", list(by_id), key="study_pick", placeholder="pick a study",
                 format_func=lambda i: study_view.study_label(by_id[i]),
                 on_change=lambda: _attach(st.session_state["study_pick"]) if st.session_state["study_pick"] else None)
    with st.expander(f"All studies ({len(studies)})"):
        st.dataframe(study_view.studies_frame(studies), hide_index=True)


try:
    studies = records.list_studies(cached_store.store())
except Exception as exc:  # an unreadable store: say so instead of a traceback
    widgets.show_error("Could not read the studies from the run store", exc, f"Check `{cached_store.shown_root()}`.")
    router.stop_page()
attached = st.query_params.get(STUDY_PARAM)

with st.expander("Start a new study", expanded=not attached, key=links.advanced_key("study_start")):
    _start_form()

_pick(studies)

if not attached:
    if not studies:
        widgets.empty_state("No study yet: pick datasets and strategies above and press Start study. A study of "
                            "the tiny model on the keywords task finishes in minutes; the 18-strategy e5-small "
                            "grid takes hours on two cores.")
    router.stop_page()

try:
    polling = _active(watch_study(cached_store.store(), attached))
except KeyError:
    polling = False
st.fragment(panel, run_every=POLL_S if polling else None)(attached, polling)
