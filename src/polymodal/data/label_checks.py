"""Label checks for validation: every target's value on every row is usable, missing or unknown.

A missing label is a warning and an unknown one an error, for that row and that target only (the
row still serves the other targets); a target that cannot be trained at all (no labels, one class
in train) is a reason training is impossible.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from polymodal.data.manifest import MISSING_LABEL_VALUES, Cohort
from polymodal.data.spec import (
    SPLITS,
    BinaryTarget,
    CumulativeRiskTarget,
    DigitsTarget,
    MulticlassTarget,
    MultilabelTarget,
    RegressionTarget,
    TimeToEventTarget,
)

MISSING = "(missing)"
UNKNOWN = "(unknown)"
# Cells accepted as 0/1 in multilabel and event columns.
_ZERO_ONE = {"0": "0", "1": "1", "0.0": "0", "1.0": "1"}

# add(row position or None, column, reason, action) records one problem.
AddProblem = Callable[..., None]


def _clean(values: pd.Series) -> pd.Series:
    """Stripped strings, None where the cell is a missing marker."""
    stripped = values.str.strip()
    return stripped.where(~stripped.isin(MISSING_LABEL_VALUES), None)


MISSING_REASON = "label is missing"


def _fix_action(target: str) -> str:
    # Training encodes every label it is given, so a value it cannot encode stops it; a blank
    # label only takes the row out of this target.
    return f"fix the value, or blank it so the row is not used for target {target!r}"


def _report_missing(labels: pd.Series, column: str, target: str, add: AddProblem) -> None:
    for pos in np.flatnonzero(labels.isna().to_numpy()):
        # A warning, not an error: a multitask cohort leaves most tasks unlabelled on some rows
        # by design, and the row still serves every other target.
        add(pos, column, MISSING_REASON, f"row will not be used for target {target!r}", warn=True)


def _categorical(
    cohort: Cohort, target: str, column: str, allowed: list[str], explain: str, add: AddProblem
) -> pd.Series:
    """Labels with unknown values reported and set to None; ``explain`` says what is allowed."""
    labels = _clean(cohort.frame[column])
    _report_missing(labels, column, target, add)
    unknown = labels.notna() & ~labels.isin(allowed)
    for pos in np.flatnonzero(unknown.to_numpy()):
        add(
            pos,
            column,
            f"unknown label {labels.iat[pos]!r}: {explain}",
            _fix_action(target),
        )
    return labels.where(~unknown, None)


def _numbers(
    cohort: Cohort, target: str, column: str, add: AddProblem, report_missing: bool = True
) -> pd.Series:
    """Numeric labels as float (NaN where missing or not a number, which is reported)."""
    raw = _clean(cohort.frame[column])
    if report_missing:
        _report_missing(raw, column, target, add)
    numbers = pd.to_numeric(raw, errors="coerce").astype(float)
    bad = raw.notna() & ~np.isfinite(numbers)
    for pos in np.flatnonzero(bad.to_numpy()):
        what = "a finite number" if np.isinf(numbers.iat[pos]) else "a number"
        add(pos, column, f"{raw.iat[pos]!r} is not {what}", _fix_action(target))
    return numbers.where(~bad)


def _zero_one(cohort: Cohort, target: str, column: str, add: AddProblem) -> pd.Series:
    raw = _clean(cohort.frame[column])
    labels = _categorical(
        cohort, target, column, list(_ZERO_ONE), "expected 0 or 1 (or blank when unknown)", add
    )
    return labels.map(_ZERO_ONE, na_action="ignore").where(raw.notna(), None)


def _check_one(cohort: Cohort, name: str, add: AddProblem) -> tuple[pd.Series, pd.DataFrame]:
    """Usable label per row (None where not usable) and a per-row frame to count by split."""
    t = cohort.spec.targets[name]
    train = (cohort.split == "train").to_numpy()
    if isinstance(t, MulticlassTarget):
        if t.classes is not None:
            allowed, explain = t.classes, f"expected one of targets.{name}.classes"
        else:
            allowed = sorted(set(_clean(cohort.frame[t.column])[train].dropna()))
            explain = "it never occurs in the training split, where the classes come from"
        labels = _categorical(cohort, name, t.column, allowed, explain, add)
        raw = _clean(cohort.frame[t.column])
        shown = labels.where(labels.notna(), raw.where(raw.isna(), UNKNOWN)).fillna(MISSING)
        return labels, pd.DataFrame({"label": shown})
    if isinstance(t, BinaryTarget):
        negative = cohort.binary_negative(name)
        allowed = [t.positive] + ([negative] if negative is not None else [])
        if negative is None and t.negative is None:
            explain = (
                f"besides the positive {t.positive!r}, the training split does not hold exactly "
                f"one negative value; set targets.{name}.negative"
            )
        else:
            explain = (
                f"a binary target takes {t.positive!r} (positive) or {negative!r} (negative); "
                f"set targets.{name}.negative or fix the value"
            )
        labels = _categorical(cohort, name, t.column, allowed, explain, add)
        raw = _clean(cohort.frame[t.column])
        shown = labels.where(labels.notna(), raw.where(raw.isna(), UNKNOWN)).fillna(MISSING)
        return labels, pd.DataFrame({"label": shown})
    if isinstance(t, RegressionTarget):
        numbers = _numbers(cohort, name, t.column, add)
        usable = numbers.astype(object).where(numbers.notna(), None)
        shown = np.where(numbers.notna(), "labelled", MISSING)
        return usable, pd.DataFrame({"label": shown})
    if isinstance(t, MultilabelTarget):
        parts = {c: _zero_one(cohort, name, c, add) for c in t.columns}
        complete = pd.concat(parts, axis=1).notna().all(axis=1)
        usable = pd.Series(np.where(complete, "labelled", None), dtype=object)
        positives = pd.DataFrame({c: (v == "1") for c, v in parts.items()})
        return usable, positives
    if isinstance(t, DigitsTarget):
        numbers = _numbers(cohort, name, t.column, add)
        limit = 10**t.num_digits
        whole = (numbers == np.floor(numbers)) & (numbers >= 0) & (numbers < limit)
        bad = numbers.notna() & ~whole
        for pos in np.flatnonzero(bad.to_numpy()):
            add(
                pos,
                t.column,
                f"{numbers.iat[pos]:g} is not a whole number from 0 to {limit - 1} "
                f"(targets.{name}.num_digits = {t.num_digits})",
                _fix_action(name),
            )
        numbers = numbers.where(~bad)
        usable = numbers.astype(object).where(numbers.notna(), None)
        return usable, pd.DataFrame({"label": np.where(numbers.notna(), "labelled", MISSING)})
    if isinstance(t, TimeToEventTarget | CumulativeRiskTarget):
        times = _numbers(cohort, name, t.time_column, add)
        if isinstance(t, CumulativeRiskTarget):
            for pos in np.flatnonzero((times < 0).to_numpy()):
                add(pos, t.time_column, f"{times.iat[pos]:g} is a negative time", _fix_action(name))
            times = times.where(~(times < 0))
        events = _zero_one(cohort, name, t.event_column, add)
        complete = times.notna() & events.notna()
        usable = pd.Series(np.where(complete, "labelled", None), dtype=object)
        shown = np.where(complete, np.where(events == "1", "event", "censored"), MISSING)
        return usable, pd.DataFrame({"label": shown})
    raise TypeError(f"unhandled target kind {t.kind!r}")


def check_targets(
    cohort: Cohort, add: AddProblem
) -> tuple[dict[str, pd.Series], dict[str, dict[str, dict[str, int]]], list[str]]:
    """Check every target of a cohort.

    Returns:
        usable: target -> label per row ``(N,)``, None where missing or unknown.
        counts: target -> split -> label (or "(missing)", "(unknown)", "labelled") -> rows;
            for multilabel targets, label column -> rows where it is 1.
        blocking: reasons no model can be trained on these labels.
    """
    usable: dict[str, pd.Series] = {}
    counts: dict[str, dict[str, dict[str, int]]] = {}
    blocking: list[str] = []
    train = (cohort.split == "train").to_numpy()
    for name, t in cohort.spec.targets.items():
        invalid = 0

        def add_counting(
            pos: int | None, column: str, reason: str, action: str, *, warn: bool = False
        ) -> None:
            nonlocal invalid
            invalid += reason != MISSING_REASON
            add(pos, column, reason, action, warn=warn)

        labels, shown = _check_one(cohort, name, add_counting)
        if invalid:
            blocking.append(
                f"target {name!r}: {invalid} label(s) cannot be encoded; fix them or blank them"
            )
        usable[name] = labels
        counts[name] = {}
        for split in SPLITS:
            rows = shown[(cohort.split == split).to_numpy()]
            if isinstance(t, MultilabelTarget):
                counts[name][split] = {c: int(rows[c].sum()) for c in rows.columns}
            else:
                counts[name][split] = {
                    str(k): int(v) for k, v in rows["label"].value_counts().sort_index().items()
                }
        train_labels = labels[train].dropna()
        if train.any() and train_labels.empty:
            blocking.append(f"target {name!r} has no usable label in the training split")
        elif isinstance(t, BinaryTarget | MulticlassTarget) and train_labels.nunique() == 1:
            blocking.append(
                f"target {name!r} has a single class ({train_labels.iat[0]!r}) in the "
                "training split; a classifier needs at least two"
            )
    return usable, counts, blocking
