"""Reading one manifest cell: missing markers, numbers and 0/1 flags.

Every manifest cell is a string. These functions decide what a cell means, and they import
nothing from the rest of polymodal but its errors, so the manifest, the fitting of the
preprocessing state and the target kinds (:mod:`polymodal.targets`) all read cells the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from polymodal.errors import ReadError

# Cells that mean "no value" for numeric tabular columns (overridable per modality) and labels.
DEFAULT_MISSING_VALUES: tuple[str, ...] = ("", "NA", "NaN", "nan", "unknown")
MISSING_LABEL_VALUES: frozenset[str] = frozenset({"", "NA", "NaN", "nan", "None", "null"})
LABEL_MISSING = tuple(MISSING_LABEL_VALUES)


def is_missing(cell: str, missing_values: Iterable[str] = DEFAULT_MISSING_VALUES) -> bool:
    """True when a manifest cell means "no value" (blank, or one of ``missing_values``)."""
    stripped = cell.strip()
    return stripped == "" or stripped in set(missing_values)


def parse_number(cell: str, missing_values: Iterable[str] = DEFAULT_MISSING_VALUES) -> float:
    """Parse one numeric cell: NaN for a missing marker, the number otherwise.

    Non-finite values: every number returned is finite; NaN is returned only for a missing
    marker. ``inf``, ``-inf``, ``nan`` (when not a listed missing marker) and numbers too large
    for a float (``1e999``) are errors, so no scaler or encoder downstream ever sees them.

    Raises:
        ReadError: the cell is neither a missing marker nor a finite number; the reason names
            the value (the caller adds the row and column).
    """
    if is_missing(cell, missing_values):
        return math.nan
    try:
        value = float(cell.strip())
    except ValueError:
        raise ReadError(f"{cell!r} is not a number") from None
    if not math.isfinite(value):
        raise ReadError(f"{cell!r} is not a finite number")
    return value


def is_blank(cell: Any) -> bool:
    """True when a file/text/label cell holds no value (blank or a missing marker)."""
    return cell is None or str(cell).strip() in MISSING_LABEL_VALUES


def parse_flag(cell: str, column: str) -> float:
    """A 0/1 cell (event indicator, multilabel column) as float; NaN when missing."""
    try:
        value = parse_number(cell, LABEL_MISSING)
    except ReadError:
        raise ReadError(f"column {column!r}: {cell!r} is not 0 or 1") from None
    if not (np.isnan(value) or value in (0.0, 1.0)):
        raise ReadError(f"column {column!r}: {cell!r} is not 0 or 1")
    return value


def mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and std of the finite values; an empty or constant column gets std 1."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    # An overflow gives inf, which Preprocessor.fit refuses, naming the modality and statistic.
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = float(values.mean()), float(values.std())
    return mean, (std if std > 1e-12 else 1.0)


def column_numbers(
    rows: pd.DataFrame, ids: pd.Series, column: str, missing: Sequence[str]
) -> np.ndarray:
    """A training column as float64 ``(N,)``, NaN where missing; one error lists bad rows."""
    values, bad = [], []
    for row_id, cell in zip(ids, rows[column], strict=True):
        try:
            values.append(parse_number(cell, missing))
        except ReadError:
            bad.append(f"{row_id!r} ({cell!r})")
    if bad:
        raise ReadError(
            f"column {column!r}: {len(bad)} training row(s) hold a value that is not a finite "
            f"number: {', '.join(bad[:5])}; fix the values (or list a missing marker in "
            "missing_values)"
        )
    return np.asarray(values, dtype=np.float64)
