"""The cells a dataset reads, one row at a time, kept in Arrow memory until the row is read.

A dataset over a million-row cohort would otherwise hold a dict of Python strings per row (the
cohort's text again, as objects: some 0.9 KB a row for nine columns). Here the rows' columns
stay Arrow arrays and a row becomes a ``dict`` of ``str`` when it is read, in about 1 µs a cell.
Arrow buffers are also shared as they are by forked DataLoader workers, where touching Python
objects would copy their memory pages.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from polymodal.data.text_columns import as_arrow_text


class RowCells:
    """Cells of chosen rows and columns of a manifest frame; ``rows[i]`` is ``{column: str}``.

    Args:
        frame: the manifest (every column text, as :class:`~polymodal.data.manifest.Cohort`
            holds it).
        columns: the columns to keep (distinct names of ``frame``).
        positions: row positions ``(n,)`` into ``frame``; row ``i`` here is ``positions[i]``.
    """

    def __init__(self, frame: pd.DataFrame, columns: Sequence[str], positions: np.ndarray):
        rows = as_arrow_text(frame.iloc[positions][list(columns)].reset_index(drop=True))
        table = pa.Table.from_pandas(rows, preserve_index=False)
        # One chunk per column: reading cell i is then one offset lookup.
        self._columns = [(name, table.column(name).combine_chunks()) for name in columns]
        self._length = len(rows)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, str]:
        if not -self._length <= index < self._length:
            raise IndexError(f"row {index} of {self._length}")
        return {name: values[index].as_py() for name, values in self._columns}

    def __iter__(self) -> Iterator[dict[str, str]]:
        for index in range(self._length):
            yield self[index]
