"""A per-sample CSV/Parquet time series: a time column and channels, irregularly sampled.

Fields ``values`` ``(T, C)``, ``observed`` ``(T, C)``, ``times`` ``(T,)`` and ``step_mask``
``(T,)``, padded by collate (see :mod:`polymodal.data.batch`). Fitted on the training series:
each channel's mean and standard deviation and the time scale. Elements are the channels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import Tensor

from polymodal.data import readers
from polymodal.data.cells import is_blank
from polymodal.data.issues import read_or_record
from polymodal.errors import ReadError
from polymodal.modalities.base import (
    MODALITIES,
    Example,
    Fitted,
    FittedInputs,
    ModalityKind,
    ModalitySpec,
    PathResolver,
    RowReader,
    TrainingRows,
)
from polymodal.modalities.elements import Element, Fields, Occlusion, without
from polymodal.modalities.tabular import fits_float32

# Longest file (rows) read by default.
DEFAULT_MAX_ROWS = 100_000


class SeriesModality(ModalitySpec):
    """A per-sample CSV/Parquet time series: a time column and channels; irregular sampling."""

    kind: Literal["series"]
    column: str
    # Build the file path from the cell value, e.g. "images/{}.jpg" (relative to the data root).
    path_template: str | None = None
    time_column: str = "time"
    channels: list[str] = Field(min_length=1)
    # Bin width for discretisation (same unit as time); None keeps the raw (irregular) steps.
    bin_width: float | None = Field(None, gt=0)
    # The model sees only the last `max_steps` steps (after binning).
    max_steps: int = Field(128, ge=1)
    # Longest file (rows) read; a longer one is refused before it is parsed further.
    max_rows: int = Field(DEFAULT_MAX_ROWS, ge=1)


class _ChannelMoments:
    """Per-channel mean and spread accumulated over series of different lengths.

    Sums of values shifted by a per-channel reference (the first value seen) keep the variance
    numerically stable.
    """

    def __init__(self, n_channels: int) -> None:
        self.reference = np.full(n_channels, np.nan)
        self.total = np.zeros(n_channels)
        self.total_sq = np.zeros(n_channels)
        self.count = np.zeros(n_channels)

    def add(self, values: np.ndarray) -> None:
        """One series' values ``(T, C)``, NaN where unmeasured."""
        observed = np.isfinite(values)
        columns = np.arange(values.shape[1])
        first = np.where(observed.any(0), values[observed.argmax(0), columns], np.nan)
        self.reference = np.where(np.isnan(self.reference), first, self.reference)
        shifted = np.where(observed, values - np.nan_to_num(self.reference), 0.0)
        self.total = self.total + shifted.sum(0)
        self.total_sq = self.total_sq + (shifted**2).sum(0)
        self.count = self.count + observed.sum(0)

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """``(C,)`` means and standard deviations; 0 and 1 for a channel never measured."""
        safe = np.maximum(self.count, 1)
        mean = np.where(self.count > 0, np.nan_to_num(self.reference) + self.total / safe, 0.0)
        std = np.sqrt(np.maximum(self.total_sq / safe - (self.total / safe) ** 2, 0.0))
        return mean, np.where((self.count > 0) & (std > 1e-12), std, 1.0)


