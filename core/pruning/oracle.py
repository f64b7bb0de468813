"""The oracle as pruning sees it: re-exported from :mod:`core.oracle` (a measurement both pruning and merging use)
and :mod:`core.models.forward` (the forward pass in pieces it restarts from each layer's input)."""

from core.models.forward import embed, forward_logits, head_logits, run_layers
from core.oracle import COLUMNS, Progress, best_layer, compute_oracle, naive_oracle

__all__ = ["COLUMNS", "Progress", "best_layer", "compute_oracle", "embed", "forward_logits", "head_logits",
           "naive_oracle", "run_layers"]
