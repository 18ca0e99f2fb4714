"""Leakage check: does one manifest column, alone, give away a categorical label?

For a column and a target, each value of the column that occurs often enough predicts its most
common label. Two statistics come out of that rule:

* **decisive coverage**: the share of labelled rows whose column value gives the label with at
  most 5 % of the errors the majority-class guess would make for that class (e.g. HAM10000's
  ``dx_type = follow_up`` is ``nv`` in 2,949 of 2,949 rows, where guessing ``nv`` is wrong for a
  third of all rows). A value counts only when it is frequent enough that such purity is not
  chance (``p_class ** n <= 0.001``, and at least 20 rows), so id-like columns never count.
* **error reduction**: how much of the majority-baseline error the value→label rule removes over
  all labelled rows (rare values fall back to the majority class).

A column is flagged when decisive coverage reaches 5 % of rows or the error reduction reaches
80 %. On HAM10000 ``dx_type`` has a coverage of 37 % and is flagged, while ``localization``,
``sex`` and ``age`` have 0-1 % and error reductions under 10 % and are not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

# A value is decisive when its error rate is at most this share of the baseline error.
DECISIVE_ERROR_RATIO = 0.05
MIN_SUPPORT = 20
# Chance that a value this frequent would be this pure by luck under the class prior.
CHANCE_LEVEL = 1e-3
FLAG_COVERAGE = 0.05
FLAG_ERROR_REDUCTION = 0.8
# Numeric columns with more distinct values than this are cut into quantile bins first.
MAX_NUMERIC_LEVELS = 20
QUANTILE_BINS = 10


@dataclass(frozen=True)
class LeakageFinding:
    """One column that predicts one target almost perfectly."""

    column: str
    target: str
    coverage: float  # share of labelled rows with a decisive value
    error_reduction: float  # 1 - rule error / majority-baseline error
    # The decisive values: (column value, label, rows with that value, rows with that label).
    decisive: tuple[tuple[str, str, int, int], ...]

    def describe(self) -> str:
        """One line a user can read, with the statistic and the strongest values."""
        shown = ", ".join(
            f"{value!r} → {label!r} in {hits}/{n} rows"
            for value, label, n, hits in self.decisive[:3]
        )
        more = f" and {len(self.decisive) - 3} more" if len(self.decisive) > 3 else ""
        detail = f"; {shown}{more}" if shown else ""
        return (
            f"column {self.column!r} alone predicts target {self.target!r}: "
            f"{self.coverage:.1%} of labelled rows have a value that fixes the label "
            f"(decisive coverage), and the value→label rule removes "
            f"{self.error_reduction:.0%} of the majority-class errors{detail}"
        )


def _levels(values: pd.Series) -> pd.Series:
    """The column as discrete levels: quantile bins for many-valued numbers, else the strings.

    Only finite numbers are binned; ``inf``, ``nan`` and words stay levels of their own.
    """
    stripped = values.str.strip()
    numbers = pd.to_numeric(stripped, errors="coerce").astype(float)
    present = stripped != ""
    finite = pd.Series(np.isfinite(numbers.to_numpy()), index=values.index)
    is_numeric = present.any() and numbers[present].notna().mean() >= 0.95
    if not (is_numeric and numbers[finite].nunique() > MAX_NUMERIC_LEVELS):
        return stripped
    return stripped.where(~finite, _quantile_bins(numbers[finite]))


def _quantile_bins(numbers: pd.Series) -> pd.Series:
    """Each finite number as the range ``[min, max]`` of its quantile bin.

    Bins are cut on ranks, not values: ranks keep the order and ties but stay small, so values
    near the float limit (``1e308``) cannot overflow the quantile arithmetic.
    """
    bins = pd.qcut(numbers.rank(method="average"), QUANTILE_BINS, labels=False, duplicates="drop")
    span = numbers.groupby(bins).agg(["min", "max"])
    names = {b: f"[{low:g}, {high:g}]" for b, (low, high) in span.iterrows()}
    return bins.map(names)


def check_column(levels: pd.Series, labels: pd.Series, column: str, target: str) -> LeakageFinding:
    """The statistics for one column (levels) against one target's labels (both labelled rows)."""
    n = len(labels)
    prior = labels.value_counts(normalize=True)
    majority_share = float(prior.iloc[0])
    table = pd.crosstab(levels, labels)  # (levels, classes)
    support = table.sum(axis=1)
    top_class = table.idxmax(axis=1)
    top_count = table.max(axis=1)
    class_prior = prior.reindex(top_class).to_numpy()
    # log(chance) / log(prior): the rows a value needs before purity is unlikely to be luck.
    with np.errstate(divide="ignore"):
        needed = np.where(
            class_prior < 1, np.ceil(math.log(CHANCE_LEVEL) / np.log(class_prior)), np.inf
        )
    frequent = support.to_numpy() >= np.maximum(MIN_SUPPORT, needed)
    error = 1 - top_count.to_numpy() / support.to_numpy()
    decisive_mask = frequent & (error <= DECISIVE_ERROR_RATIO * (1 - class_prior))
    coverage = float(support[decisive_mask].sum()) / n
    # The value→label rule on frequent values, the majority class elsewhere.
    rule_hits = top_count[frequent].sum() + table[~frequent][prior.index[0]].sum()
    baseline_error = 1 - majority_share
    error_reduction = (
        float((rule_hits / n - majority_share) / baseline_error) if baseline_error > 0 else 0.0
    )
    decisive = sorted(
        (
            (str(v), str(top_class[v]), int(support[v]), int(top_count[v]))
            for v in support.index[decisive_mask]
        ),
        key=lambda item: -item[2],
    )
    return LeakageFinding(column, target, coverage, error_reduction, tuple(decisive))


def find_leaks(
    frame: pd.DataFrame, labels: dict[str, pd.Series], columns: list[str]
) -> list[LeakageFinding]:
    """Flagged (column, target) pairs.

    Args:
        frame: the manifest, every column str.
        labels: per categorical target, its label per row (None where missing or unknown).
        columns: the columns to test.
    """
    findings = []
    for target, target_labels in labels.items():
        labelled = target_labels.notna()
        y = target_labels[labelled].astype(str)
        if y.nunique() < 2:
            continue
        for column in columns:
            levels = _levels(frame.loc[labelled, column])
            finding = check_column(levels, y, column, target)
            if finding.coverage >= FLAG_COVERAGE or finding.error_reduction >= FLAG_ERROR_REDUCTION:
                findings.append(finding)
    return findings