@MODALITIES.register("series")
class Series(ModalityKind):
    name = "series"
    spec = SeriesModality
    fields = ("values", "observed", "times", "step_mask")
    default_encoder = "series_tokens"
    info_keys = ("channels", "max_steps")
    padded_fields = frozenset({"values", "observed", "times", "step_mask"})

    def columns(self, cfg: SeriesModality) -> list[str]:
        return [cfg.column]

    def file_columns(self, cfg: SeriesModality) -> list[str]:
        return [cfg.column]

    def read_file(
        self, cfg: SeriesModality, cell: str, resolve: PathResolver
    ) -> tuple[np.ndarray, np.ndarray]:
        """Times and values by :func:`~polymodal.data.readers.read_series`."""
        return readers.read_series(resolve(cell, cfg.path_template), cfg)

    def fit(self, name: str, cfg: SeriesModality, train: TrainingRows) -> dict[str, Any]:
        moments = _ChannelMoments(len(cfg.channels))
        spans = []
        for row_id, cell in zip(train.ids, train.rows[cfg.column], strict=True):
            if is_blank(cell):
                continue
            read = read_or_record(
                readers.read_series,
                train.resolve(cell, cfg.path_template),
                cfg,
                row_id=row_id,
                modality=name,
                column=cfg.column,
                on_error=train.on_error,
                issues=train.issues,
            )
            if read is None:
                continue
            times, values = read  # (T,), (T, C)
            moments.add(values)
            spans.append(float(times[-1] - times[0]))
        mean, std = moments.mean_std()
        # Times become (t - first time) / time_scale: most training series then span about [0, 1].
        time_scale = float(np.percentile(spans, 95)) if spans else 0.0
        return {
            "mean": mean.tolist(),
            "std": std.tolist(),
            "time_scale": time_scale if time_scale > 0 else 1.0,
        }

    def input_info(self, cfg: SeriesModality, state: Mapping[str, Any]) -> dict[str, Any]:
        return {"kind": self.name, "channels": list(cfg.channels), "max_steps": cfg.max_steps}

    def empty_inputs(self, fitted: Fitted) -> dict[str, Tensor]:
        channels = len(fitted.cfg.channels)
        return {
            "values": torch.zeros(1, channels),
            "observed": torch.zeros(1, channels, dtype=torch.bool),
            "times": torch.zeros(1),
            "step_mask": torch.zeros(1, dtype=torch.bool),
        }

    def transform(self, fitted: Fitted, times: np.ndarray, values: np.ndarray) -> dict[str, Tensor]:
        """Reader output (times ``(T,)``, values ``(T, C)`` NaN unmeasured) -> ``values``
        ``(T', C)`` scaled, ``observed`` ``(T', C)``, ``times`` ``(T',)`` and ``step_mask``.

        With ``bin_width`` the series becomes a regular grid of bins from its first observation
        (last observation per channel in a bin; empty bins are steps with nothing observed);
        otherwise the raw steps are kept. Only the last ``max_steps`` steps remain. Times are
        ``(t - first time) / time_scale`` (``time_scale`` fitted on training series spans).
        """
        cfg, st = fitted.cfg, fitted.state
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        values = np.asarray(values, dtype=np.float64).reshape(len(times), -1)
        if values.shape[1] != len(cfg.channels):
            raise ReadError(f"series with {values.shape[1]} channels, expected {cfg.channels}")
        keep = np.isfinite(times)
        times, values = times[keep], values[keep]
        if times.size == 0:
            raise ReadError("the series has no time steps")
        order = np.argsort(times, kind="stable")
        times, values = times[order], values[order]
        start = times[0]
        if cfg.bin_width is not None:
            values, step_times = _binned(cfg, times, values)
        else:
            values, step_times = values[-cfg.max_steps :], times[-cfg.max_steps :]
        observed = np.isfinite(values)
        scaled = (values - np.asarray(st["mean"])) / np.asarray(st["std"])
        scaled_times = (step_times - start) / st["time_scale"]
        if not fits_float32(scaled[observed]):
            raise ReadError("series values too large to scale with the training values")
        if not fits_float32(scaled_times):
            raise ReadError("series times too far apart to scale with the training time scale")
        return {
            "values": torch.from_numpy(np.where(observed, scaled, 0.0).astype(np.float32)),
            "observed": torch.from_numpy(observed),
            "times": torch.from_numpy(scaled_times.astype(np.float32)),
            "step_mask": torch.ones(len(step_times), dtype=torch.bool),
        }

    def decode(self, fitted: Fitted, path: Path) -> dict[str, Tensor]:
        """One file's fields: :func:`~polymodal.data.readers.read_series`, then the transform."""
        return self.transform(fitted, *readers.read_series(path, fitted.cfg))

    def encode(
        self, prep: FittedInputs, name: str, cells: Mapping[str, str], row: RowReader
    ) -> dict[str, Tensor] | None:
        fitted = prep.fitted(name)
        cfg = fitted.cfg
        cell = cells.get(cfg.column, "")
        if is_blank(cell):
            return None
        decode = partial(self.decode, fitted)
        return row.load(prep, name, cell, cfg.path_template, decode, cfg.column)

    def occlusions(
        self, fitted: Fitted, fields: Fields, sentences: Sequence[tuple[str, str]] | None
    ) -> list[Occlusion]:
        """Each measured channel, made unobserved at every step."""
        modality = fitted.name
        out = []
        for index, channel in enumerate(fitted.cfg.channels):
            if not bool(fields["observed"][:, index].any()):
                continue
            occluded = without(fields)
            occluded["values"][:, index] = 0.0
            occluded["observed"][:, index] = False
            element = Element(f"{modality}.{channel}", "channel", modality, channel)
            out.append(Occlusion(element, occluded))
        return out

    def example(self, folder: Path) -> Example:
        """Three irregular CSV series of two channels (some values unmeasured); the last row
        has none."""
        rng = np.random.default_rng(0)
        cells = []
        for index, steps in enumerate((5, 3, 7)):
            frame = pd.DataFrame(
                {
                    "t": np.sort(rng.uniform(0, 10, steps)).round(3),
                    "hr": rng.normal(80, 10, steps).round(1),
                    "sbp": rng.normal(120, 15, steps).round(1),
                }
            )
            frame.loc[1, "sbp"] = np.nan
            frame.to_csv(folder / f"vitals{index}.csv", index=False)
            cells.append({"vitals": f"vitals{index}.csv"})
        cells.append({"vitals": ""})
        spec = {
            "kind": self.name,
            "column": "vitals",
            "time_column": "t",
            "channels": ["hr", "sbp"],
        }
        return Example(spec, cells, encoder_options={"num_frequencies": 3})


def _binned(
    cfg: SeriesModality, times: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted steps -> the last ``max_steps`` bins of ``bin_width`` from the first observation:
    values ``(T', C)`` (the last measured value of each channel in a bin, NaN for none) and the
    bins' start times ``(T',)``."""
    start = times[0]
    step = np.floor((times - start) / cfg.bin_width).astype(np.int64)
    first_bin = max(0, int(step[-1]) - cfg.max_steps + 1)
    recent = step >= first_bin
    frame = pd.DataFrame(values[recent]).assign(step=step[recent])
    # groupby.last skips NaN: the last *measured* value of each channel in each bin.
    grid = frame.groupby("step").last().reindex(range(first_bin, int(step[-1]) + 1))
    step_times = start + np.arange(first_bin, int(step[-1]) + 1) * cfg.bin_width
    return grid.to_numpy(dtype=np.float64), step_times
