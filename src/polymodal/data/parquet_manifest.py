"""A Parquet manifest read as text, only the columns asked for, one row group at a time.

A hospital manifest can hold a million rows and dozens of columns a cohort spec never names
(free-text notes, billing codes). Parquet stores each column apart, so only the columns the spec
uses are read from disk (pyarrow's ``columns=``), and the file is turned into text one row group
at a time: the typed values of one row group, not of the whole file, sit in memory beside the
text frame being built. Measured in ``bench/results/big_manifest.md``.

The text is what :func:`polymodal.data.manifest._read_table` gave a Parquet manifest before:
each typed value as Python's ``str`` of it (``1.5``, ``True``, ``2020-01-02 00:00:00``), a null
as ``""``, so a Parquet manifest reads as its CSV export does. Each row group's text goes into
Arrow memory (:data:`polymodal.data.text_columns.TEXT`) before the next is read, so only one
group's cells are ever Python strings.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import pandas as pd

from polymodal.data.text_columns import TEXT, as_arrow_text

# Key of ``DataFrame.attrs`` holding every column of the file, for messages about a missing one.
IN_FILE = "columns_in_file"


def read_parquet_text(path: Path, columns: Collection[str] | None = None) -> pd.DataFrame:
    """The manifest as text (every column :data:`~polymodal.data.text_columns.TEXT`, nulls
    ``""``), index ``0..N-1``.

    Args:
        path: the Parquet file.
        columns: read only these (those the file lacks are left out here, for the caller to
            report); None reads every column.

    Raises:
        OSError, ValueError: the file is not readable Parquet (pyarrow's errors subclass them).
    """
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path)
    names = file.schema_arrow.names
    keep = None if columns is None else [name for name in names if name in set(columns)]
    parts = [
        _as_text(file.read_row_group(group, columns=keep).to_pandas())
        for group in range(file.num_row_groups)
    ]
    if not parts:
        frame = pd.DataFrame(columns=names if keep is None else keep, dtype=TEXT)
    else:
        # Each group's index restarts at 0 (or is the pandas index it was written with).
        frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    frame.attrs[IN_FILE] = [n for n in names if not n.startswith("__index_level_")]
    return frame


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Typed columns -> the strings a CSV of them would hold, in Arrow memory; a null becomes
    ``""``."""
    frame = frame.reset_index(drop=True)
    return as_arrow_text(frame.astype(object).where(frame.notna(), "").astype(str))
