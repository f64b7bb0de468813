"""Statistics for every number a page or a CLI table shows: intervals for one model's scores, paired intervals
for the difference between two models on the same examples, verdicts ("A ahead by ..." / "within noise") and
aggregation over seeds and datasets. See :mod:`core.stats.intervals`, :mod:`core.stats.aggregate` and, for stored
per-example outcomes, :mod:`core.stats.outcomes`."""

from core.stats.aggregate import SeedSummary, WinCount, over_datasets, over_seeds, win_count
from core.stats.intervals import (
    LEVEL,
    RESAMPLES,
    Interval,
    PairedDifference,
    accuracy_interval,
    beyond_noise,
    macro_f1_interval,
    paired_accuracy_difference,
    paired_macro_f1_difference,
    paired_mean_difference,
    unpaired_difference,
    verdict,
    wilson_interval,
)
from core.stats.outcomes import (
    accuracy_of,
    macro_f1_of,
    oracle_candidate,
    paired_accuracy_of,
    paired_macro_f1_of,
    paired_mean_of,
)

__all__ = ["LEVEL", "RESAMPLES", "Interval", "PairedDifference", "SeedSummary", "WinCount", "accuracy_interval",
           "accuracy_of", "beyond_noise", "macro_f1_interval", "macro_f1_of", "oracle_candidate", "over_datasets",
           "over_seeds", "paired_accuracy_difference", "paired_accuracy_of", "paired_macro_f1_difference",
           "paired_macro_f1_of", "paired_mean_difference", "paired_mean_of", "unpaired_difference", "verdict",
           "wilson_interval", "win_count"]
