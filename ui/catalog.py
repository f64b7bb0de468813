"""What the engine offers, read from its registries: signals, strategies, models, datasets.

Each accessor returns plain data and never raises for a missing or broken engine module: it returns an
empty result plus a message (``CatalogError``) that a page shows with ``st.error``. Names and families come
from the registries only (``core.signals.SIGNALS`` and friends), so nothing about a signal is written
twice.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

FUSION_LABELS = {"rf_fusion": "Random-forest fusion", "lr_fusion": "Linear-regression fusion"}
ORACLE_LABEL = "Oracle (measured best)"


class CatalogError(RuntimeError):
    """An engine module the page needs is missing or failed to import; the message says what to do."""


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except Exception as exc:  # a missing or half-written module must not kill the page
        raise CatalogError(f"The engine module `{name}` is not available ({type(exc).__name__}: {exc}). "
                           "Update the checkout or reinstall the requirements, then reload the page.") from exc


def normalise_family(family: str) -> str:
    """``"Mutual information"`` / ``"mutual-information"`` -> ``"mutual_information"``."""
    return str(family).strip().lower().replace("-", "_").replace(" ", "_")


@dataclass(frozen=True)
class SignalEntry:
    """The registry entry of one signal, as the pages use it."""

    key: str
    display_name: str
    family: str
    formula_latex: str
    direction: str
    intuition: str
    needs: tuple[str, ...]
    origin: str
    note: str = ""
    reference: str = ""


@lru_cache(maxsize=1)
def _signal_module() -> Any:
    return _import("core.signals")


def _entry(key: str, info: Any) -> SignalEntry:
    needs = getattr(info, "needs", ())
    needs = (needs,) if isinstance(needs, str) else tuple(sorted(str(n) for n in needs))
    return SignalEntry(key=key, display_name=str(getattr(info, "display_name", key)),
                       family=normalise_family(getattr(info, "family", "other")),
                       formula_latex=str(getattr(info, "formula_latex", "")),
                       direction=str(getattr(info, "direction", "")),
                       intuition=str(getattr(info, "intuition", "")), needs=needs,
                       origin=str(getattr(info, "origin", "")), note=str(getattr(info, "note", "") or ""),
                       reference=str(getattr(info, "reference", "") or ""))


@lru_cache(maxsize=1)
def _signal_entries() -> tuple[dict[str, SignalEntry], dict[str, SignalEntry]]:
    mod = _signal_module()
    base = getattr(mod, "BASELINES", None)
    baselines_ = ({key: _entry(key, info) for key, info in base.items() if not isinstance(info, str)}
                  if isinstance(base, dict) else {})
    return {key: _entry(key, info) for key, info in mod.SIGNALS.items()}, baselines_


def signals() -> dict[str, SignalEntry]:
    """Every signal of ``core.signals.SIGNALS``, in registry order. Raises :class:`CatalogError`."""
    return dict(_signal_entries()[0])


def baseline_entries() -> dict[str, SignalEntry]:
    """The baselines' registry entries (``core.signals.BASELINES``), when the registry describes them."""
    return dict(_signal_entries()[1])


def signal_keys() -> list[str]:
    try:
        return list(getattr(_signal_module(), "SIGNAL_KEYS", None) or signals())
    except CatalogError:
        return []


def families() -> list[str]:
    """Signal families in registry order."""
    try:
        fams = getattr(_signal_module(), "FAMILIES", None)
    except CatalogError:
        return []
    if fams:
        return [normalise_family(f) for f in fams]
    seen: list[str] = []
    for entry in signals().values():
        if entry.family not in seen:
            seen.append(entry.family)
    return seen


def baselines() -> list[str]:
    """Baseline strategy keys (``core.signals.BASELINES``); empty while the registry is unavailable."""
    try:
        return list(getattr(_signal_module(), "BASELINES", None) or ())
    except CatalogError:
        return []


def strategy_keys() -> list[str]:
    """Every pruning strategy the engine accepts (``core.pruning.loop.strategy_keys``)."""
    return list(_import("core.pruning.loop").strategy_keys())


def strategy_family(key: str) -> str:
    """The colour group of a strategy: a signal's family, or baseline / oracle / fusion."""
    if key in FUSION_LABELS:
        return "fusion"
    if key == "oracle":
        return "oracle"
    if key in baselines():
        return "baseline"
    try:
        entry = signals().get(key)
    except CatalogError:
        entry = None
    if entry is not None:
        return entry.family
    return "other"


def strategy_label(key: str) -> str:
    if key in FUSION_LABELS:
        return FUSION_LABELS[key]
    if key == "oracle":
        return ORACLE_LABEL
    try:
        entry = signals().get(key) or baseline_entries().get(key)
    except CatalogError:
        entry = None
    if entry is not None:
        return entry.display_name
    return key.replace("_", " ").capitalize()


def signal_label(key: str) -> str:
    return strategy_label(key)


# ------------------------------------------------------------------------------------------ models
def models() -> dict[str, Any]:
    """``core.models.registry.MODELS`` (key -> ModelSpec)."""
    return dict(_import("core.models.registry").MODELS)


def default_model() -> str:
    return str(getattr(_import("core.models.registry"), "DEFAULT_MODEL", "e5-small"))


# ---------------------------------------------------------------------------------------- datasets
def datasets() -> dict[str, Any]:
    """``core.data.datasets.DATASETS`` (key -> DatasetSpec). Raises :class:`CatalogError` until it exists."""
    return dict(_import("core.data.datasets").DATASETS)


def default_dataset() -> str:
    try:
        return str(getattr(_import("core.data.datasets"), "DEFAULT_DATASET", "trec"))
    except CatalogError:
        return "trec"


def dataset_label(key: str) -> str:
    if key.startswith("upload:"):
        return f"uploaded ({key.split(':', 1)[1][:8]})"
    try:
        spec = datasets().get(key)
    except CatalogError:
        spec = None
    return str(getattr(spec, "display_name", key)) if spec is not None else key
