"""The files of one request: uploads saved, allowed paths checked, all under one work folder.

The prediction reads a request's rows as a manifest whose file cells are relative to the
service's work folder (the cohort root), so the cohort's own check (every file inside the root)
holds for every row. A file named by path is first checked to lie inside ``--allow-dir`` (403
otherwise, before anything is opened), then linked (or copied) into the work folder; an
upload is written there. Each file goes where the modality's ``path_template`` expects it.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO

from polymodal.serve.errors import PathOutsideAllowed, RequestError

_CHUNK = 1 << 20


class RequestFiles:
    """A request's files under ``work_root``; :meth:`remove` deletes them all.

    Args:
        work_root: the service's work folder (the root of every manifest it predicts).
        allow_dir: the only folder a path in a request may name; None: no path is allowed.
    """

    def __init__(self, work_root: Path, allow_dir: Path | None) -> None:
        self.work_root = work_root
        self.allow_dir = None if allow_dir is None else allow_dir.resolve()
        self.token = uuid.uuid4().hex[:12]
        self.written: list[Path] = []

    def from_path(self, value: str, template: str | None, loc: tuple[str | int, ...]) -> str:
        """The manifest cell for a file named by a path inside the allowed folder.

        Raises:
            PathOutsideAllowed: 403, no allowed folder or the path leads out of it.
            RequestError: 422, the path is no file.
        """
        if self.allow_dir is None:
            raise PathOutsideAllowed(
                loc,
                f"{value!r}: the service reads no file paths; start it with --allow-dir "
                "or upload the file",
            )
        named = Path(_fill(template, value.strip(), loc)).expanduser()
        source = named if named.is_absolute() else self.allow_dir / named
        try:
            real = source.resolve()
        except (OSError, RuntimeError, ValueError):
            real = None
        if real is None or not real.is_relative_to(self.allow_dir):
            raise PathOutsideAllowed(
                loc,
                f"{value!r} lies outside the allowed folder {self.allow_dir}; "
                "name a file inside it or upload the file",
            )
        if not real.is_file():
            raise RequestError(loc, f"{value!r}: no such file in the allowed folder")
        cell, target = self._place(real.name, template, loc)
        try:
            os.link(real, target)  # no copy when both lie on one file system
        except OSError:
            shutil.copyfile(real, target)
        return cell

    def from_upload(
        self,
        filename: str | None,
        stream: BinaryIO,
        template: str | None,
        loc: tuple[str | int, ...],
    ) -> str:
        """The manifest cell for an uploaded file (written under the work folder)."""
        cell, target = self._place(filename or "upload", template, loc)
        with target.open("wb") as out:
            shutil.copyfileobj(stream, out, _CHUNK)
        return cell

    def _place(
        self, name: str, template: str | None, loc: tuple[str | int, ...]
    ) -> tuple[str, Path]:
        """A fresh cell value and the file the cohort will resolve it to."""
        index = len(self.written)
        if template is None:
            # The original name's suffixes tell the readers the format (.png, .nii.gz, .csv).
            cell = f"requests/{self.token}/{index}_{_safe_name(name)}"
        else:
            cell = f"{self.token}_{index}"
        target = self.work_root / _fill(template, cell, loc)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.written.append(target)
        return cell, target

    def resolve(self, cell: str, template: str | None) -> Path:
        """The file a cell of this request names (``Cohort.resolve_path``'s signature)."""
        return self.work_root / _fill(template, cell, ())

    def remove(self) -> None:
        """Delete every file of this request (and its folder)."""
        for path in self.written:
            path.unlink(missing_ok=True)
        shutil.rmtree(self.work_root / "requests" / self.token, ignore_errors=True)


def _fill(template: str | None, value: str, loc: tuple[str | int, ...]) -> str:
    """``template.format(value)``, or ``value`` without a template."""
    if template is None:
        return value
    try:
        return template.format(value)
    except (IndexError, KeyError, ValueError):
        raise RequestError(loc, f"{value!r} does not fill the path template {template!r}") from None


def _safe_name(name: str) -> str:
    """A file name kept to letters, digits, ``.``, ``-`` and ``_`` (suffixes kept)."""
    base = Path(name.replace("\\", "/")).name
    return re.sub(r"[^A-Za-z0-9._-]", "_", base)[-100:] or "upload"
