"""Ordinal targets: one column holding one of K ordered classes (a grade 0..K−1), e.g.
``{kind: ordinal, column: grade, classes: [mild, moderate, severe]}``.

Head: a cumulative-link (proportional-odds, CORAL-style) model. One score s(x) is shared by
K−1 ordered thresholds θ_1 < … < θ_{K−1}; logit_k = s(x) − θ_k models P(grade > k − 1), so the
probabilities of the grades are never negative and a higher score moves every grade up at once.
Loss: binary cross-entropy of the K−1 questions "grade > k?", averaged over them.

Predictions: ``probabilities`` ``(B, K)``, ``label`` ``(B,)`` the median grade (the number of
thresholds passed with probability > 0.5, which minimises the expected absolute error in
grade) and ``score`` ``(B,)`` the expected grade Σ_k P(grade > k).

Headline metric: quadratic-weighted kappa (``qwk``, higher is better). It is the usual
agreement measure for graded labels (retinopathy, Gleason grades): chance-corrected, so a model
that always predicts the common grade scores 0, and a miss by two grades costs four times a
miss by one, which plain accuracy (every miss equal) and macro AUROC (no order) ignore. The
mean absolute error in grades (``mae``) and the balanced accuracy are reported beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor, nn

from polymodal.errors import ModelError
from polymodal.targets.base import (
    TARGETS,
    Example,
    LabelFrame,
    TargetKind,
    TargetSpec,
    TargetState,
    positions,
)
from polymodal.targets.figure_inputs import DecidedClasses, shares
from polymodal.targets.head import PerSampleHead, bernoulli_kl
from polymodal.targets.multiclass import (
    check_classes,
    check_distribution,
    class_columns,
    class_indices,
    encode_class,
    fit_classes,
)
from polymodal.targets.scores import MetricOptions, MetricValues, class_names


class OrdinalTarget(TargetSpec):
    kind: Literal["ordinal"]
    column: str
    # The grades from lowest to highest: the order is the label's meaning, so it is never
    # inferred from the data.
    classes: list[str] = Field(min_length=2)

    @field_validator("classes")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        repeated = sorted({c for c in v if v.count(c) > 1})
        if repeated:
            raise ValueError(f"each grade must appear once; repeated: {repeated}")
        return v


class OrdinalState(TargetState):
    classes: list[str]

    @cached_property
    def position(self) -> dict[str, int]:
        """Grade name → index."""
        return positions(self.classes)


class CumulativeLinkHead(PerSampleHead):
    """Cumulative logits ``(B, K − 1)``: one shared score minus K − 1 increasing thresholds.

    The thresholds are ``θ_1`` and ``θ_1 + Σ softplus(gap)``, so they stay ordered whatever the
    optimiser does. Target: grade index ``(B,)`` int64.
    """

    def __init__(self, *, in_dim: int, n_classes: int) -> None:
        super().__init__(in_dim=in_dim, n_outputs=1)
        self.first = nn.Parameter(torch.zeros(1))
        self.gaps = nn.Parameter(torch.zeros(n_classes - 2))

    def thresholds(self) -> Tensor:
        """``(K − 1,)`` strictly increasing."""
        steps = torch.cumsum(F.softplus(self.gaps), dim=0)
        return torch.cat([self.first, self.first + steps])

    def forward(self, features: Tensor) -> Tensor:
        """``features (B, D)`` → cumulative logits ``(B, K − 1)``: logit of P(grade > k)."""
        return self.proj(features) - self.thresholds()

    def per_sample_loss(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        ranks = torch.arange(logits.shape[-1], device=logits.device)
        above = (target.long()[:, None] > ranks[None, :]).to(logits.dtype)  # (B, K − 1)
        bce = F.binary_cross_entropy_with_logits(logits, above, reduction="none")
        values = bce.mean(dim=-1)
        return values, torch.ones_like(values)

    def predict(self, logits: Tensor) -> dict[str, Tensor]:
        above = torch.sigmoid(logits)  # (B, K − 1): P(grade > k)
        return {
            "probabilities": grade_probabilities(above),
            "label": (above > 0.5).sum(dim=-1),
            "score": above.sum(dim=-1),
        }


def grade_probabilities(above: Tensor) -> Tensor:
    """P(grade > k) ``(B, K − 1)`` → P(grade = k) ``(B, K)``."""
    ones, zeros = torch.ones_like(above[:, :1]), torch.zeros_like(above[:, :1])
    cumulative = torch.cat([ones, above, zeros], dim=-1)  # P(grade > k − 1), k = 0..K
    return (cumulative[:, :-1] - cumulative[:, 1:]).clamp(min=0.0)


def median_grade(prob: np.ndarray) -> np.ndarray:
    """Grade probabilities ``(n, K)`` → the median grade ``(n,)`` (as the head's ``label``)."""
    above = 1.0 - np.cumsum(prob, axis=1)[:, :-1]  # (n, K − 1): P(grade > k)
    return (above > 0.5).sum(axis=1)


def ordinal_metrics(kind: str, y: np.ndarray, prob: np.ndarray, o: MetricOptions):
    """qwk, mae (in grades), balanced_accuracy (over the grades present), accuracy of the median
    grade of ``prob (n, K)`` against grade indices ``y (n,)``."""
    # Imported here, not at the top: scikit-learn/SciPy take seconds to import and a
    # model folder that only predicts never needs them (issue 12: load in < 5 s).
    from sklearn.metrics import accuracy_score, cohen_kappa_score

    check_distribution(kind, y, prob)
    count = prob.shape[1]
    class_names(kind, o.classes, count)  # checks the names fit the columns
    y = class_indices(kind, y, count)
    predicted = median_grade(prob)
    out = MetricValues()
    if len(np.unique(np.concatenate([y, predicted]))) < 2:
        out.undefined("qwk", "labels and predictions are one and the same grade; kappa needs two")
    else:
        out["qwk"] = float(
            cohen_kappa_score(y, predicted, labels=list(range(count)), weights="quadratic")
        )
    out["mae"] = float(np.abs(y - predicted).mean())
    present = np.unique(y)
    out["balanced_accuracy"] = float(np.mean([(predicted[y == k] == k).mean() for k in present]))
    out["accuracy"] = float(accuracy_score(y, predicted))
    return out


@TARGETS.register("ordinal")
class Ordinal(TargetKind):
    name = "ordinal"
    spec = OrdinalTarget
    state = OrdinalState
    prediction = "probabilities"
    headline = "qwk"
    table_metrics = ("qwk", "mae", "balanced_accuracy", "accuracy")
    lower_is_better = frozenset({"mae"})
    headers = MappingProxyType(
        {
            "qwk": "Quadratic κ",
            "mae": "MAE",
            "balanced_accuracy": "Bal. acc.",
            "accuracy": "Accuracy",
        }
    )
    class_valued = True

    def fit(self, where: str, cfg: Any, rows: pd.DataFrame, ids: pd.Series) -> OrdinalState:
        _, classes = fit_classes(where, cfg, rows)
        return OrdinalState(classes=classes)

    def head_info(self, cfg: Any, state: Any) -> dict[str, Any]:
        return {"n_outputs": len(state.classes) - 1, "classes": list(state.classes)}

    def encode(self, cfg: Any, state: Any, cells: Mapping[str, str]) -> Tensor | None:
        return encode_class(cfg, state, cells)

    def empty(self, cfg: Any) -> Tensor:
        return torch.tensor(0, dtype=torch.int64)

    def check_labels(self, cfg: Any, labels: LabelFrame) -> tuple[pd.Series, pd.DataFrame]:
        return check_classes(cfg, labels)

    def create_head(self, name: str, info: Mapping[str, Any], *, in_dim: int) -> CumulativeLinkHead:
        classes = info.get("classes") or []
        if len(classes) < 2:
            raise ModelError(
                f"target '{name}': an ordinal target needs 'classes', at least 2 grades from "
                f"lowest to highest, got {classes!r}"
            )
        return CumulativeLinkHead(in_dim=in_dim, n_classes=len(classes))

    def distillation_loss(
        self, info: Mapping[str, Any], student: Tensor, teacher: Tensor, *, temperature: float
    ) -> Tensor:
        # One Bernoulli per threshold: "grade > k".
        return bernoulli_kl(teacher / temperature, student / temperature).mean() * temperature**2

    def scored_labels(self, info: Mapping[str, Any], y_true: np.ndarray) -> np.ndarray:
        return y_true.astype(np.int64)

    def prediction_columns(
        self, target: str, info: Mapping[str, Any], outputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        probs = outputs["probabilities"]
        columns = class_columns(target, info, probs)
        classes = info.get("classes") or [str(i) for i in range(probs.shape[1])]
        # The median grade, not the most probable one (see the module docstring).
        columns[f"{target}_predicted"] = np.asarray(classes, dtype=object)[median_grade(probs)]
        return columns

    def predictions_from_average(self, averaged: dict[str, Tensor]) -> dict[str, Tensor]:
        # The median grade of the averaged grade probabilities, as median_grade reads them.
        above = 1.0 - averaged["probabilities"].cumsum(dim=-1)[:, :-1]  # (B, K − 1)
        return {**averaged, "label": (above > 0.5).sum(dim=-1)}

    def metrics(self, y: np.ndarray, pred: np.ndarray, options: MetricOptions) -> MetricValues:
        return ordinal_metrics(self.name, y, pred, options)

    def no_skill(self, y: np.ndarray, options: MetricOptions) -> dict[str, float]:
        # A constant grade agrees with the truth no better than chance and recalls one grade.
        return {"qwk": 0.0, "balanced_accuracy": 1.0 / len(np.unique(y))}

    def label_summary(self, y: np.ndarray, options: MetricOptions) -> dict[str, float]:
        count = len(options.classes) if options.classes else int(np.max(y)) + 1
        return shares(y, class_names(self.name, options.classes, count))

    def decided_classes(
        self, y: np.ndarray, pred: np.ndarray, options: MetricOptions
    ) -> DecidedClasses:
        names = class_names(self.name, options.classes, pred.shape[1])
        predicted = median_grade(pred)
        return DecidedClasses(np.asarray(y, dtype=np.int64), predicted, names, "the median grade")

    def explanation_score(self, predictions: Mapping[str, Tensor], reference: int | None):
        return predictions["score"].reshape(-1).float()

    def score_description(self, info: Mapping[str, Any], reference: int | None) -> str:
        classes = info.get("classes") or []
        scale = f" ({classes[0]!r} = 0 … {classes[-1]!r} = {len(classes) - 1})" if classes else ""
        return f"expected grade{scale}"

    def example(self) -> Example:
        grades = ["mild", "severe", "moderate", "mild", "", "moderate", "severe", "mild"]
        return Example(
            spec={"kind": "ordinal", "column": "grade", "classes": ["mild", "moderate", "severe"]},
            cells=[{"grade": g} for g in grades],
        )
