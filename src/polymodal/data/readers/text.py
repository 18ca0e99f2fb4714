"""Text reader: the free text in a manifest column, or the content of a file the column names.

Non-finite values do not arise in text. Size: a text longer than ``max_chars`` characters (in
the cell or in the file) is refused; a file is read no further than that.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from polymodal.data.remote import RemoteFile, local_copy
from polymodal.errors import ReadError


class TextSettings(Protocol):
    """What the text reader uses of a text modality's spec section."""

    column: str | None
    path_template: str | None
    source: str
    max_chars: int


# (cell value, path_template) -> file path; Cohort.resolve_path has this signature.
PathResolver = Callable[[str, "str | None"], "Path | RemoteFile"]


def _too_long(max_chars: int, path: Path | None = None) -> ReadError:
    return ReadError(
        f"the text is longer than {max_chars:,} characters, the limit (max_chars of this "
        "modality); raise max_chars in the spec if such texts are expected",
        path,
    )


def _read_file(path: Path, max_chars: int) -> str:
    """The file's UTF-8 text, reading at most ``max_chars + 1`` characters."""
    try:
        with path.open(encoding="utf-8") as handle:
            text = handle.read(max_chars + 1)
    except UnicodeDecodeError as err:
        raise ReadError(f"not UTF-8 text (byte {err.start} cannot be decoded)", path) from None
    except OSError as err:
        raise ReadError(f"cannot read the file: {err.strerror or err}", path) from None
    if len(text) > max_chars:
        raise _too_long(max_chars, path)
    return text


def read_text(cell: str, cfg: TextSettings, resolve: PathResolver) -> str:
    """The text of one sample.

    Args:
        cell: the manifest cell of ``cfg.column``.
        cfg: the text modality.
        resolve: turns a cell into a path (used when ``cfg.source == "file"``).

    Returns:
        The text with surrounding whitespace removed ("" means the sample has no text).

    Raises:
        ReadError: the named file is missing or is not UTF-8 text, or the text is longer than
            ``cfg.max_chars``.
    """
    if cfg.source == "column":
        if len(cell) > cfg.max_chars:
            raise _too_long(cfg.max_chars)
        return cell.strip()
    if cell.strip() == "":
        return ""
    # A URL (polymodal.data.remote) is read from a local copy, removed afterwards.
    with local_copy(resolve(cell, cfg.path_template)) as path:
        if not path.is_file():
            raise ReadError("file not found" if not path.exists() else "not a file", path)
        return _read_file(path, cfg.max_chars).strip()
