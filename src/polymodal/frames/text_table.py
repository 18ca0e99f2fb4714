"""A typed DataFrame as the all-``str`` table polymodal reads a manifest into.

A manifest is read with every column as text (:func:`polymodal.data.manifest._read_table`), so
that a cell is parsed once, by the part that knows what it means. A frame handed over from
Python holds numbers, booleans, NaN and None instead; this turns it into the same text a CSV
of it would hold, so a model trained on a frame predicts a CSV of the same rows alike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def as_text_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column as ``str``: missing values (NaN, None, NA) become ``""``, whole-number
    floats their integer (``1.0`` → ``"1"``: a column of ints with a gap is float in pandas),
    booleans ``"True"``/``"False"``; column names become ``str``."""
    out = pd.DataFrame(index=range(len(frame)))
    for column in frame.columns:
        out[str(column)] = _column_text(frame[column].reset_index(drop=True))
    return out


def _column_text(values: pd.Series) -> pd.Series:
    missing = values.isna().to_numpy()
    if pd.api.types.is_float_dtype(values.dtype):
        present = values.to_numpy()[~missing]
        if len(present) and np.all(np.isfinite(present)) and np.all(present == np.round(present)):
            values = values.astype("Int64")
    text = values.astype(object).astype(str)
    return text.where(~missing, "")
