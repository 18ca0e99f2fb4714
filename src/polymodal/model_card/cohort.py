"""The card's cohort section: rows, patients, label shares and missing modalities per split.

Counts and shares only (:func:`polymodal.cohort_summary.cohort_summary` for rows, patients and
label counts): no id, no cell value, no word of a note. A modality is counted missing for a row
when every manifest column it reads is blank, as the manifest says before any file is opened
(a file that later fails to read is not counted here; ``polymodal validate`` counts those).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from polymodal import modalities
from polymodal.cohort_summary import cohort_summary
from polymodal.data.cells import MISSING_LABEL_VALUES
from polymodal.data.manifest import Cohort
from polymodal.data.spec import SPLITS


def cohort_section(cohort: Cohort, class_targets: list[str]) -> dict[str, Any]:
    """Rows, patients, label counts and shares per split, and missing modalities per split.

    Returns:
        ``{"name", "rows", "patients", "labels": {target: {split: {label: n}}},
        "label_shares": {target: {split: {label: share}}},
        "missing": {modality: {split: {"rows": n, "share": s}}}}``.
    """
    summary = cohort_summary(cohort, class_targets)
    shares = {
        target: {split: _shares(counts) for split, counts in per_split.items()}
        for target, per_split in summary["labels"].items()
    }
    return {
        "name": cohort.spec.name,
        **summary,
        "label_shares": shares,
        "missing": missing_modalities(cohort),
    }


def _shares(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {label: round(n / total, 4) for label, n in counts.items()} if total else {}


def missing_modalities(cohort: Cohort) -> dict[str, dict[str, dict[str, float]]]:
    """Per modality and split, the rows where every column the modality reads is blank."""
    splits = [s for s in SPLITS if len(cohort.indices(s))]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, cfg in cohort.spec.modalities.items():
        columns = [c for c in modalities.get(cfg.kind).columns(cfg) if c in cohort.frame]
        if not columns:
            continue
        cells = cohort.frame[columns].apply(lambda col: col.str.strip())
        blank = cells.isin(MISSING_LABEL_VALUES).all(axis=1).to_numpy()  # (N,)
        out[name] = {}
        for split in splits:
            rows = cohort.indices(split)
            n = int(np.count_nonzero(blank[rows]))
            out[name][split] = {"rows": n, "share": round(n / len(rows), 4)}
    return out
