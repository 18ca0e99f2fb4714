"""What a model folder records about the cohort it was trained on: counts only (rows, patients
and label values per split), never a row, id or free-text value, so that a data-protection
officer can review it (``polymodal inspect``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from polymodal.data.manifest import Cohort
from polymodal.data.spec import SPLITS


def cohort_summary(cohort: Cohort, class_targets: Iterable[str] = ()) -> dict[str, Any]:
    """Rows and patients (distinct groups) per split, and for each named single-column class
    target the count of each label per split (missing labels left out).

    Returns:
        ``{"rows": {split: n}, "patients": {split: n}, "labels": {target: {split:
        {label: n}}}}`` with the splits that have rows.
    """
    splits = [s for s in SPLITS if len(cohort.indices(s))]
    groups = cohort.groups
    summary: dict[str, Any] = {
        "rows": {s: len(cohort.indices(s)) for s in splits},
        "patients": {s: int(groups.iloc[cohort.indices(s)].nunique()) for s in splits},
        "labels": {},
    }
    for target in class_targets:
        if getattr(cohort.spec.targets[target], "column", None) is None:
            continue  # a target over several columns (multilabel): no single label per row
        labels = cohort.labels(target)
        summary["labels"][target] = {
            s: {str(k): int(v) for k, v in labels.iloc[cohort.indices(s)].value_counts().items()}
            for s in splits
        }
    return summary
