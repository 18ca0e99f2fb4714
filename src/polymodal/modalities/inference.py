"""Modality spec sections guessed from DataFrame columns, for cohorts given as a DataFrame.

``polymodal.fit(df, target="dx", modalities={"skin": "path", "clinical": ["age", "sex"]})``
names columns; what kind of data each holds is read off the cells: file paths ending in an
image suffix are images, in a volume suffix volumes; long free text is a note; the rest is a
clinical table (numbers numeric, anything else categorical). A time series needs its channels
and is given as a full spec section instead. The guesses are written into the spec that fit
saves, where the user can read and change them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from polymodal.errors import SpecError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".webp")
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".npy", ".npz", ".mha", ".nrrd")
# Text cells this long on average (characters), or this varied, are a note, not a category.
NOTE_CHARS = 40
NOTE_DISTINCT = 0.5


def column_kind(cells: pd.Series) -> str:
    """What one column holds: ``"image"``, ``"volume"``, ``"text"``, ``"numeric"`` or
    ``"categorical"`` (``cells``: the column as text, "" missing)."""
    present = cells[cells.str.strip() != ""].str.strip()
    if present.empty:
        return "categorical"
    lowered = present.str.lower()
    if lowered.str.endswith(VOLUME_SUFFIXES).all():
        return "volume"
    if lowered.str.endswith(IMAGE_SUFFIXES).all():
        return "image"
    if pd.to_numeric(present, errors="coerce").notna().all():
        return "numeric"
    distinct = present.nunique() / len(present)
    if present.str.len().mean() >= NOTE_CHARS or (distinct > NOTE_DISTINCT and len(present) > 20):
        return "text"
    return "categorical"


def guess_modality(name: str, columns: Sequence[str], table: pd.DataFrame) -> dict[str, Any]:
    """The spec section of modality ``name`` over ``columns`` of ``table`` (all-text cells).

    One image or volume column (or several image columns: the views of one image modality), one
    note column, or any columns of a clinical table.

    Raises:
        SpecError: a column is absent, or files are mixed with other columns in one modality.
    """
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise SpecError(
            f"modality {name!r}: column(s) {', '.join(map(repr, missing))} are not in the "
            f"DataFrame; columns present: {', '.join(map(str, table.columns))}"
        )
    kinds = {column: column_kind(table[column]) for column in columns}
    found = set(kinds.values())
    if found == {"image"}:
        return {"kind": "image", "columns": list(columns)}
    if found == {"volume"} and len(columns) == 1:
        return {"kind": "volume", "column": columns[0]}
    if found & {"image", "volume"}:
        raise SpecError(
            f"modality {name!r}: columns {', '.join(columns)} hold {kinds}; a modality is "
            "image columns (its views), one volume column, one note or a clinical table: give "
            "the others their own modality"
        )
    if len(columns) == 1 and found == {"text"}:
        return {"kind": "text", "column": columns[0]}
    numeric = [c for c in columns if kinds[c] == "numeric"]
    return {
        "kind": "tabular",
        "numeric": numeric,
        "categorical": [c for c in columns if c not in numeric],
    }


def guess_modalities(table: pd.DataFrame, columns: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Every modality of ``columns`` when the user named none: each file column and each note
    column its own modality (named after the column), the other columns one ``clinical`` table.
    """
    sections: dict[str, dict[str, Any]] = {}
    clinical: list[str] = []
    for column in columns:
        if column_kind(table[column]) in ("image", "volume", "text"):
            sections[str(column)] = guess_modality(str(column), [column], table)
        else:
            clinical.append(column)
    if clinical:
        sections["clinical" if "clinical" not in sections else "clinical_table"] = guess_modality(
            "clinical", clinical, table
        )
    return sections
