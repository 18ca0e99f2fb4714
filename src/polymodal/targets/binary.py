"""Binary targets: one column holding a positive value and a single negative value.

Label ``(B,)`` float 0/1; head: one logit, BCE (optional class weights, label smoothing);
prediction: ``probability`` of the positive class; headline metric: AUROC.
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
from polymodal.data.cells import is_blank
from polymodal.errors import ReadError, SpecError
from polymodal.targets.base import (
    TARGETS,
    Example,
    LabelFrame,
    TargetKind,
    TargetSpec,
    TargetState,
)
from polymodal.targets.figure_inputs import DecidedClasses, Outcome
from polymodal.targets.head import PerSampleHead, bernoulli_kl, class_weights
from polymodal.targets.scores import (
    EvaluationError,
    MetricOptions,
    MetricValues,
    check_binary_labels,
    check_probabilities,
    expected_calibration_error,
    one_class_reason,
    roc_summary,
)

# The metrics of a probability of one outcome, shared with the kinds built on it.
CLASSIFICATION_HEADERS = MappingProxyType(
    {
        "auroc": "AUROC",
        "auprc": "AUPRC",
        "balanced_accuracy": "Bal. acc.",
        "accuracy": "Accuracy",
        "f1": "F1",
        "sensitivity_at_specificity": "Sens. @ spec.",
        "brier": "Brier",
        "ece": "ECE",
    }
)


class BinaryTarget(TargetSpec):
    kind: Literal["binary"]
    column: str
    # The value that means "positive"; others must be the single negative value.
    positive: str = "1"
    negative: str | None = None
    class_weights: list[float] | None = None


class BinaryState(TargetState):
    negative: str


class BinaryHead(PerSampleHead):
    """Logit of the positive class. Loss: BCE; ``class_weights = [w_negative, w_positive]``.

    With class weights the mean is weighted (``Σ w·l / Σ w``), as in ``F.cross_entropy``.
    Predicts ``probability`` (B,) of the positive class.
    """

    def __init__(self, *, in_dim: int, class_weights: Tensor | None = None) -> None:
        super().__init__(in_dim=in_dim, n_outputs=1, squeeze=True)
        self.register_buffer("class_weights", class_weights, persistent=False)

    def per_sample_loss(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        target = target.to(logits.dtype)
        soft = target * (1 - self.smoothing()) + self.smoothing() / 2
        values = F.binary_cross_entropy_with_logits(logits, soft, reduction="none")
        if self.class_weights is None:
            return values, torch.ones_like(values)
        return values, self.class_weights.to(logits.dtype)[target.long()]

    def predict(self, logits: Tensor) -> dict[str, Tensor]:
        return {"probability": torch.sigmoid(logits)}


def binary_metrics(kind: str, y: np.ndarray, prob: np.ndarray, o: MetricOptions) -> MetricValues:
    """auroc, auprc, balanced_accuracy, accuracy, f1, sensitivity_at_specificity, brier, ece of
    ``prob (n,)`` = P(positive) against ``y (n,)`` in {0, 1}."""
    # Imported here, not at the top: scikit-learn/SciPy take seconds to import and a
    # model folder that only predicts never needs them (issue 12: load in < 5 s).
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        brier_score_loss,
        precision_recall_fscore_support,
    )

    if y.ndim != 1 or prob.ndim != 1:
        raise EvaluationError(
            f"{kind} metrics: expected y_true (n,) and prob (n,), got {y.shape} and {prob.shape}"
        )
    y = check_binary_labels(kind, y)
    check_probabilities(kind, prob)
    one_class = one_class_reason(y, "y_true")
    auroc = sensitivity = math.nan
    if one_class is None:
        auroc, sensitivity = roc_summary(y, prob, o.specificity)
    predicted = (prob >= o.threshold).astype(np.int64)
    _, recall, f1, _ = precision_recall_fscore_support(
        y, predicted, labels=[0, 1], zero_division=np.nan
    )

    out = MetricValues()
    if one_class is None:
        out["auroc"] = auroc
        out["auprc"] = float(average_precision_score(y, prob))
        out["balanced_accuracy"] = float(recall.mean())
    else:
        for name in ("auroc", "auprc", "balanced_accuracy"):
            out.undefined(name, f"{one_class}; it needs both classes")
    out["accuracy"] = float(accuracy_score(y, predicted))
    if np.isfinite(f1[1]):
        out["f1"] = float(f1[1])
    else:
        out.undefined("f1", "no positive labels and no positive predictions")
    if one_class is None:
        out["sensitivity_at_specificity"] = sensitivity
    else:
        out.undefined("sensitivity_at_specificity", f"{one_class}; it needs both classes")
    out["brier"] = float(brier_score_loss(y, prob))
    out["ece"] = expected_calibration_error(y, prob, o.n_bins_ece)
    return out


@TARGETS.register("binary")
class Binary(TargetKind):
    name = "binary"
    spec = BinaryTarget
    state = BinaryState
    prediction = "probability"
    headline = "auroc"
    table_metrics = (
        "auroc",
        "auprc",
        "balanced_accuracy",
        "accuracy",
        "f1",
        "sensitivity_at_specificity",
        "brier",
        "ece",
    )
    lower_is_better = frozenset({"brier", "ece"})
    headers = CLASSIFICATION_HEADERS
    cross_entropy = True
    class_valued = True
    recalibrations = ("temperature", "platt", "isotonic")

    def fit(self, where: str, cfg: Any, rows: pd.DataFrame, ids: pd.Series) -> BinaryState:
        seen = {c.strip() for c in rows[cfg.column] if not is_blank(c)}
        others = sorted(seen - {cfg.positive} - ({cfg.negative} if cfg.negative else set()))
        if cfg.negative is None and len(others) == 1:
            return BinaryState(negative=others[0])
        if cfg.negative is not None and not others:
            return BinaryState(negative=cfg.negative)
        raise SpecError(
            f"{where}: column {cfg.column!r} holds {others or 'no value'} in the training split "
            f"besides the positive value {cfg.positive!r}"
            + (f" and the negative value {cfg.negative!r}" if cfg.negative else "")
            + "; a binary target needs exactly one negative value (set 'negative' or fix the labels)"
        )

    def head_info(self, cfg: Any, state: Any) -> dict[str, Any]:
        info: dict[str, Any] = {"classes": [state.negative, cfg.positive]}
        if cfg.class_weights is not None:
            info["class_weights"] = [float(w) for w in cfg.class_weights]
        return info

    def encode(self, cfg: Any, state: Any, cells: Mapping[str, str]) -> Tensor | None:
        cell = cells.get(cfg.column, "")
        if is_blank(cell):
            return None
        label = cell.strip()
        if label not in (cfg.positive, state.negative):
            raise ReadError(
                f"column {cfg.column!r}: {label!r} is neither the positive value "
                f"{cfg.positive!r} nor the negative value {state.negative!r}"
            )
        return torch.tensor(float(label == cfg.positive))

    def empty(self, cfg: Any) -> Tensor:
        return torch.tensor(0.0)

    def check_labels(self, cfg: Any, labels: LabelFrame) -> tuple[pd.Series, pd.DataFrame]:
        negative = self.negative(cfg, labels)
        allowed = [cfg.positive] + ([negative] if negative is not None else [])
        if negative is None and cfg.negative is None:
            explain = (
                f"besides the positive {cfg.positive!r}, the training split does not hold "
                f"exactly one negative value; set targets.{labels.name}.negative"
            )
        else:
            explain = (
                f"a binary target takes {cfg.positive!r} (positive) or {negative!r} "
                f"(negative); set targets.{labels.name}.negative or fix the value"
            )
        usable = checks.categorical(labels, cfg.column, allowed, explain)
        return usable, checks.shown_classes(labels, cfg.column, usable)

    @staticmethod
    def negative(cfg: Any, labels: LabelFrame) -> str | None:
        """The value that means "negative": the spec's ``negative``, else the one value besides
        the positive in the training split (None when there are zero or several)."""
        if cfg.negative is not None:
            return cfg.negative
        train = checks.clean(labels.frame[cfg.column])[labels.train].dropna()
        others = set(train[train != cfg.positive])
        return others.pop() if len(others) == 1 else None

    def create_head(self, name: str, info: Mapping[str, Any], *, in_dim: int) -> BinaryHead:
        return BinaryHead(in_dim=in_dim, class_weights=class_weights(name, info, 2))

    def distillation_loss(
        self, info: Mapping[str, Any], student: Tensor, teacher: Tensor, *, temperature: float
    ) -> Tensor:
        return bernoulli_kl(teacher / temperature, student / temperature).mean() * temperature**2

    def prediction_columns(
        self, target: str, info: Mapping[str, Any], outputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        return {f"{target}_probability": outputs["probability"]}

    def metrics(self, y: np.ndarray, pred: np.ndarray, options: MetricOptions) -> MetricValues:
        return binary_metrics(self.name, y, pred, options)

    def no_skill(self, y: np.ndarray, options: MetricOptions) -> dict[str, float]:
        # Always predicting the prevalence p: ranks nothing, Brier p(1 − p), finds positives
        # at the rate of 1 − specificity.
        p = float(np.mean(y))
        return {
            "auroc": 0.5,
            "auprc": p,
            "balanced_accuracy": 0.5,
            "sensitivity_at_specificity": 1.0 - options.specificity,
            "brier": p * (1.0 - p),
        }

    def label_summary(self, y: np.ndarray, options: MetricOptions) -> dict[str, float]:
        return {"prevalence": float(np.mean(y))}

    def outcomes(self, y: np.ndarray, pred: np.ndarray, options: MetricOptions) -> list[Outcome]:
        name = str(options.classes[-1]) if options.classes else "positive"
        return [Outcome(name, np.asarray(y) == 1, np.asarray(pred, dtype=float), alone=True)]

    def decided_classes(
        self, y: np.ndarray, pred: np.ndarray, options: MetricOptions
    ) -> DecidedClasses:
        names = [str(c) for c in options.classes] if options.classes else ["0", "1"]
        predicted = (np.asarray(pred) >= options.threshold).astype(np.int64)
        rule = f"P({names[1]}) ≥ {options.threshold:g}"
        return DecidedClasses(np.asarray(y).astype(np.int64), predicted, names, rule)

    def logit_nll(self, logits: Tensor, labels: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(
            logits.double(), labels.double(), reduction="none"
        )

    def class_probabilities(
        self, info: Mapping[str, Any], outputs: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        positive = np.asarray(outputs["probability"], dtype=np.float64)
        return np.stack([1.0 - positive, positive], axis=1)  # (n, 2) in info["classes"] order

    def explanation_score(self, predictions: Mapping[str, Tensor], reference: int | None):
        return predictions["probability"].reshape(-1)

    def score_description(self, info: Mapping[str, Any], reference: int | None) -> str:
        classes = info.get("classes") or [None, "1"]
        return f"probability of {classes[-1]!r}"

    def example(self) -> Example:
        labels = ["yes", "no", "no", "yes", "", "no", "yes", "no"]
        return Example(
            spec={"kind": "binary", "column": "y", "positive": "yes"},
            cells=[{"y": v} for v in labels],
        )
