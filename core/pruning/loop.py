"""Iterative layer pruning (arXiv 2501.03273) of one run, as a generator of events.

Each step: compute the twelve signals (one instrumented pass) and the oracle (prefix-cached) for the
remaining layers, let the strategy pick a layer, remove it, fine-tune, evaluate. After the last step the
pruned model is distilled from the unpruned teacher. A single run is the shared tree of
:mod:`core.pruning.tree` with one strategy in it, so a run alone and a run inside a study go through the
same code. :func:`prune_events` yields one :class:`Event` per sub-stage (and per training batch), so a caller
can draw progress and stop between batches; it never touches the run store
(:func:`core.jobs.execute.execute_run` records the events).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import torch

from core.pruning.config import PruneConfig
from core.pruning.tree import TreeWalk
from core.runs.events import Event


def prune_events(cfg: PruneConfig, *, run_id: str = "", profiles: pd.DataFrame | None = None,
                 device: torch.device | None = None, dataset: Any = None) -> Iterator[Event]:
    """Run the whole method for one strategy, yielding its events. ``profiles`` are earlier runs' (signals +
    oracle) rows for the fusion rankers; ``dataset`` may be a loaded upload instead of ``cfg.dataset``."""
    for _, ev in TreeWalk([cfg], [run_id], profiles=profiles, device=device, dataset=dataset).events():
        yield ev
