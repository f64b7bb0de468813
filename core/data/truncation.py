"""How long a sequence the model sees, and what of a longer text it keeps.

* **The length.** ``DataConfig.max_length`` is a number of tokens or ``"auto"``: the :data:`AUTO_PERCENTILE` th
  percentile of the training texts' token counts (special tokens included; *our default*, stated wherever the
  choice is shown), rounded up to a multiple of 8, at least :data:`MIN_AUTO_LENGTH`, at most
  ``DataConfig.max_auto_length`` (a cost budget: compute per training step grows about linearly with the length,
  :func:`relative_cost`) and at most what the model's position embeddings allow. :func:`choose_length` returns a
  :class:`LengthChoice` that says what was chosen, why, and what share of the texts is cut; it travels with the
  task (``Task.length``) and the resolved length is part of the task's fingerprint.
* **Truncation.** ``head`` keeps a long text's first tokens (what a tokenizer's ``truncation=True`` does);
  ``head+tail`` keeps its first and last tokens, the special tokens (``[CLS]``/``[SEP]``, ``<s>``/``</s>``) staying
  where the model expects them. Sun et al., 2019, "How to Fine-Tune BERT for Text Classification?" found
  head+tail (the first 128 and the last 382 of 510 tokens) best on long IMDb reviews; :data:`HEAD_SHARE` keeps
  their proportion of head to tail at every length.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.config import AUTO_LENGTH, DataConfig
from core.data.batches import HEAD_SHARE, encode_head_tail, head_tail, make_splits, special_token_frame  # noqa: F401 (re-exported)
from core.data.registry import DATASETS, DatasetRef
from core.jsontypes import JSONObject

#: ``max_length="auto"`` covers this percentile of the training texts' token counts (our default)
AUTO_PERCENTILE = 95.0
#: the shortest length "auto" chooses (a set of one-word texts still gets room for a few tokens)
MIN_AUTO_LENGTH = 16
#: the longest sequence a BERT-family model's position embeddings take
MODEL_MAX_POSITIONS = 512
#: the length that :func:`relative_cost` compares with: the paper's (and the embedded datasets' default)
COST_REFERENCE_LENGTH = 32
#: a refusal names truncation first when more than this share of the training texts was cut
MOSTLY_TRUNCATED = 0.5


def relative_cost(length: int, reference: int = COST_REFERENCE_LENGTH) -> float:
    """Compute per training step at ``length`` tokens relative to ``reference`` tokens, taken as linear in the
    length (the per-token cost of the dense layers dominates attention's quadratic term at these lengths: for
    e5-small's width 384 the quadratic part adds about a fifth at 512 tokens). Batches are trimmed to their
    longest real text, so a set of short texts costs less than this."""
    return float(length) / float(reference)


def token_counts(tokenizer: Any, texts: pd.Series | Sequence[str]) -> np.ndarray:
    """Tokens per text (special tokens included, nothing truncated), for every text given: the counts the length
    is chosen from (the Setup page's histogram, :mod:`core.data.lengths`, counts a sample the same way)."""
    values = [str(t) for t in (texts.tolist() if isinstance(texts, pd.Series) else texts)]
    if not values:
        return np.zeros(0, dtype=np.int64)
    enc = tokenizer(values, add_special_tokens=True, truncation=False, verbose=False)
    return np.fromiter((len(ids) for ids in enc["input_ids"]), dtype=np.int64, count=len(values))


def model_length_limit(tokenizer: Any | None) -> int:
    """The longest length the model takes: 512, or the tokenizer's ``model_max_length`` when it is smaller."""
    limit = getattr(tokenizer, "model_max_length", None) if tokenizer is not None else None
    if isinstance(limit, int) and 8 <= limit < MODEL_MAX_POSITIONS:
        return limit
    return MODEL_MAX_POSITIONS


def percentile_length(counts: np.ndarray | Sequence[int], percentile: float = AUTO_PERCENTILE) -> int:
    """The smallest token count that at least ``percentile`` % of the texts fit in (0 for no texts)."""
    arr = np.asarray(counts, dtype=np.int64)
    if arr.size == 0:
        return 0
    return int(np.percentile(arr, percentile, method="inverted_cdf"))


def _round_up(value: int, step: int = 8) -> int:
    return int(math.ceil(value / step) * step)


@dataclass(frozen=True)
class LengthChoice:
    """The sequence length a task uses, why, and what it costs in cut texts.

    ``requested`` is ``DataConfig.max_length`` as given (a number or ``"auto"``), ``length`` the length used.
    ``needed`` is the :data:`AUTO_PERCENTILE` th percentile of the training texts' token counts (what would cover
    them), ``cap`` the cost budget ``max_auto_length`` and ``limit`` the model's own limit. ``truncated`` is the
    share of the ``n_texts`` training texts longer than ``length``; ``truncation`` what is kept of them."""

    requested: int | str
    length: int
    needed: int
    cap: int
    limit: int
    truncated: float
    n_texts: int
    median: int
    truncation: str = "head"
    percentile: float = AUTO_PERCENTILE
    #: the share of the training texts that fit whole in :attr:`cover_length`
    cover_share: float = 1.0

    @property
    def auto(self) -> bool:
        return self.requested == AUTO_LENGTH

    @property
    def covered(self) -> float:
        """Share of the training texts that fit whole."""
        return 1.0 - self.truncated

    @property
    def mostly_truncated(self) -> bool:
        return self.truncated > MOSTLY_TRUNCATED

    @property
    def capped(self) -> bool:
        """Whether the cost budget (or the model's limit) kept the length below what would cover the texts."""
        return self.length < _cover_length(self.needed, self.limit)

    @property
    def cover_length(self) -> int:
        """The length that would cover :attr:`percentile` % of the texts (within the model's limit)."""
        return _cover_length(self.needed, self.limit)

    def cost_factor(self, length: int | None = None) -> float:
        """Compute per step at ``length`` (default: the cover length) relative to this choice's length."""
        return relative_cost(self.cover_length if length is None else length, self.length)

    def reason(self) -> str:
        """Why this length, in one sentence."""
        pct = f"{self.percentile:g}th percentile"
        if not self.auto:
            return (f"set to {self.length} (auto would choose {self.auto_would_choose()}: the {pct} of the "
                    f"training texts' token counts is {self.needed})")
        if self.n_texts == 0:
            return "auto, with no training text to measure: the shortest auto length"
        why = f"auto: the {pct} of the {self.n_texts:,} training texts' token counts is {self.needed}"
        if self.cap < min(_round_up(max(self.needed, MIN_AUTO_LENGTH)), self.limit):
            return (f"{why}, capped by the cost budget max_auto_length={self.cap} (length {self.cover_length} would "
                    f"cover {self.cover_share:.0%} of them at about {self.cost_factor():.1f}x the compute per step)")
        if self.needed > self.limit:
            return f"{why}, capped at the model's limit of {self.limit} tokens"
        return f"{why}, rounded up to a multiple of 8 (our default percentile)"

    def auto_would_choose(self) -> int:
        return _auto_length(self.needed, self.cap, self.limit)

    def line(self) -> str:
        """The one line the command line prints: the length, why, the share truncated."""
        cut = f"{self.truncated:.0%} of the training texts are longer and get cut"
        if self.truncated > 0:
            cut += f" ({'first and last tokens kept' if self.truncation == 'head+tail' else 'first tokens kept'})"
        return f"max length {self.length} tokens: {self.reason()}; {cut}."

    def to_dict(self) -> JSONObject:
        return {**asdict(self), "covered": self.covered, "cover_length": self.cover_length,
                "reason": self.reason()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LengthChoice:
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in names})


def _cover_length(needed: int, limit: int) -> int:
    return min(max(needed, 8), limit)


def _auto_length(needed: int, cap: int, limit: int) -> int:
    return int(min(_round_up(max(needed, MIN_AUTO_LENGTH)), cap, limit))


def choose_length(counts: np.ndarray | Sequence[int], cfg: DataConfig, limit: int = MODEL_MAX_POSITIONS
                  ) -> LengthChoice:
    """The :class:`LengthChoice` for training-text token ``counts`` under ``cfg``: ``cfg.max_length`` when it is a
    number, else the :data:`AUTO_PERCENTILE` th percentile rounded up to a multiple of 8, within
    [:data:`MIN_AUTO_LENGTH`, ``cfg.max_auto_length``] and the model's ``limit``."""
    arr = np.asarray(counts, dtype=np.int64)
    needed = percentile_length(arr)
    limit = int(min(limit, MODEL_MAX_POSITIONS))
    if cfg.max_length == AUTO_LENGTH:
        length = _auto_length(needed, cfg.max_auto_length, limit)
    else:
        length = int(min(int(cfg.max_length), limit))
    truncated = float((arr > length).mean()) if arr.size else 0.0
    cover_share = float((arr <= _cover_length(needed, limit)).mean()) if arr.size else 1.0
    return LengthChoice(requested=cfg.max_length, length=length, needed=needed, cap=cfg.max_auto_length, limit=limit,
                        truncated=truncated, n_texts=int(arr.size), median=int(np.median(arr)) if arr.size else 0,
                        truncation=cfg.truncation, cover_share=cover_share)


# ------------------------------------------------------------------------------------------------ defaults
def default_max_length(dataset: Any) -> int | str:
    """The length a dataset gets unless one is set: ``"auto"`` for uploads, files and hub datasets (texts of any
    length), the embedded datasets' measured default (``DataConfig().max_length``, 32) for the registry's package
    and synthetic datasets (short texts, or results measured at 32 such as the shipped profile bank)."""
    ref = DatasetRef.parse(dataset)
    spec = DATASETS.get(ref.value) if ref.kind == "key" else None
    if spec is not None and spec.source in ("package", "synthetic"):
        return DataConfig().max_length
    return AUTO_LENGTH


def parse_max_length(value: str | int) -> int | str:
    """A ``--max-length`` value: a number of tokens or ``auto``."""
    text = str(value).strip().lower()
    if text == AUTO_LENGTH:
        return AUTO_LENGTH
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--max-length must be a number of tokens or 'auto', got {value!r}") from None


def choose_for_dataset(tokenizer: Any, frame: pd.DataFrame, label_names: Sequence[str], cfg: DataConfig
                       ) -> LengthChoice:
    """The :class:`LengthChoice` a task on this dataset would make (the same splits, the same training texts as
    :func:`core.data.task.prepare_task`), without tokenising the other splits: what the Setup page shows."""
    splits = make_splits(frame, tuple(label_names), cfg)
    return choose_length(token_counts(tokenizer, splits.train["text"]), cfg, model_length_limit(tokenizer))


def estimated_seconds(per_run_s: float | None, reference_length: int, length: int) -> float | None:
    """A run's time at ``length`` from one measured at ``reference_length`` (:func:`relative_cost`)."""
    if per_run_s is None:
        return None
    return per_run_s * relative_cost(length, reference_length)
