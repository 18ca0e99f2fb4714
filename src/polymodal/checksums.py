"""The sha256 of every file of a model folder, written when it is saved and checked on loading,
so that a folder damaged or altered on its way to another machine is refused instead of used.

``checksums.json``::

    {"format": "polymodal-checksums", "algorithm": "sha256",
     "files": {"model.safetensors": "<64 hex digits>", "config.json": "...", ...}}
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath

from polymodal.errors import ModelError

CHECKSUMS = "checksums.json"
FORMAT = "polymodal-checksums"
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, as 64 hex digits (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_checksums(folder: Path) -> Path:
    """Write ``folder/checksums.json`` for every file below ``folder`` (paths with ``/``)."""
    files = {
        path.relative_to(folder).as_posix(): file_sha256(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != CHECKSUMS
    }
    out = folder / CHECKSUMS
    payload = {"format": FORMAT, "algorithm": "sha256", "files": files}
    out.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    return out


def verify_checksums(folder: Path) -> None:
    """Check every file listed in ``folder/checksums.json`` against its sha256.

    Raises:
        ModelError: checksums.json is unreadable, or a listed file is missing or changed; the
            message names the file and says what to do.
    """
    listed = _read_listing(folder / CHECKSUMS)
    for name, expected in listed.items():
        path = folder / _inside(name, folder)
        if not path.is_file():
            raise ModelError(
                f"{path}: missing, although {CHECKSUMS} lists it; the model folder is "
                "incomplete: copy the whole folder again from its source"
            )
        if file_sha256(path) != expected:
            raise ModelError(
                f"{path}: its content does not match its sha256 in {CHECKSUMS}: the file was "
                "changed or damaged after the model was saved. Copy the model folder again "
                "from its source, or train it again with `polymodal fit`; never edit a model "
                "folder's files by hand"
            )


def _read_listing(path: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of a checksums file; ModelError when it is not one."""
    damaged = f"{path}: not a valid checksum list; copy the model folder again from its source"
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ModelError(f"{damaged} ({err})") from None
    files = payload.get("files") if isinstance(payload, dict) else None
    if (
        not isinstance(payload, dict)
        or payload.get("format") != FORMAT
        or payload.get("algorithm") != "sha256"
        or not isinstance(files, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
    ):
        raise ModelError(damaged)
    return files


def _inside(name: str, folder: Path) -> PurePosixPath:
    """A listed name as a path inside the folder: never absolute and never above it."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ModelError(
            f"{folder / CHECKSUMS}: lists {name!r}, which is not a file inside the model "
            "folder; copy the model folder again from its source"
        )
    return path
