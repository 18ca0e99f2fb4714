"""Performance per subgroup of the rows (``card.subgroups``): sex, age band, site, …

Each subgroup column of the manifest cuts the scored rows into levels (its values, or bins of a
numeric column; a blank cell is the level ``(missing)``); every level gets its rows, patients,
label summary and the headline metric with a patient-grouped bootstrap CI
(:mod:`polymodal.model_card.performance`). The card names the column and its levels, never a
row: a column with more than :data:`~polymodal.model_card.config.MAX_LEVELS` distinct values
(an id, a date, free text) is refused.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.cells import MISSING_LABEL_VALUES
from polymodal.data.manifest import Cohort
from polymodal.data.parquet_manifest import read_parquet_text
from polymodal.errors import SpecError
from polymodal.model_card.config import MAX_LEVELS, CardConfig, Subgroup
from polymodal.model_card.performance import scored_targets
from polymodal.targets.predictions import PredictionCollector

MISSING_LEVEL = "(missing)"
SUPPRESSED = "suppressed"


def subgroup_performance(
    cohort: Cohort,
    subgroups: list[Subgroup],
    collector: PredictionCollector,
    *,
    split: str,
    n_boot: int,
    min_patients: int = 5,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Per subgroup column, per level: the scored targets of the collector's rows in it (the
    rows of ``split``, in order; ids may repeat in a cohort trained with ``allow_blocking``).

    A level with fewer than ``min_patients`` patients is ``{"suppressed": why}``: no count, no
    label share (a cell of one or two patients can identify them).

    Returns:
        ``{column: {"bins": [...] | None, "levels": {level: {target: {...}}}}}``, the targets
        as :func:`~polymodal.model_card.performance.scored_targets` (headline metric only).

    Raises:
        SpecError: a column is not in the manifest, a binned column holds a non-number, or a
            categorical column has too many distinct values; the message says what to change.
    """
    position = _positions(cohort, split, collector.ids)  # (n,) into the cohort
    groups = np.asarray(collector.groups, dtype=object)
    out = {}
    for subgroup in subgroups:
        levels = subgroup_levels(cohort, subgroup)[position]  # (n,)
        found: dict[str, Any] = {}
        for level in _ordered(levels, subgroup):
            rows = levels == level
            if len(set(groups[rows].tolist())) < min_patients:
                found[level] = {SUPPRESSED: f"fewer than {min_patients} patients"}
                continue
            found[level] = scored_targets(
                collector, n_boot=n_boot, seed=seed, rows=rows, headline_only=True
            )
        out[subgroup.column] = {"bins": subgroup.bins, "levels": found}
    return out


def _positions(cohort: Cohort, split: str, collected: list[str]) -> np.ndarray:
    """The cohort row of each sample collected over ``split``: the split's rows in order (the
    predictor collects them so), checked against the collected ids."""
    rows = cohort.indices(split)
    if [str(i) for i in cohort.ids.iloc[rows]] != [str(i) for i in collected]:
        raise ValueError(f"the collected samples are not the {split} split's rows in order")
    return rows


def check_subgroups(cohort: Cohort, card: CardConfig | None) -> None:
    """Raise SpecError now if a subgroup column of ``card`` cannot cut ``cohort`` into levels."""
    for subgroup in card.subgroups if card is not None else []:
        subgroup_levels(cohort, subgroup)


def subgroup_levels(cohort: Cohort, subgroup: Subgroup) -> np.ndarray:
    """The level of every cohort row ``(N,)`` (str) for one subgroup column."""
    cells = _column(cohort, subgroup.column).str.strip()
    blank = cells.isin(MISSING_LABEL_VALUES)
    if subgroup.bins is None:
        distinct = cells[~blank].nunique()
        if distinct > MAX_LEVELS:
            raise SpecError(
                f"card.subgroups: column {subgroup.column!r} has {distinct} distinct values (at "
                f"most {MAX_LEVELS}); a subgroup column is a category such as sex or site. For a "
                f"number give cut points: {{column: {subgroup.column}, bins: [40, 65]}}"
            )
        return np.where(blank, MISSING_LEVEL, cells).astype(str)
    numbers = pd.to_numeric(cells.where(~blank), errors="coerce")
    bad = cells[~blank & numbers.isna()]
    if len(bad):
        raise SpecError(
            f"card.subgroups: column {subgroup.column!r} has bins but row {cohort.ids.iloc[bad.index[0]]!r} "
            f"holds {bad.iloc[0]!r}, not a number; fix the cell or leave out bins"
        )
    names = _bin_names(subgroup.bins or [])
    which = np.searchsorted(np.asarray(subgroup.bins), numbers.to_numpy(), side="right")
    return np.where(numbers.isna(), MISSING_LEVEL, np.asarray(names, dtype=object)[which]).astype(
        str
    )


def _column(cohort: Cohort, column: str) -> pd.Series:
    """A manifest column as text; from the file when the cohort did not read it (a Parquet
    manifest is read only for the spec's columns)."""
    if column in cohort.frame:
        return cohort.frame[column]
    path = cohort.manifest_path
    if path.suffix.lower() in (".parquet", ".pq"):
        frame = read_parquet_text(path, [column])
        if column in frame and len(frame) == len(cohort.frame):
            return frame[column]
    raise SpecError(
        f"card.subgroups: {path} has no column {column!r}; name a column of the manifest "
        f"(e.g. {', '.join(list(cohort.frame.columns)[:8])})"
    )


def _bin_names(bins: list[float]) -> list[str]:
    """``[40, 65]`` → ``["<40", "40–<65", "≥65"]``."""
    edges = [f"{b:g}" for b in bins]
    middle = [f"{a}–<{b}" for a, b in pairwise(edges)]
    return [f"<{edges[0]}", *middle, f"≥{edges[-1]}"]


def _ordered(levels: np.ndarray, subgroup: Subgroup) -> list[str]:
    """The levels present, bins in order (else sorted), the missing level last."""
    present = set(levels.tolist())
    order = _bin_names(subgroup.bins) if subgroup.bins else sorted(present - {MISSING_LEVEL})
    return [lv for lv in [*order, MISSING_LEVEL] if lv in present]
