"""The user's run store with the recorded pack's runs after the user's own (:class:`StoreWithPack`): reads of a
recorded run go to the pack (:class:`core.runs.pack.Pack`), writes to one raise :class:`ReadOnlyRunError`. This is
the store the app opens (:mod:`ui.cached_store`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from core.jsontypes import JSONValue
from core.runs.events import StoredEvent
from core.runs.pack import Pack
from core.runs.record import Run
from core.runs.store import RunStore


class ReadOnlyRunError(RuntimeError):
    """A write (delete, cancel, event, artifact) aimed at a recorded run: the pack is read-only."""


class StoreWithPack(RunStore):
    """The user's run store (``root``) with the recorded runs of ``pack`` after the user's own: every read of a
    recorded run goes to the pack, every write to one raises :class:`ReadOnlyRunError`. New runs, studies and jobs
    go to the user's store as before. A user run with a pack run's id hides the pack's."""

    def __init__(self, root: Path | str | None, pack: Pack | None) -> None:
        super().__init__(root)
        self.pack = pack
        with self.connection() as con:
            own = {r[0] for r in con.execute("SELECT id FROM runs")}
        self._recorded = (pack.ids - own) if pack is not None else set()

    def is_recorded(self, run_id: str) -> bool:
        return run_id in self._recorded

    def _pack_of(self, run_id: str) -> Pack | None:
        return self.pack if run_id in self._recorded else None

    def _refuse(self, run_id: str, what: str) -> None:
        if run_id in self._recorded:
            raise ReadOnlyRunError(f"run {run_id} is a recorded run shipped with the app: it cannot be {what}")

    # ------------------------------------------------------------------ reads
    def list_runs(self, *, kind: str | None = None, status: str | None = None, model: str | None = None,
                  dataset: str | None = None) -> list[Run]:
        own = super().list_runs(kind=kind, status=status, model=model, dataset=dataset)
        if self.pack is None:
            return own
        recorded = self.pack.list_runs(kind=kind, status=status, model=model, dataset=dataset)
        return own + [r for r in recorded if r.id in self._recorded]

    def own_runs(self, **filters: Any) -> list[Run]:
        """The user's runs only (what the store itself holds)."""
        return super().list_runs(**filters)

    def get_run(self, run_id: str, check: bool = True) -> Run | None:
        pack = self._pack_of(run_id)
        return pack.get_run(run_id) if pack is not None else super().get_run(run_id, check)

    def steps(self, run_id: str) -> pd.DataFrame:
        pack = self._pack_of(run_id)
        return pack.steps(run_id) if pack is not None else super().steps(run_id)

    def all_steps(self, run_ids: list[str] | None = None) -> pd.DataFrame:
        own = super().all_steps(run_ids)
        if self.pack is None:
            return own
        ids = sorted(self._recorded) if run_ids is None else [i for i in run_ids if i in self._recorded]
        recorded = self.pack.all_steps(ids)
        return pd.concat([f for f in (own, recorded) if not f.empty], ignore_index=True) \
            if not (own.empty and recorded.empty) else own

    def profiles(self, model: str | None = None, *, with_recorded: bool = False) -> pd.DataFrame:
        """The user's profile rows; with the recorded runs' too when ``with_recorded`` (for pages to show). Fusion's
        training rows (:func:`core.fusion.bank.training_profiles`) never take the pack's: a run or study started here
        learns from the same rows whether a pack ships or not."""
        own = super().profiles(model)
        if self.pack is None or not with_recorded:
            return own
        recorded = self.pack.profiles(model)
        if not recorded.empty:
            recorded = recorded[recorded["run_id"].isin(self._recorded)]
        frames = [f for f in (own, recorded) if not f.empty]
        return pd.concat(frames, ignore_index=True) if frames else own

    def events(self, run_id: str, after: int = -1) -> list[StoredEvent]:
        pack = self._pack_of(run_id)
        return pack.events(run_id, after) if pack is not None else super().events(run_id, after)

    def last_event(self, run_id: str) -> StoredEvent | None:
        pack = self._pack_of(run_id)
        return pack.last_event(run_id) if pack is not None else super().last_event(run_id)

    def run_dir(self, run_id: str) -> Path:
        pack = self._pack_of(run_id)
        return pack.run_dir(run_id) if pack is not None else super().run_dir(run_id)

    # ------------------------------------------------------------------ writes: never to a recorded run
    def delete_run(self, run_id: str) -> None:
        self._refuse(run_id, "deleted")
        super().delete_run(run_id)

    def request_cancel(self, run_id: str) -> None:
        self._refuse(run_id, "cancelled")
        super().request_cancel(run_id)

    def update_summary(self, run_id: str, fields: Mapping[str, JSONValue]) -> None:
        self._refuse(run_id, "changed")
        super().update_summary(run_id, fields)

    def add_event(self, run_id: str, stage: str, *, step: int | None = None, progress: float | None = None,
                  message: str = "", payload: Mapping[str, JSONValue] | None = None) -> int:
        self._refuse(run_id, "changed")
        return super().add_event(run_id, stage, step=step, progress=progress, message=message, payload=payload)

    def write_json(self, run_id: str, relpath: str, obj: Any) -> Path:
        self._refuse(run_id, "written to")
        return super().write_json(run_id, relpath, obj)

    def write_table(self, run_id: str, relpath: str, frame: pd.DataFrame) -> Path:
        self._refuse(run_id, "written to")
        return super().write_table(run_id, relpath, frame)
