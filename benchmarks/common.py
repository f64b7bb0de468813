"""What several benchmarks share: a model that loads here (with a fallback) and seeded synthetic text."""

from __future__ import annotations

import random
from typing import Any

from torch import nn

from core.models.registry import load_classifier, load_tokenizer
from core.models.tiny import TINY_WORDS


def synthetic_texts(n: int, words: int = 48, seed: int = 0) -> list[str]:
    """``n`` seeded random English sentences of ``words`` words (long enough to fill 32 tokens)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(TINY_WORDS) for _ in range(words)) for _ in range(n)]


def load_bench_model(name: str, num_labels: int) -> tuple[nn.Module, Any, str]:
    """Model + tokenizer for a benchmark; falls back to MiniLM-L6 when the requested model is unavailable
    (returns the key actually used)."""
    try:
        return load_classifier(name, num_labels), load_tokenizer(name), name
    except Exception as exc:  # converter missing, offline hub id, ...: say so and fall back
        if name == "minilm-l6":
            raise
        print(f"note: {name} unavailable ({type(exc).__name__}: {str(exc)[:160]}); using minilm-l6")
        return load_classifier("minilm-l6", num_labels), load_tokenizer("minilm-l6"), "minilm-l6"
