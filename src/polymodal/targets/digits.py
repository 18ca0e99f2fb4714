"""Digits targets (M3FM's clinical_number task): a non-negative integer below 10**num_digits,
predicted digit by digit, one 10-way classification per digit.

Label ``(num_digits,)`` int64, most significant first; predictions: ``digits`` and the
``value`` they spell; headline: exact match.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

import polymodal.targets.checks as checks
from polymodal.data.cells import is_blank
from polymodal.errors import ModelError, ReadError
from polymodal.targets.base import TARGETS, Example, LabelFrame, TargetKind, TargetSpec
from polymodal.targets.head import PerSampleHead, softmax_kl
from polymodal.targets.scores import EvaluationError, MetricOptions, MetricValues


class DigitsTarget(TargetSpec):
    """A non-negative integer below 10**num_digits, predicted digit by digit (M3FM's
    clinical_number task: one 10-way classification per digit)."""

    kind: Literal["digits"]
    column: str
    num_digits: int = Field(3, ge=1, le=6)


class DigitsHead(PerSampleHead):
    """A non-negative integer as ``num_digits`` 10-way classifications, most significant first.

    Logits ``(B, num_digits, 10)``. Loss: cross-entropy averaged over the digits, then over the
    labelled samples (target int64 ``(B, num_digits)``). Predicts ``digits`` ``(B, num_digits)``
    (each digit's argmax), ``value`` ``(B,)`` = Σ d_i · 10^(num_digits − 1 − i), e.g.
    100·d₁ + 10·d₂ + d₃ for three digits, and ``probabilities`` ``(B, num_digits, 10)`` (each
    digit's softmax: what test-time augmentation averages).
    """

    def __init__(self, *, in_dim: int, num_digits: int = 3) -> None:
        super().__init__(in_dim=in_dim, n_outputs=10 * num_digits)
        self.num_digits = int(num_digits)

    def forward(self, features: Tensor) -> Tensor:
        """``features (B, D)`` -> logits ``(B, num_digits, 10)``."""
        return self.proj(features).view(len(features), self.num_digits, 10)

    def per_sample_loss(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        # cross_entropy wants the classes second: (B, 10, num_digits) against (B, num_digits).
        values = F.cross_entropy(logits.transpose(1, 2), target.long(), reduction="none")
        values = values.mean(dim=-1)  # (B,)
        return values, torch.ones_like(values)

    def predict(self, logits: Tensor) -> dict[str, Tensor]:
        digits = logits.argmax(dim=-1)  # (B, num_digits)
        return {
            "value": spelled_value(digits),
            "digits": digits,
            "probabilities": logits.softmax(dim=-1),
        }


def spelled_value(digits: Tensor) -> Tensor:
    """Digits ``(B, D)``, most significant first → the number they spell ``(B,)`` float32."""
    count = digits.shape[-1]
    # Integer place values: exact for every number below 10**6, whatever the model's dtype.
    place_values = 10 ** torch.arange(count - 1, -1, -1, dtype=torch.int64, device=digits.device)
    return (digits.long() * place_values).sum(dim=-1).to(torch.float32)


def parse_digits(cell: str, column: str, num_digits: int) -> list[int] | None:
    """A digits-target cell as its ``num_digits`` digits, most significant first; None if blank.

    Raises:
        ReadError: the value is not a non-negative integer below ``10**num_digits``.
    """
    if is_blank(cell):
        return None
    limit = 10**num_digits
    try:
        value = float(str(cell).strip())
    except ValueError:
        value = float("nan")
    if not (np.isfinite(value) and value == int(value) and 0 <= value < limit):
        raise ReadError(
            f"column {column!r}: {str(cell).strip()!r} is not a whole number from 0 to "
            f"{limit - 1} ({num_digits} digits); fix the value, blank it, or raise num_digits"
        )
    return [int(d) for d in str(int(value)).zfill(num_digits)]


def digits_metrics(y: np.ndarray, predicted: np.ndarray) -> MetricValues:
    """Exact match, per-digit accuracy and the mean absolute error of the spelled values.

    Args:
        y: ``(n, D)`` true digits, most significant first. predicted: ``(n, D)`` predicted
            digits (the head's ``digits`` output).
    """
    # Imported here, not at the top: scikit-learn/SciPy take seconds to import and a
    # model folder that only predicts never needs them (issue 12: load in < 5 s).
    from sklearn.metrics import mean_absolute_error

    kind = "digits"
    if y.ndim != 2 or predicted.shape != y.shape:
        raise EvaluationError(
            f"{kind} metrics: expected y_true and predicted digits of the same shape (n, D), "
            f"got {y.shape} and {predicted.shape}"
        )
    for what, values in (("y_true", y), ("predicted", predicted)):
        bad = np.argwhere(~np.isin(values, np.arange(10)))
        if len(bad):
            raise EvaluationError(
                f"{kind} metrics: {what} at row {bad[0][0]}, digit {bad[0][1] + 1} is "
                f"{values[tuple(bad[0])].item()!r}, not a digit 0..9; pass the head's 'digits' "
                "output and drop samples without a label (target_mask False) before scoring"
            )
    y, predicted = y.astype(np.int64), predicted.astype(np.int64)
    place_values = 10 ** np.arange(y.shape[1] - 1, -1, -1)  # (D,)
    correct = y == predicted  # (n, D)
    per_digit = correct.mean(axis=0)
    out = MetricValues()
    out["exact_match"] = float(correct.all(axis=1).mean())
    out["digit_accuracy_mean"] = float(per_digit.mean())
    out["mae"] = float(mean_absolute_error(y @ place_values, predicted @ place_values))
    for position, accuracy in enumerate(per_digit, start=1):
        out[f"digit_accuracy[{position}]"] = float(accuracy)
    return out


@TARGETS.register("digits")
class Digits(TargetKind):
    name = "digits"
    spec = DigitsTarget
    # (n, num_digits): the metrics score digits and the value they spell.
    prediction = "digits"
    headline = "exact_match"
    table_metrics = ("exact_match", "digit_accuracy_mean", "mae")
    lower_is_better = frozenset({"mae"})
    headers = MappingProxyType(
        {
            "exact_match": "Exact match",
            "digit_accuracy_mean": "Digit acc. (mean)",
            "digit_accuracy": "Digit acc.",
            "mae": "MAE",
        }
    )
    detail_table = "per digit"

    def fit(self, where: str, cfg: Any, rows: pd.DataFrame, ids: pd.Series):
        for row_id, cell in zip(ids, rows[cfg.column], strict=True):
            try:
                parse_digits(cell, cfg.column, cfg.num_digits)
            except ReadError as err:
                raise ReadError(f"{where}: training row {row_id!r}: {err}") from None
        return self.state()

    def head_info(self, cfg: Any, state: Any) -> dict[str, Any]:
        return {"n_outputs": 10 * cfg.num_digits, "num_digits": cfg.num_digits}

    def encode(self, cfg: Any, state: Any, cells: Mapping[str, str]) -> Tensor | None:
        digits = parse_digits(cells.get(cfg.column, ""), cfg.column, cfg.num_digits)
        return None if digits is None else torch.tensor(digits, dtype=torch.int64)

    def empty(self, cfg: Any) -> Tensor:
        return torch.zeros(cfg.num_digits, dtype=torch.int64)

    def check_labels(self, cfg: Any, labels: LabelFrame) -> tuple[pd.Series, pd.DataFrame]:
        values = checks.numbers(labels, cfg.column)
        limit = 10**cfg.num_digits
        whole = (values == np.floor(values)) & (values >= 0) & (values < limit)
        bad = values.notna() & ~whole
        for pos in np.flatnonzero(bad.to_numpy()):
            labels.add(
                pos,
                cfg.column,
                f"{values.iat[pos]:g} is not a whole number from 0 to {limit - 1} "
                f"(targets.{labels.name}.num_digits = {cfg.num_digits})",
                checks.fix_action(labels.name),
            )
        values = values.where(~bad)
        usable = values.astype(object).where(values.notna(), None)
        return usable, checks.labelled(usable)

    def create_head(self, name: str, info: Mapping[str, Any], *, in_dim: int) -> DigitsHead:
        num_digits = info.get("num_digits")
        if not isinstance(num_digits, int) or not 1 <= num_digits <= 6:
            raise ModelError(
                f"target '{name}': a digits target needs 'num_digits' from 1 to 6, "
                f"got {num_digits!r}"
            )
        return DigitsHead(in_dim=in_dim, num_digits=num_digits)

    def distillation_loss(
        self, info: Mapping[str, Any], student: Tensor, teacher: Tensor, *, temperature: float
    ) -> Tensor:
        # (B, num_digits, 10): one categorical per digit, averaged over samples and digits.
        return softmax_kl(teacher, student, temperature)

    def prediction_columns(
        self, target: str, info: Mapping[str, Any], outputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        return {f"{target}_value": np.rint(outputs["value"]).astype(np.int64)}

    def predictions_from_average(self, averaged: dict[str, Tensor]) -> dict[str, Tensor]:
        # Each digit is the most probable one of its averaged distribution; the value is the
        # number those digits spell (not the mean of the passes' values, which may be none).
        digits = averaged["probabilities"].argmax(dim=-1)  # (B, num_digits)
        return {**averaged, "digits": digits, "value": spelled_value(digits)}

    def metrics(self, y: np.ndarray, pred: np.ndarray, options: MetricOptions) -> MetricValues:
        return digits_metrics(y, pred)

    def explanation_score(self, predictions: Mapping[str, Tensor], reference: int | None):
        return predictions["value"].reshape(-1).float()

    def score_description(self, info: Mapping[str, Any], reference: int | None) -> str:
        return "predicted value"

    def example(self) -> Example:
        values = ["12", "7", "", "305", "48", "99"]
        return Example(
            spec={"kind": "digits", "column": "pack_years", "num_digits": 3},
            cells=[{"pack_years": v} for v in values],
        )
