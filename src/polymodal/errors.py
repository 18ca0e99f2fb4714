"""Errors a user can meet. Each message says what was wrong, where, and what to do.

The CLI catches :class:`PolymodalError` and prints its message without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class PolymodalError(Exception):
    """Base class of every error that is the user's input, not a bug in polymodal."""


class SpecError(PolymodalError):
    """The cohort spec (YAML) is missing, unreadable or invalid; the message names the field."""


class ManifestError(PolymodalError):
    """The manifest table cannot be used as a whole (missing, empty, a declared column absent)."""


class ReadError(PolymodalError):
    """One file or value could not be read. ``reason`` is short and user-facing."""

    def __init__(self, reason: str, path: Path | str | None = None) -> None:
        self.reason = reason
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class ModelError(PolymodalError):
    """A model folder or configuration cannot be used (missing file, mismatched cohort)."""
