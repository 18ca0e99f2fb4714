"""Pieces the kinds' label checks share: clean a label column, report missing and unknown cells.

A missing label is a warning and an unknown one an error, for that row and that target only (the
row still serves the other targets). Each kind's ``check_labels`` combines these.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from polymodal.data.cells import MISSING_LABEL_VALUES
from polymodal.targets.base import LabelFrame

MISSING = "(missing)"
UNKNOWN = "(unknown)"
MISSING_REASON = "label is missing"
# Cells accepted as 0/1 in multilabel and event columns.
ZERO_ONE = {"0": "0", "1": "1", "0.0": "0", "1.0": "1"}


def clean(values: pd.Series) -> pd.Series:
    """Stripped strings, None where the cell is a missing marker (``object`` dtype: a cohort's
    text dtype would hold NaN instead of None)."""
    stripped = values.str.strip().astype(object)
    return stripped.where(~stripped.isin(MISSING_LABEL_VALUES), None)


def fix_action(target: str) -> str:
    # Training encodes every label it is given, so a value it cannot encode stops it; a blank
    # label only takes the row out of this target.
    return f"fix the value, or blank it so the row is not used for target {target!r}"


def report_missing(labels: pd.Series, column: str, frame: LabelFrame) -> None:
    for pos in np.flatnonzero(labels.isna().to_numpy()):
        # A warning, not an error: a multitask cohort leaves most tasks unlabelled on some rows
        # by design, and the row still serves every other target.
        frame.add(
            pos,
            column,
            MISSING_REASON,
            f"row will not be used for target {frame.name!r}",
            warn=True,
        )


def categorical(frame: LabelFrame, column: str, allowed: list[str], explain: str) -> pd.Series:
    """Labels with unknown values reported and set to None; ``explain`` says what is allowed."""
    labels = clean(frame.frame[column])
    report_missing(labels, column, frame)
    unknown = labels.notna() & ~labels.isin(allowed)
    for pos in np.flatnonzero(unknown.to_numpy()):
        frame.add(
            pos, column, f"unknown label {labels.iat[pos]!r}: {explain}", fix_action(frame.name)
        )
    return labels.where(~unknown, None)


def shown_classes(frame: LabelFrame, column: str, labels: pd.Series) -> pd.DataFrame:
    """Per-row class for the counts: the class, ``(unknown)`` or ``(missing)``."""
    raw = clean(frame.frame[column])
    return pd.DataFrame(
        {"label": labels.where(labels.notna(), raw.where(raw.isna(), UNKNOWN)).fillna(MISSING)}
    )


def numbers(frame: LabelFrame, column: str, report: bool = True) -> pd.Series:
    """Numeric labels as float (NaN where missing or not a number, which is reported)."""
    raw = clean(frame.frame[column])
    if report:
        report_missing(raw, column, frame)
    values = pd.to_numeric(raw, errors="coerce").astype(float)
    bad = raw.notna() & ~np.isfinite(values)
    for pos in np.flatnonzero(bad.to_numpy()):
        what = "a finite number" if np.isinf(values.iat[pos]) else "a number"
        frame.add(pos, column, f"{raw.iat[pos]!r} is not {what}", fix_action(frame.name))
    return values.where(~bad)


def zero_one(frame: LabelFrame, column: str) -> pd.Series:
    """A 0/1 column as "0"/"1" (None where missing or unknown, which is reported)."""
    raw = clean(frame.frame[column])
    labels = categorical(frame, column, list(ZERO_ONE), "expected 0 or 1 (or blank when unknown)")
    return labels.map(ZERO_ONE, na_action="ignore").where(raw.notna(), None)


def labelled(usable: pd.Series) -> pd.DataFrame:
    """The per-row frame of a kind without classes: ``labelled`` or ``(missing)``."""
    return pd.DataFrame({"label": np.where(usable.notna(), "labelled", MISSING)})
