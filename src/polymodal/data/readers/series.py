"""Time-series reader: one CSV or Parquet file per sample, a time column plus channels.

Sampling may be irregular and a channel may be unmeasured at a step (NaN there). Rows come back
sorted by time; a value that is not a number is an error naming its row and column in the file.

Non-finite values: NaN (a blank cell or a missing marker such as ``NA``) means "not measured at
this step" and is kept as such: the model sees it through the ``observed`` mask, never as a
value. An infinite value (``inf``, or a number too large for a float such as ``1e999``) is not
a measurement and is an error naming its row and column. A file of more than ``max_rows`` rows
is refused before it is parsed further.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from polymodal.data.readers._checks import refuse_over_limit
from polymodal.data.remote import reads_local
from polymodal.errors import ReadError


class SeriesSettings(Protocol):
    """What the series reader uses of a series modality's spec section."""

    time_column: str
    channels: list[str]
    max_rows: int


# Cells that mean "not measured at this step".
SERIES_MISSING_VALUES = frozenset({"", "NA", "NaN", "nan", "null", "None"})


def _read_frame(path: Path, max_rows: int) -> pd.DataFrame:
    """The table, every cell a str for CSV/TSV; at most ``max_rows + 1`` rows are parsed."""
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            # The row count is in the footer: a huge file is refused before its data is read.
            rows = pq.ParquetFile(path).metadata.num_rows
            refuse_over_limit(rows, max_rows, "rows", "max_rows", path)
            return pd.read_parquet(path)
        if name.endswith((".csv", ".csv.gz", ".tsv")):
            sep = "\t" if name.endswith(".tsv") else ","
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep, nrows=max_rows + 1)
            if len(frame) > max_rows:
                raise ReadError(
                    f"the file has more than {max_rows:,} rows, the limit (max_rows of this modality); "
                    "raise max_rows in the spec if the machine has the memory for it",
                    path,
                )
            return frame
    except pd.errors.EmptyDataError:
        raise ReadError("the series file is empty (no header)", path) from None
    except (
        pd.errors.ParserError,
        UnicodeDecodeError,
        OSError,
        ValueError,
        EOFError,
        KeyError,
        TypeError,
        IndexError,
        NotImplementedError,
    ) as err:
        # pyarrow's errors for a damaged Parquet file subclass these builtins (ArrowInvalid is
        # a ValueError, ArrowKeyError a KeyError...), and pandas raises KeyError/TypeError for
        # damaged pandas metadata in it.
        raise ReadError(f"not a readable CSV/Parquet table: {err}", path) from None
    raise ReadError(f"unsupported series format {path.suffix!r}; use .csv, .tsv or .parquet", path)


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def _numeric_column(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """One column as float64 ``(T,)``; NaN for missing markers, ReadError for anything else
    (a word, or an infinite value)."""
    values = frame[column]
    if pd.api.types.is_numeric_dtype(values):
        parsed = values.to_numpy(dtype=np.float64, na_value=np.nan)
        shown = [float(v) for v in parsed]  # np.float64(-inf) reads as -inf
    else:
        shown = values.tolist()
        text = values.astype(str).str.strip()
        text = text.where(~text.isin(SERIES_MISSING_VALUES), None)
        numbers = pd.to_numeric(text, errors="coerce")
        bad = numbers.isna() & text.notna()
        # pandas gives NaN for a number beyond the float range, where Python gives inf.
        numbers = numbers.where(~bad, text[bad].map(_float_or_nan))
        bad = numbers.isna() & text.notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ReadError(
                f"row {row + 1}, column {column!r}: {shown[row]!r} is not a number "
                f"({int(bad.sum())} such value(s) in this column)",
                path,
            )
        parsed = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    infinite = np.isinf(parsed)
    if infinite.any():
        row = int(np.flatnonzero(infinite)[0])
        raise ReadError(
            f"row {row + 1}, column {column!r}: {shown[row]!r} is infinite "
            f"({int(infinite.sum())} such value(s) in this column); leave a value that was not "
            "measured blank",
            path,
        )
    return parsed


@reads_local  # a URL (polymodal.data.remote) is read from a local copy
def read_series(path: Path, cfg: SeriesSettings) -> tuple[np.ndarray, np.ndarray]:
    """Read one sample's time series.

    Returns:
        times: float64 ``(T,)``, sorted ascending, all finite.
        values: float64 ``(T, C)`` with ``C = len(cfg.channels)``; NaN where not measured (the
            only non-finite value returned; it is an unobserved value, not an error).

    Raises:
        ReadError: missing file, a declared time/channel column absent, a non-numeric or
            infinite value, a missing time, no rows, or more rows than ``cfg.max_rows``.
    """
    path = Path(path)
    if not path.is_file():
        raise ReadError("file not found" if not path.exists() else "not a file", path)
    frame = _read_frame(path, cfg.max_rows)
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
