"""A cohort spec and manifest written from a DataFrame and the columns a user names.

``polymodal.fit(df, target="dx", modalities={...})`` trains through the same path as
``polymodal fit SPEC``: the frame becomes ``OUT/cohort/manifest.parquet`` and the inferred spec
``OUT/cohort/spec.yaml`` (every guess written out, so it can be read, edited and reused with the
command line), then :func:`polymodal.training.fit.fit` runs on them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from polymodal.data.spec import CohortSpec, load_spec
from polymodal.errors import SpecError
from polymodal.frames.text_table import as_text_table
from polymodal.modalities.inference import guess_modalities, guess_modality
from polymodal.targets.inference import guess_target

# The id column made from the frame's index when the user names none.
ROW_ID = "row_id"
MANIFEST = "manifest.parquet"
SPEC = "spec.yaml"
# Held out for validation (epoch selection, early stopping) when no split column is named.
VAL_FRACTION = 0.15

TargetArg = str | Sequence[str] | Mapping[str, str | Mapping[str, Any]]
ModalitiesArg = Mapping[str, str | Sequence[str] | Mapping[str, Any]] | None


def with_row_ids(frame: pd.DataFrame, id_column: str | None) -> tuple[pd.DataFrame, str]:
    """``frame`` and its id column: ``id_column``, else a ``row_id`` column from its index."""
    if id_column is not None:
        if id_column not in frame.columns:
            raise SpecError(f"id_column {id_column!r} is not a column of the DataFrame")
        return frame, id_column
    if ROW_ID in frame.columns:
        return frame, ROW_ID
    return frame.assign(**{ROW_ID: frame.index.astype(str)}), ROW_ID


def spec_from_frame(
    table: pd.DataFrame,
    target: TargetArg,
    modalities: ModalitiesArg = None,
    *,
    id_column: str,
    group_column: str | None = None,
    split_column: str | None = None,
    name: str = "cohort",
    root: Path | None = None,
) -> dict[str, Any]:
    """The spec (as YAML data) of ``table`` (all-text cells, see :func:`as_text_table`).

    ``target``: a column, several, or ``{column: kind}`` / ``{column: spec section}``.
    ``modalities``: ``{name: column}``, ``{name: [columns]}`` or ``{name: spec section}``; by
    default every other column (see :func:`guess_modalities`).
    """
    target_sections = _targets(table, target)
    used = {id_column, group_column, split_column} | {s["column"] for s in target_sections.values()}
    if modalities is None:
        inputs = [c for c in table.columns if c not in used]
        modality_sections = guess_modalities(table, inputs)
    else:
        modality_sections = {m: _modality(m, v, table) for m, v in modalities.items()}
    split: dict[str, Any] = (
        {"column": split_column}
        if split_column
        else {"recipe": {"train": 1 - VAL_FRACTION, "val": VAL_FRACTION, "test": 0.0}}
    )
    spec: dict[str, Any] = {
        "name": name,
        "manifest": MANIFEST,
        "id_column": id_column,
        "split": split,
        "targets": target_sections,
        "modalities": modality_sections,
    }
    if group_column:
        spec["group_column"] = group_column
    if root is not None:
        spec["root"] = str(Path(root).expanduser().resolve())
    return spec


def _targets(table: pd.DataFrame, target: TargetArg) -> dict[str, dict[str, Any]]:
    named = (
        {target: None}
        if isinstance(target, str)
        else (dict(target) if isinstance(target, Mapping) else dict.fromkeys(target))
    )
    sections = {}
    for column, given in named.items():
        if column not in table.columns:
            raise SpecError(
                f"target column {column!r} is not in the DataFrame; columns present: "
                f"{', '.join(map(str, table.columns))}"
            )
        if isinstance(given, Mapping):
            sections[column] = {"column": column, **given}
        elif isinstance(given, str):  # the kind alone: its spec defaults do the rest
            sections[column] = {"kind": given, "column": column}
        else:
            sections[column] = guess_target(column, table[column])
    return sections


def _modality(name: str, given: Any, table: pd.DataFrame) -> dict[str, Any]:
    if isinstance(given, Mapping):
        return dict(given)
    columns = [given] if isinstance(given, str) else list(given)
    return guess_modality(name, columns, table)


def write_cohort(frame: pd.DataFrame, spec_data: dict[str, Any], folder: Path) -> CohortSpec:
    """``frame`` as ``folder/manifest.parquet`` and ``spec_data`` as ``folder/spec.yaml``;
    the spec read back (so it is checked exactly as ``polymodal fit`` would check it)."""
    folder.mkdir(parents=True, exist_ok=True)
    as_text_table(frame).to_parquet(folder / MANIFEST, index=False)
    header = (
        "# Written by polymodal.fit from a DataFrame: every guess is here to read and change;\n"
        f"# reuse it with `polymodal fit {folder / SPEC} -o RUN`.\n"
    )
    (folder / SPEC).write_text(header + yaml.safe_dump(spec_data, sort_keys=False))
    return load_spec(folder / SPEC)
