"""Text reader: the free text in a manifest column, or the content of a file the column names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from polymodal.data.spec import TextModality
from polymodal.errors import ReadError

# (cell value, path_template) -> file path; Cohort.resolve_path has this signature.
PathResolver = Callable[[str, "str | None"], Path]


def read_text(cell: str, cfg: TextModality, resolve: PathResolver) -> str:
    """The text of one sample.

    Args:
        cell: the manifest cell of ``cfg.column``.
        cfg: the text modality.
        resolve: turns a cell into a path (used when ``cfg.source == "file"``).

    Returns:
        The text with surrounding whitespace removed ("" means the sample has no text).

    Raises:
        ReadError: the named file is missing or is not UTF-8 text.
    """
    if cfg.source == "column":
        return cell.strip()
    if cell.strip() == "":
        return ""
    path = resolve(cell, cfg.path_template)
    if not path.is_file():
        raise ReadError("file not found" if not path.exists() else "not a file", path)
    try:
        return path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as err:
        raise ReadError(f"not UTF-8 text (byte {err.start} cannot be decoded)", path) from None
    except OSError as err:
        raise ReadError(f"cannot read the file: {err.strerror or err}", path) from None
