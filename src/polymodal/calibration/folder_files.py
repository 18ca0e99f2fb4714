"""JSON files added to a saved model folder after training (recalibration, conformal thresholds).

Such a file is written once the folder exists, so the folder's ``checksums.json`` is rewritten
to cover it, after the files already listed have been verified (a damaged or altered folder is
never blessed with fresh checksums). Reading it back checks that ``checksums.json`` lists it with
the same sha256: a file dropped into a shared folder later is refused, not applied.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from polymodal.checksums import CHECKSUMS, file_sha256, verify_checksums, write_checksums
from polymodal.errors import ModelError
from polymodal.json_object import read_json_object


def write_folder_json(folder: Path, name: str, payload: dict[str, Any]) -> Path:
    """Write ``folder/name`` (JSON, numbers only: never pickled) and re-list the checksums.

    Raises:
        ModelError: a file the folder's checksums list is missing or changed.
    """
    folder = Path(folder)
    if (folder / CHECKSUMS).is_file():
        verify_checksums(folder)
    path = folder / name
    path.write_text(json.dumps(payload, indent=1, allow_nan=False), encoding="utf-8")
    write_checksums(folder)
    return path


def read_folder_json(folder: Path, name: str) -> dict[str, Any] | None:
    """``folder/name`` as a dict, or None when the folder has no such file.

    Raises:
        ModelError: the file is not listed in (or does not match) ``checksums.json``, or is not
            a JSON object; the message names the file and what to do.
    """
    folder = Path(folder)
    path = folder / name
    if not path.is_file():
        return None
    listing = folder / CHECKSUMS
    if listing.is_file():
        files = json.loads(listing.read_text(encoding="utf-8")).get("files", {})
        if files.get(name) != file_sha256(path):
            raise ModelError(
                f"{path}: not covered by the folder's {CHECKSUMS} (added or changed after the "
                "model was saved); remove it, or copy the model folder again from its source"
            )
    return read_json_object(path, "copy the model folder again")
