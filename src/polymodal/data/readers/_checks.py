"""Checks every reader applies to what it decoded: finite values and size limits.

They live in one place so that a NaN voxel, pixel or series value is the same data problem, with
the same wording, whichever reader meets it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polymodal.errors import ReadError


def require_finite(values: np.ndarray, what: str, path: Path | str | None, hint: str = "") -> None:
    """Raise :class:`ReadError` unless every element of ``values`` is finite.

    Args:
        values: decoded array of any shape.
        what: the elements' name in the message, e.g. ``"voxels"``.
        path: the file, named in the error.
        hint: appended to the reason, e.g. where such values come from.
    """
    finite = np.isfinite(values)
    if finite.all():
        return
    bad = int(finite.size - np.count_nonzero(finite))
    reason = f"{bad} of {finite.size} {what} are NaN or infinite"
    raise ReadError(f"{reason}; {hint}" if hint else reason, path)


def refuse_over_limit(count: int, limit: int, what: str, key: str, path: Path | str) -> None:
    """Raise :class:`ReadError` when ``count`` exceeds ``limit`` (the spec field ``key``).

    Args:
        count: e.g. the voxels a volume would have.
        limit: the modality's setting of ``key``.
        what: what is counted, with its context, e.g. ``"voxels after resampling"``.
        key: the spec field that sets the limit, named so the user can raise it.
        path: the file, named in the error.
    """
    if count > limit:
        raise ReadError(
            f"{count:,} {what} exceed the limit of {limit:,} ({key} of this modality); raise "
            f"{key} in the spec if the machine has the memory for it",
            path,
        )
