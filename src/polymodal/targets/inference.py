"""A target's spec section guessed from its column, for cohorts given as a DataFrame.

``polymodal.fit(df, target="dx")`` must say what kind of label ``dx`` is; the guess is written
into the spec that fit saves, where the user can read and change it. The rules are deliberately
plain: two distinct values are a binary label, a few distinct text or whole-number values are
classes, other numbers are a regression target.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from polymodal.errors import SpecError

# More distinct whole numbers than this are a quantity (regression), not classes.
MAX_CLASSES = 20
# Values that say "the positive class" when a binary column holds them.
_POSITIVE = ("1", "true", "yes", "y", "positive", "pos")


def guess_target(column: str, labels: pd.Series) -> dict[str, Any]:
    """The spec section of the target in ``column`` (``labels``: its cells as text, "" missing).

    Raises:
        SpecError: the column has fewer than two distinct labels, or many distinct texts that
            are neither classes nor numbers; the message says how to state the kind instead.
    """
    present = labels[labels.str.strip() != ""].str.strip()
    values = sorted(present.unique())
    if len(values) < 2:
        raise SpecError(
            f"target column {column!r} holds {len(values)} distinct label(s): nothing to learn; "
            "check the column, or give target={'" + column + "': {'kind': ...}}"
        )
    numbers = pd.to_numeric(present, errors="coerce")
    numeric = bool(numbers.notna().all())
    whole = numeric and bool((numbers == numbers.round()).all())
    if len(values) == 2:
        positive = _positive_of(values)
        return {"kind": "binary", "column": column, "positive": positive}
    if len(values) <= MAX_CLASSES and (whole or not numeric):
        order = sorted(values, key=float) if numeric else values
        return {"kind": "multiclass", "column": column, "classes": order}
    if numeric:
        return {"kind": "regression", "column": column}
    raise SpecError(
        f"target column {column!r} holds {len(values)} distinct texts: too many for classes "
        f"(at most {MAX_CLASSES}); give its kind, e.g. target={{'{column}': {{'kind': "
        "'multiclass', 'classes': [...]}}}"
    )


def _positive_of(values: list[str]) -> str:
    """The positive one of two labels: the one that reads as yes/1/true, else the later."""
    for value in values:
        if value.lower() in _POSITIVE:
            return value
    numbers = pd.to_numeric(pd.Series(values), errors="coerce")
    if numbers.notna().all():
        return values[int(numbers.idxmax())]
    return values[-1]
