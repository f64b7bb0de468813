"""Number widgets whose range is the one a config declares (``BOUNDS`` on each config class, see
:class:`core.config.Bound`): a page names the config field, never retypes its range."""

from __future__ import annotations

from typing import Any

from core.config import Bound
from core.models.registry import MODELS


def widget_range(bound: Bound, hi: float | None = None) -> tuple[float | None, float | None]:
    """(min, max) for a widget of ``bound``: the declared range, its top lowered to ``hi`` when given (e.g. the
    selected model's depth), cast to the field's kind."""
    cast = int if bound.kind == "int" else float
    top = bound.hi if hi is None else (hi if bound.hi is None else min(bound.hi, hi))
    if top is not None and bound.lo is not None:
        top = max(top, bound.lo)  # a cap below the declared minimum leaves only the minimum
    return (None if bound.lo is None else cast(bound.lo)), (None if top is None else cast(top))


def number_input(where: Any, label: str, bound: Bound, value: float, step: float | None = None, *,
                 hi: float | None = None, **kwargs: Any) -> Any:
    """``where.number_input`` (``where`` is ``st`` or a column) over ``bound``'s range; ``value`` is moved into
    the range, so a budget set for a deeper model does not break the widget of a shallower one."""
    cast = int if bound.kind == "int" else float
    lo, top = widget_range(bound, hi)
    start = cast(value)
    if lo is not None:
        start = max(start, lo)
    if top is not None:
        start = min(start, top)
    return where.number_input(label, lo, top, start, None if step is None else cast(step), **kwargs)


def removable_layers(model_key: str) -> int | None:
    """How many layers a run may remove from a registry model (all but one); ``None`` for a hub model whose depth
    is not known here (the config's own bound applies)."""
    spec = MODELS.get(model_key)
    return spec.num_layers - 1 if spec is not None and spec.num_layers else None
