"""Regression targets: one numeric column, standardised with the training mean and spread.

Label ``()`` float (standardised when ``standardize``); head: one value, squared error;
prediction: ``value`` in the original unit; headline: RMSE (lower is better).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

import polymodal.targets.checks as checks
from polymodal.data.cells import LABEL_MISSING, column_numbers, is_blank, mean_std, parse_number
from polymodal.errors import ReadError
from polymodal.targets.base import (
    TARGETS,
    Example,
    LabelFrame,
    TargetKind,
    TargetSpec,
    TargetState,
)
from polymodal.targets.head import PerSampleHead
from polymodal.targets.scores import EvaluationError, MetricOptions, MetricValues

_FLOAT32_MAX = float(np.finfo(np.float32).max)
ERROR_HEADERS = {"mae": "MAE", "rmse": "RMSE"}


class RegressionTarget(TargetSpec):
    kind: Literal["regression"]
    column: str
    standardize: bool = True


class RegressionState(TargetState):
    mean: float
    std: float


class RegressionHead(PerSampleHead):
    """One value in standardised units. Loss: mean squared error on the standardised target.

    Predicts ``value`` (B,) back in the original unit: ``logit · std + mean``.
    """

    def __init__(self, *, in_dim: int, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__(in_dim=in_dim, n_outputs=1, squeeze=True)
        self.mean = float(mean)
        self.std = float(std)

    def per_sample_loss(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        values = (logits - target.to(logits.dtype)) ** 2
        return values, torch.ones_like(values)

    def predict(self, logits: Tensor) -> dict[str, Tensor]:
        return {"value": logits * self.std + self.mean}


def regression_metrics(kind: str, y: np.ndarray, pred: np.ndarray) -> MetricValues:
    """mae, rmse, r2, pearson_r of ``pred (n,)`` against ``y (n,)``."""
    # Imported here, not at the top: scikit-learn/SciPy take seconds to import and a
    # model folder that only predicts never needs them (issue 12: load in < 5 s).
    from scipy.stats import pearsonr
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    if y.ndim != 1 or pred.ndim != 1:
        raise EvaluationError(
            f"{kind} metrics: expected y_true (n,) and pred (n,), got {y.shape} and {pred.shape}"
        )
    y = y.astype(np.float64)
    for what, values in (("y_true", y), ("pred", pred)):
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise EvaluationError(
                f"{kind} metrics: {what} at row {bad[0]} is {values[bad[0]]}; drop samples "
                "without a label (target_mask False) or a prediction before scoring"
            )
    out = MetricValues()
    out["mae"] = float(mean_absolute_error(y, pred))
    out["rmse"] = math.sqrt(mean_squared_error(y, pred))
    if np.ptp(y) == 0:
        out.undefined("r2", "y_true is constant; R² needs a target that varies")
    else:
        out["r2"] = float(r2_score(y, pred))
    if np.ptp(y) == 0 or np.ptp(pred) == 0:
        which = "y_true" if np.ptp(y) == 0 else "the predictions"
        out.undefined("pearson_r", f"{which} are constant; a correlation needs variation")
    else:
        out["pearson_r"] = float(pearsonr(y, pred).statistic)
    return out


@TARGETS.register("regression")
class Regression(TargetKind):
    name = "regression"
    spec = RegressionTarget
    state = RegressionState
    prediction = "value"
    headline = "rmse"
    table_metrics = ("mae", "rmse", "r2", "pearson_r")
    lower_is_better = frozenset({"mae", "rmse"})
    headers = MappingProxyType({**ERROR_HEADERS, "r2": "R²", "pearson_r": "Pearson r"})

    def fit(self, where: str, cfg: Any, rows: pd.DataFrame, ids: pd.Series) -> RegressionState:
        mean, std = mean_std(column_numbers(rows, ids, cfg.column, LABEL_MISSING))
        return RegressionState(mean=mean, std=std)

    def head_info(self, cfg: Any, state: Any) -> dict[str, Any]:
        return {"mean": state.mean, "std": state.std} if cfg.standardize else {}

    def encode(self, cfg: Any, state: Any, cells: Mapping[str, str]) -> Tensor | None:
        cell = cells.get(cfg.column, "")
        if is_blank(cell):
            return None
        label = cell.strip()
        try:
            value = parse_number(label, LABEL_MISSING)
        except ReadError as err:
            raise ReadError(f"column {cfg.column!r}: {err.reason}") from None
        if cfg.standardize:
            value = (value - state.mean) / state.std
        if not abs(value) <= _FLOAT32_MAX:
            raise ReadError(f"column {cfg.column!r}: {label!r} is too large to use as a label")
        return torch.tensor(value, dtype=torch.float32)

    def empty(self, cfg: Any) -> Tensor:
        return torch.tensor(0.0)

    def check_labels(self, cfg: Any, labels: LabelFrame) -> tuple[pd.Series, pd.DataFrame]:
        values = checks.numbers(labels, cfg.column)
        usable = values.astype(object).where(values.notna(), None)
        return usable, checks.labelled(usable)

    def create_head(self, name: str, info: Mapping[str, Any], *, in_dim: int) -> RegressionHead:
        std = float(info.get("std") or 1.0)
        return RegressionHead(in_dim=in_dim, mean=float(info.get("mean") or 0.0), std=std)

    def distillation_loss(
        self, info: Mapping[str, Any], student: Tensor, teacher: Tensor, *, temperature: float
    ) -> Tensor:
        # A value, not a distribution: squared error to the teacher's (no τ).
        return F.mse_loss(student, teacher)

    def scored_labels(self, info: Mapping[str, Any], y_true: np.ndarray) -> np.ndarray:
        if info.get("std") is None:
            return y_true
        # The batch holds the standardised label; the head predicts in the original unit.
        return y_true * info["std"] + info["mean"]

    def prediction_columns(
        self, target: str, info: Mapping[str, Any], outputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        return {f"{target}_predicted": outputs["value"]}

    def metrics(self, y: np.ndarray, pred: np.ndarray, options: MetricOptions) -> MetricValues:
        return regression_metrics(self.name, y, pred)

    def point_values(
        self, info: Mapping[str, Any], outputs: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        return np.asarray(outputs["value"], dtype=np.float64)

    def no_skill(self, y: np.ndarray, options: MetricOptions) -> dict[str, float]:
        # Always predicting the mean of the labels.
        y = np.asarray(y, dtype=float)
        error = y - y.mean()
        return {
            "r2": 0.0,
            "rmse": float(np.sqrt(np.mean(error**2))),
            "mae": float(np.abs(error).mean()),
        }

    def label_summary(self, y: np.ndarray, options: MetricOptions) -> dict[str, float]:
        y = np.asarray(y, dtype=float)
        return {"mean": float(y.mean()), "sd": float(y.std())}

    def explanation_score(self, predictions: Mapping[str, Tensor], reference: int | None):
        return predictions["value"].reshape(-1).float()

    def score_description(self, info: Mapping[str, Any], reference: int | None) -> str:
        return "predicted value"

    def example(self) -> Example:
        values = ["61", "47.5", "", "70", "55", "38"]
        return Example(
            spec={"kind": "regression", "column": "age"}, cells=[{"age": v} for v in values]
        )
