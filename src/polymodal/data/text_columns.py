"""The dtype of a cohort's manifest columns: text held in Arrow memory, not as Python objects.

A manifest is read with every column as text (nothing coerced). Kept as Python ``str`` objects
(pandas' ``object`` dtype), each cell costs a separate object of some 50-60 bytes plus an 8-byte
pointer: about 0.9 GB per million rows for nine columns (``bench/results/big_manifest.md``).
Arrow stores a column as one buffer of UTF-8 bytes plus one offset per cell.

:data:`TEXT` is pandas' pyarrow-backed string dtype with NumPy missing-value semantics
(``pd.StringDtype("pyarrow", na_value=np.nan)``, the ``str`` dtype pandas 3 reads text into).
It is chosen over ``"string[pyarrow]"`` (missing value ``pd.NA``) and ``pd.ArrowDtype(pa.string())``
because the code that reads a cohort was written for NumPy results, and with this dtype it gets
them: ``column == ""`` and ``.isin()`` give ``bool`` arrays (not nullable ``boolean`` or
``bool[pyarrow]``), ``.str.len()`` gives ``int64``, ``pd.to_numeric`` gives ``float64``, and a cell,
an iterated value or ``.tolist()`` is a Python ``str``. Blank cells are ``""``, never missing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TEXT = pd.StringDtype("pyarrow", na_value=np.nan)


def as_arrow_text(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every column :data:`TEXT` (a missing value, e.g. None, becomes ``""``).

    Columns already :data:`TEXT` are kept as they are; ``frame.attrs`` is kept. Meant for
    frames of text (a manifest read as ``str``): any other value becomes its ``str``.
    """
    if all(dtype == TEXT for dtype in frame.dtypes):
        return frame
    out = frame.copy(deep=False)
    for position, dtype in enumerate(frame.dtypes):
        if dtype != TEXT:
            column = frame.iloc[:, position]
            out.isetitem(position, column.astype(TEXT).fillna(""))
    return out
