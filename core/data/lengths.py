"""How long a dataset's texts are: in a model's tokens (what ``max_length`` truncates) or in words.

Counting tokenises a seeded sample of the texts with :func:`core.data.truncation.token_counts` (no truncation,
special tokens included: the counts ``max_length="auto"`` is chosen from), as the model sees them before they are
cut to ``max_length``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from core.data.truncation import token_counts

#: texts tokenised to draw a length distribution (a sample: tokenising 100k reviews would take minutes)
LENGTH_SAMPLE = 2000


def sample_texts(texts: pd.Series, sample: int = LENGTH_SAMPLE, seed: int = 0) -> list[str]:
    """A seeded sample of at most ``sample`` texts (all of them when there are fewer)."""
    return texts.astype(str).sample(min(sample, len(texts)), random_state=seed).tolist()


def token_lengths(tokenizer: Any, texts: pd.Series, sample: int = LENGTH_SAMPLE, seed: int = 0) -> pd.Series:
    """Tokens per text (special tokens included, nothing truncated) over :func:`sample_texts`."""
    return pd.Series(token_counts(tokenizer, sample_texts(texts, sample, seed)), name="tokens")


def word_lengths(texts: pd.Series) -> pd.Series:
    """Words (whitespace-separated) per text: the fallback when no tokenizer is at hand."""
    return texts.astype(str).str.split().str.len()


def truncated_share(lengths: pd.Series, max_length: int) -> float:
    """The share of texts longer than ``max_length`` tokens, which the model sees cut."""
    return float((lengths > max_length).mean()) if len(lengths) else 0.0
