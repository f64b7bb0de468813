"""Layer-importance signals of arXiv 2501.03273: a registry that explains each one, and one instrumented
pass that computes all twelve (plus the block-influence baseline) for every remaining layer.

>>> from core.signals import compute_signals, rank_layers, SIGNALS
>>> table = compute_signals(model, batches)            # one row per remaining layer
>>> rank_layers(table, "gradient_fisher")              # original layer indices, pruned first ... last
"""

from core.signals.compute import DEFAULT_COLUMNS, collect, compute_signals, instrumented, rank_layers
from core.signals.registry import (
    BASELINES,
    FAMILIES,
    SIGNAL_KEYS,
    SIGNALS,
    STRATEGIES,
    SignalInfo,
    get_info,
    signals_markdown,
)

__all__ = ["BASELINES", "DEFAULT_COLUMNS", "FAMILIES", "SIGNAL_KEYS", "SIGNALS", "STRATEGIES", "SignalInfo",
           "collect", "compute_signals", "get_info", "instrumented", "rank_layers", "signals_markdown"]
