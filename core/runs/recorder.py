"""Writing a run's events into the store: the event log, and what an event carries (per-step tables, the step's
choice and profile, the finished step's row, the summary and the final model) under the names of
:mod:`core.runs.artifacts`. Whoever consumes a run's events records them through :func:`record_event` (the
job layer's :func:`core.jobs.execute.execute_run`, a study's driver)."""

from __future__ import annotations

from core.models.surgery import save_model
from core.runs import artifacts
from core.runs.events import Event, Stage
from core.runs.store import RunStore


def _step(ev: Event) -> int:
    if ev.step is None:
        raise ValueError(f"a {ev.stage} event that carries tables or a step record needs its step")
    return ev.step


def record_event(store: RunStore, run_id: str, ev: Event) -> None:
    """Write one event (and the tables/artifacts it carries) to the store."""
    for name, frame in ev.tables.items():
        store.write_table(run_id, artifacts.step_table(_step(ev), name), frame)
    payload = ev.payload
    if ev.stage == Stage.CHOICE:
        store.write_json(run_id, artifacts.step_choice(_step(ev)), ev.payload)
        profile = ev.tables.get(artifacts.PROFILE_TABLE)
        if profile is not None:
            store.add_profile(run_id, _step(ev), profile["model"].iloc[0], profile["dataset"].iloc[0], profile)
        payload = {"layer": ev.payload.get("layer")}
    elif ev.stage == Stage.STEP_DONE:
        store.add_step(run_id, _step(ev), ev.payload)
    elif ev.stage == Stage.DONE:
        model = ev.artifacts.get("model")
        if model is not None:
            save_model(model, ev.artifacts.get("tokenizer"), store.run_dir(run_id) / artifacts.MODEL_DIR)
        store.write_json(run_id, artifacts.SUMMARY, ev.payload)
    store.add_event(run_id, ev.stage, step=ev.step, progress=ev.progress, message=ev.message, payload=payload)
