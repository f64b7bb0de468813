"""Leak-free splits: every text goes to exactly one split.

Several embedded datasets repeat texts (SMS spam, BBC News, Tweets, ...), and some official test sets repeat
training texts. Split row by row, a repeated text lands in training *and* in test, and test accuracy is then
measured partly on memorised rows. :func:`one_row_per_text` runs before any split is drawn
(:func:`core.data.batches.make_splits`, for every source: embedded, hub, upload, synthetic):

- texts are compared after :func:`normalise_text`: the upload page's cleaning (strip the ends), runs of
  whitespace collapsed to one space (a tokenizer sees no difference between them either), and case folded
  (BBC News holds one 2,239-character article twice, differing only in "grand slam" / "Grand Slam"; an uncased
  tokenizer sees the two copies as one text);
- a text that occurs several times with one label is kept once (when a dataset ships an official test split,
  the test row is the one kept, so the official test set keeps its rows and the training pool loses its copy);
- a text carrying two or more different labels is dropped altogether (its label is unknown) and counted in
  the :class:`SplitReport` that travels with the splits (``Task.describe()["data_report"]``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

#: bumped when the rows a given dataset and DataConfig put in each split change (part of a task's fingerprint,
#: so cached teachers and runs of older splits are not reused). 2: one row per normalised text (issue 21).
#: 3: texts compared case-insensitively (issue 29): moves TREC, BBC News, Rotten Tomatoes, SMS spam and Tweets
#: (1-30 rows each); Amazon fine food, Reuters R8 and 20 Newsgroups draw exactly the splits of version 2.
SPLIT_VERSION = 3


def normalise_text(values: pd.Series) -> pd.Series:
    """The key two texts are compared by: stripped, every run of whitespace collapsed to one space, case folded
    (:meth:`str.casefold`). Every place that compares texts uses this key."""
    return values.astype(str).str.strip().str.replace(r"\s+", " ", regex=True).str.casefold()


@dataclass(frozen=True)
class SplitReport:
    """What :func:`one_row_per_text` removed before splitting: ``duplicate_rows`` repeated a text kept once
    with the same label (``test_copies`` of them were training-pool copies of an official test row), and
    ``conflicting_texts`` texts carrying more than one label were dropped with all their ``conflicting_rows``."""

    rows: int = 0
    duplicate_rows: int = 0
    test_copies: int = 0
    conflicting_texts: int = 0
    conflicting_rows: int = 0

    @property
    def kept(self) -> int:
        return self.rows - self.duplicate_rows - self.conflicting_rows

    def notes(self) -> tuple[str, ...]:
        """Sentences for the data report (empty when nothing was removed)."""
        out = []
        if self.duplicate_rows:
            where = (f", {self.test_copies:,} of them training copies of official test texts"
                     if self.test_copies else "")
            out.append(f"{self.duplicate_rows:,} repeated text row(s) kept once{where}, so no text is in two "
                       "splits.")
        if self.conflicting_texts:
            out.append(f"{self.conflicting_texts:,} text(s) carry two or more different labels: their "
                       f"{self.conflicting_rows:,} row(s) are left out of every split.")
        return tuple(out)

    def to_dict(self) -> dict:
        return {**asdict(self), "kept": self.kept, "notes": list(self.notes())}


def label_conflicts(frame: pd.DataFrame) -> tuple[int, int]:
    """(texts, rows) of ``frame`` whose normalised text carries more than one distinct label."""
    key = normalise_text(frame["text"])
    labels = frame["label"].groupby(key.to_numpy()).transform("nunique")
    bad = labels.to_numpy() > 1
    return int(key[bad].nunique()), int(bad.sum())


def one_row_per_text(frame: pd.DataFrame) -> tuple[pd.DataFrame, SplitReport]:
    """``frame`` (``text``, ``label``, maybe ``split``) with one row per normalised text and no text carrying two
    labels, in its original row order, and the report of what was removed."""
    key = normalise_text(frame["text"]).to_numpy()
    nunique = frame["label"].groupby(key).transform("nunique").to_numpy()
    conflicting = nunique > 1
    conflicting_texts = int(pd.Series(key[conflicting]).nunique())
    kept = frame[~conflicting]
    kept_key = key[~conflicting]
    official_test = kept["split"].eq("test").to_numpy() if "split" in kept.columns else None
    if official_test is not None and official_test.any():
        # the official test row of a text wins: order test rows first, keep the first of each text, restore order
        order = pd.Series(~official_test).reset_index(drop=True).sort_values(kind="stable").index.to_numpy()
        first = ~pd.Series(kept_key[order]).duplicated().to_numpy()
        keep = pd.Series(False, index=range(len(kept)))
        keep.iloc[order[first]] = True
        keep = keep.to_numpy()
        in_test = set(kept_key[official_test])
        test_copies = int(sum(1 for k, t, kp in zip(kept_key, official_test, keep) if not kp and not t
                              and k in in_test))
    else:
        keep = ~pd.Series(kept_key).duplicated().to_numpy()
        test_copies = 0
    out = kept[keep]
    report = SplitReport(rows=len(frame), duplicate_rows=int((~keep).sum()), test_copies=test_copies,
                         conflicting_texts=conflicting_texts, conflicting_rows=int(conflicting.sum()))
    return out, report
