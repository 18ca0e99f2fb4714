"""Named numeric and categorical manifest columns; a missing value stays missing, per value.

Fields ``numeric`` ``(F_num,)``, ``numeric_missing`` ``(F_num,)`` and ``categorical``
``(F_cat,)`` (see :mod:`polymodal.data.batch`). Fitted on the training rows: each numeric
column's mean and standard deviation and each categorical column's vocabulary. Elements are the
row's present values (fields).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator
from torch import Tensor

from polymodal.data.cells import (
    DEFAULT_MISSING_VALUES,
    column_numbers,
    is_missing,
    mean_std,
    parse_number,
)
from polymodal.data.issues import DataIssue
from polymodal.errors import ReadError
from polymodal.modalities.base import (
    MODALITIES,
    CellCheck,
    Example,
    Fitted,
    FittedInputs,
    ModalityKind,
    ModalitySpec,
    RowReader,
    TrainingRows,
)
from polymodal.modalities.elements import Element, Fields, Occlusion, without

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def fits_float32(values: Any) -> bool:
    """True when every value is finite and stays finite as float32 (the tensors' dtype)."""
    return bool(np.all(np.abs(np.asarray(values, dtype=np.float64)) <= _FLOAT32_MAX))


class TabularModality(ModalitySpec):
    """Named numeric and categorical columns; a missing value stays missing, per value."""

    kind: Literal["tabular"]
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    # Values that mean "missing" besides an empty cell (e.g. "unknown").
    missing_values: list[str] = Field(default_factory=lambda: list(DEFAULT_MISSING_VALUES))
    # Categories seen fewer times in training go to the unknown bucket.
    min_category_count: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _some_columns(self) -> TabularModality:
        if not self.numeric and not self.categorical:
            raise ValueError("declare at least one 'numeric' or 'categorical' column")
        return self


def no_value(fields: Fields) -> bool:
    """The rule of the data layer: a tabular modality with no value at all is unavailable."""
    return bool(fields["numeric_missing"].all()) and not bool(fields["categorical"].any())


@MODALITIES.register("tabular")
class Tabular(ModalityKind):
    name = "tabular"
    spec = TabularModality
    fields = ("numeric", "numeric_missing", "categorical")
    default_encoder = "tabular_tokens"
    info_keys = ("numeric", "categorical")
    token_layout = "columns"

    def columns(self, cfg: TabularModality) -> list[str]:
        """Numeric columns first, then categorical ones: the order of the encoder's tokens."""
        return [*cfg.numeric, *cfg.categorical]

    def fit(self, name: str, cfg: TabularModality, train: TrainingRows) -> dict[str, Any]:
        rows, ids = train.rows, train.ids
        stats = [mean_std(column_numbers(rows, ids, c, cfg.missing_values)) for c in cfg.numeric]
        vocabularies = {}
        for column in cfg.categorical:
            counts = Counter(
                c.strip() for c in rows[column] if not is_missing(c, cfg.missing_values)
            )
            vocabularies[column] = sorted(
                v for v, n in counts.items() if n >= cfg.min_category_count
            )
        return {
            "mean": [m for m, _ in stats],
            "std": [s for _, s in stats],
            "vocabularies": vocabularies,
        }

    def input_info(self, cfg: TabularModality, state: Mapping[str, Any]) -> dict[str, Any]:
        # Cardinality counts the reserved ids 0 (missing) and 1 (unknown / rare).
        categorical = {c: 2 + len(v) for c, v in state["vocabularies"].items()}
        return {"kind": self.name, "numeric": list(cfg.numeric), "categorical": categorical}

    def empty_inputs(self, fitted: Fitted) -> dict[str, Tensor]:
        cfg = fitted.cfg
        return {
            "numeric": torch.zeros(len(cfg.numeric)),
            "numeric_missing": torch.ones(len(cfg.numeric), dtype=torch.bool),
            "categorical": torch.zeros(len(cfg.categorical), dtype=torch.int64),
        }

    def _vocabulary(self, fitted: Fitted, column: str) -> dict[str, int]:
        """Position of each training category of ``column``, built once per process."""
        key = f"vocabulary:{column}"
        if key not in fitted.scratch:
            items = fitted.state["vocabularies"][column]
            fitted.scratch[key] = {item: position for position, item in enumerate(items)}
        return fitted.scratch[key]

    def transform(
        self,
        fitted: Fitted,
        cells: Mapping[str, str],
        bad_values: list[tuple[str, str]] | None = None,
    ) -> dict[str, Tensor]:
        """Manifest cells -> ``numeric`` ``(F_num,)`` scaled with the training mean/std (0 and
        ``numeric_missing`` True where missing) and ``categorical`` ``(F_cat,)`` ids.

        A numeric cell that is not a finite number (or too far from the training values to
        scale) raises :class:`ReadError`, or, when ``bad_values`` is a list, becomes missing and
        ``(column, reason)`` is appended there. Every value returned is finite.
        """
        cfg, st = fitted.cfg, fitted.state
        # Filled as Python lists, made tensors once: an item assignment into a tensor costs more
        # than the rest of a value's work.
        numeric, missing = [0.0] * len(cfg.numeric), [True] * len(cfg.numeric)
        categorical = [0] * len(cfg.categorical)
        for index, column in enumerate(cfg.numeric):
            try:
                value = parse_number(cells.get(column, ""), cfg.missing_values)
                if math.isnan(value):
                    continue
                scaled = (value - st["mean"][index]) / st["std"][index]
                # A scalar: math, not NumPy (a NumPy reduction per value cost 10 µs).
                if not (math.isfinite(scaled) and abs(scaled) <= _FLOAT32_MAX):
                    raise ReadError(f"{value:g} is too large to scale with the training values")
            except ReadError as err:
                if bad_values is None:
                    raise ReadError(f"column {column!r}: {err.reason}") from None
                bad_values.append((column, f"{err.reason}; used as missing"))
                continue
            numeric[index], missing[index] = scaled, False
        for index, column in enumerate(cfg.categorical):
            cell = cells.get(column, "")
            if not is_missing(cell, cfg.missing_values):
                # Ids 0 and 1 are reserved: missing, and unknown / rare in training.
                position = self._vocabulary(fitted, column).get(cell.strip(), -1)
                categorical[index] = 2 + position
        return {
            "numeric": torch.tensor(numeric, dtype=torch.float32),
            "numeric_missing": torch.tensor(missing, dtype=torch.bool),
            "categorical": torch.tensor(categorical, dtype=torch.int64),
        }

    def encode(
        self, prep: FittedInputs, name: str, cells: Mapping[str, str], row: RowReader
    ) -> dict[str, Tensor] | None:
        bad: list[tuple[str, str]] | None = None if row.on_error == "fail" else []
        fields = row.read(self.transform, prep.fitted(name), cells, bad, modality=name, column=None)
        row.issues.extend(
            DataIssue(row.row_id, name, reason, column) for column, reason in bad or []
        )
        # Unavailable only when every value is missing; otherwise missingness is per value.
        return None if fields is None or no_value(fields) else fields

    def check_cells(self, cfg: TabularModality, frame: pd.DataFrame) -> CellCheck:
        """Missing rate per column; a row has the modality when any value is present; a numeric
        cell that is not a finite number is a problem (the dataset uses it as missing)."""
        rates: dict[str, float] = {}
        problems: list[tuple[int, str, str]] = []
        present_any = np.zeros(len(frame), dtype=bool)
        markers = set(cfg.missing_values)
        for column in self.columns(cfg):
            values = frame[column].str.strip()
            missing = (values == "") | values.isin(markers)
            rates[column] = float(missing.mean())
            present_any |= ~missing.to_numpy()
            if column not in cfg.numeric:
                continue
            numbers = pd.to_numeric(values.where(~missing), errors="coerce")
            # pandas screens fast; parse_number, which the dataset uses, has the last word.
            suspect = (~missing & ~np.isfinite(numbers.astype(float))).to_numpy()
            for pos in np.flatnonzero(suspect):
                try:
                    parse_number(frame[column].iat[pos], markers)
                except ReadError as err:
                    problems.append((int(pos), column, err.reason))
        return CellCheck(present_any, problems, rates)

    def unseen_values(
        self, cfg: TabularModality, state: Mapping[str, Any], rows: pd.DataFrame
    ) -> dict[str, list[str]]:
        """Per categorical column, the values the fitted vocabulary does not hold."""
        unseen = {}
        for column in cfg.categorical:
            known = set(state["vocabularies"][column])
            values = sorted(
                {
                    c
                    for c in rows[column].str.strip()
                    if c not in known and not is_missing(c, cfg.missing_values)
                }
            )
            if values:
                unseen[column] = values
        return unseen

    def occlusions(
        self, fitted: Fitted, fields: Fields, sentences: Sequence[tuple[str, str]] | None
    ) -> list[Occlusion]:
        """Each present value, made missing as a blank cell arrives."""
        cfg, modality = fitted.cfg, fitted.name
        out = []
        for index, column in enumerate(cfg.numeric):
            if bool(fields["numeric_missing"][index]):
                continue
            occluded = without(fields)
            occluded["numeric"][index] = 0.0
            occluded["numeric_missing"][index] = True
            element = Element(f"{modality}.{column}", "field", modality, column)
            out.append(Occlusion(element, None if no_value(occluded) else occluded))
        for index, column in enumerate(cfg.categorical):
            if int(fields["categorical"][index]) == 0:
                continue
            occluded = without(fields)
            occluded["categorical"][index] = 0
            element = Element(f"{modality}.{column}", "field", modality, column)
            out.append(Occlusion(element, None if no_value(occluded) else occluded))
        return out

    def example(self, folder: Path) -> Example:
        """Two numeric and one categorical column; one value missing, the last row empty."""
        cells = [
            {"age": "61", "crp": "3.5", "sex": "F"},
            {"age": "47", "crp": "", "sex": "M"},
            {"age": "70", "crp": "12", "sex": "unknown"},
            {"age": "", "crp": "NA", "sex": ""},
        ]
        spec = {"kind": self.name, "numeric": ["age", "crp"], "categorical": ["sex"]}
        return Example(spec, cells)
