"""Layer pruning of BERT: importance signals, fusion rankers, iterative pruning, distillation, FFN merging.

A UI-free library: nothing here imports streamlit. Entry points: ``python -m core --help``.
"""

__version__ = "0.1.0"
