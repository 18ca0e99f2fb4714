"""Values and files that could not be used: one :class:`DataIssue` each, raised or recorded.

The readers raise :class:`~polymodal.errors.ReadError` for a file or value they cannot use;
:func:`read_or_record` decides, per the caller's ``on_error``, whether that stops the run
(``"fail"``) or makes the modality unavailable for the row and is listed (``"skip-modality"``).
It imports nothing of polymodal but its errors, so the modality kinds (:mod:`polymodal.modalities`),
the fitting of the preprocessing state and the dataset all record issues the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from polymodal.errors import ReadError

OnError = Literal["fail", "skip-modality"]
_T = TypeVar("_T")


@dataclass(frozen=True)
class DataIssue:
    """One value or file that could not be used; the sample went on without it.

    ``modality`` names the modality, or the target for a label that could not be encoded.
    """

    row_id: str
    modality: str
    reason: str
    column: str | None = None

    def __str__(self) -> str:
        where = f"row {self.row_id!r}, {self.modality!r}"
        if self.column:
            where += f" (column {self.column!r})"
        return f"{where}: {self.reason}"


def read_or_record(
    read: Callable[..., _T],
    *args: Any,
    row_id: str,
    modality: str,
    column: str | None,
    on_error: OnError,
    issues: list[DataIssue],
) -> _T | None:
    """``read(*args)``; on :class:`ReadError` raise (``"fail"``) or record it and return None."""
    try:
        return read(*args)
    except ReadError as err:
        issue = DataIssue(row_id, modality, str(err), column)
        if on_error == "fail":
            raise ReadError(
                f"{issue}; fix the file or value, or use on_error='skip-modality'"
            ) from None
        issues.append(issue)
        return None


ISSUE_COLUMNS = ("row_id", "modality", "column", "reason")


def write_issues_csv(path: Path, issues: Iterable[DataIssue]) -> None:
    """``data_issues.csv``: the skipped values and files, one row each (a header when none)."""
    import pandas as pd

    records = [{c: getattr(i, c) for c in ISSUE_COLUMNS} for i in issues]
    pd.DataFrame(records, columns=list(ISSUE_COLUMNS)).to_csv(path, index=False)
