"""Label checks for validation: every target's value on every row is usable, missing or unknown.

A missing label is a warning and an unknown one an error, for that row and that target only (the
row still serves the other targets); a target that cannot be trained at all (no labels, one class
in train) is a reason training is impossible.
"""

from __future__ import annotations

import pandas as pd

from polymodal import targets
from polymodal.data.manifest import Cohort
from polymodal.data.spec import SPLITS
from polymodal.targets.base import AddProblem, LabelFrame
from polymodal.targets.checks import MISSING, MISSING_REASON, UNKNOWN

__all__ = ["MISSING", "MISSING_REASON", "UNKNOWN", "AddProblem", "check_targets"]


def _check_one(cohort: Cohort, name: str, add: AddProblem) -> tuple[pd.Series, pd.DataFrame]:
    """Usable label per row (None where not usable) and a per-row frame to count by split."""
    t = cohort.spec.targets[name]
    train = (cohort.split == "train").to_numpy()
    return targets.get(t.kind).check_labels(t, LabelFrame(name, cohort.frame, train, add))


def check_targets(
    cohort: Cohort, add: AddProblem
) -> tuple[dict[str, pd.Series], dict[str, dict[str, dict[str, int]]], list[str]]:
    """Check every target of a cohort.

    Returns:
        usable: target -> label per row ``(N,)``, None where missing or unknown.
        counts: target -> split -> label (or "(missing)", "(unknown)", "labelled") -> rows;
            for a kind with one column per label, label column -> rows where it is 1.
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
        kind = targets.get(t.kind)
        for split in SPLITS:
            counts[name][split] = kind.count_labels(shown[(cohort.split == split).to_numpy()])
        train_labels = labels[train].dropna()
        if train.any() and train_labels.empty:
            blocking.append(f"target {name!r} has no usable label in the training split")
        elif kind.class_valued and train_labels.nunique() == 1:
            blocking.append(
                f"target {name!r} has a single class ({train_labels.iat[0]!r}) in the "
                "training split; a classifier needs at least two"
            )
    return usable, counts, blocking
