"""Time-series reader: one CSV or Parquet file per sample, a time column plus channels.

Sampling may be irregular and a channel may be unmeasured at a step (NaN there). Rows come back
sorted by time; a value that is not a number is an error naming its row and column in the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from polymodal.data.spec import SeriesModality
from polymodal.errors import ReadError

# Cells that mean "not measured at this step".
SERIES_MISSING_VALUES = frozenset({"", "NA", "NaN", "nan", "null", "None"})


def _read_frame(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        if name.endswith((".csv", ".csv.gz", ".tsv")):
            sep = "\t" if name.endswith(".tsv") else ","
            return pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep)
    except pd.errors.EmptyDataError:
        raise ReadError("the series file is empty (no header)", path) from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as err:
        raise ReadError(f"not a readable CSV/Parquet table: {err}", path) from None
    raise ReadError(f"unsupported series format {path.suffix!r}; use .csv, .tsv or .parquet", path)


def _numeric_column(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """One column as float64 ``(T,)``; NaN for missing markers, ReadError for anything else."""
    values = frame[column]
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    text = values.astype(str).str.strip()
    text = text.where(~text.isin(SERIES_MISSING_VALUES), None)
    parsed = pd.to_numeric(text, errors="coerce")
    bad = parsed.isna() & text.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ReadError(
            f"row {row + 1}, column {column!r}: {values.iat[row]!r} is not a number "
            f"({int(bad.sum())} such value(s) in this column)",
            path,
        )
    return parsed.to_numpy(dtype=np.float64, na_value=np.nan)


def read_series(path: Path, cfg: SeriesModality) -> tuple[np.ndarray, np.ndarray]:
    """Read one sample's time series.

    Returns:
        times: float64 ``(T,)``, sorted ascending.
        values: float64 ``(T, C)`` with ``C = len(cfg.channels)``; NaN where not measured.

    Raises:
        ReadError: missing file, a declared time/channel column absent, a non-numeric value,
            a missing time, or no rows.
    """
    path = Path(path)
    if not path.is_file():
        raise ReadError("file not found" if not path.exists() else "not a file", path)
    frame = _read_frame(path)
    frame.columns = [str(c) for c in frame.columns]
    for column, field in [(cfg.time_column, "time_column")] + [
        (c, "channels") for c in cfg.channels
    ]:
        if column not in frame.columns:
            raise ReadError(
                f"column {column!r} (declared in {field}) is missing; "
                f"columns present: {', '.join(frame.columns)}",
                path,
            )
    if len(frame) == 0:
        raise ReadError("the series has no rows", path)
    times = _numeric_column(frame, cfg.time_column, path)
    if np.isnan(times).any():
        row = int(np.flatnonzero(np.isnan(times))[0])
        raise ReadError(f"row {row + 1}, column {cfg.time_column!r}: the time is missing", path)
    values = np.stack([_numeric_column(frame, c, path) for c in cfg.channels], axis=1)  # (T, C)
    # A stable sort keeps the file's order among steps recorded at the same time.
    order = np.argsort(times, kind="stable")
    return times[order], values[order]
