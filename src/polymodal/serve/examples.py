"""Patients the page offers: rows of a manifest, with their files named inside the allowed
folder (so that picking one sends paths, as any client may)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from polymodal.errors import ManifestError
from polymodal.serve.inputs import ModelInputs

MAX_EXAMPLES = 20


def example_patients(
    manifest: Path, inputs: ModelInputs, allow_dir: Path | None
) -> list[dict[str, Any]]:
    """The first :data:`MAX_EXAMPLES` rows of ``manifest`` as ``PatientIn`` JSON.

    File cells resolve against the manifest's folder and are given relative to ``allow_dir``.

    Raises:
        ManifestError: the manifest is unreadable, lacks the id column, or names a file
            outside ``allow_dir`` (or there is no allowed folder for its files).
    """
    try:
        frame = pd.read_csv(manifest, dtype=str, keep_default_na=False, nrows=MAX_EXAMPLES)
    except (OSError, ValueError) as err:
        raise ManifestError(f"{manifest}: cannot read the examples ({err})") from None
    if inputs.id_column not in frame.columns:
        raise ManifestError(f"{manifest}: no id column {inputs.id_column!r} in the examples")
    patients = []
    for row in frame.to_dict("records"):
        fields = {c: row[c] for c in inputs.value_columns if row.get(c, "") != ""}
        files = {
            c: _inside(manifest, row[c], allow_dir, inputs.file_columns[c].path_template)
            for c in inputs.file_columns
            if row.get(c, "").strip() != ""
        }
        patients.append({"id": row[inputs.id_column], "fields": fields, "files": files})
    return patients


def _inside(manifest: Path, cell: str, allow_dir: Path | None, template: str | None) -> str:
    """The path of an example's file relative to the allowed folder."""
    named = template.format(cell.strip()) if template else cell.strip()
    path = (manifest.parent / named).resolve()
    if allow_dir is None or not path.is_relative_to(allow_dir):
        raise ManifestError(
            f"{manifest}: example file {path} is not inside --allow-dir "
            f"{allow_dir or '(none given)'}; allow the examples' folder"
        )
    if template is None:
        return str(path.relative_to(allow_dir))
    # A request fills the template again, from the allowed folder: it must reach the same file.
    if (allow_dir / named).resolve() != path:
        raise ManifestError(
            f"{manifest}: the examples' files use a path_template, so the manifest must lie in "
            f"--allow-dir itself ({allow_dir})"
        )
    return cell.strip()
