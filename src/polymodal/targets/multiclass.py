"""Multiclass targets: one column holding one of K classes.

Label ``()`` int64 class index; head: K logits, cross-entropy (optional class weights, label
smoothing); predictions: ``probabilities`` ``(B, K)`` and ``label``; headline: macro AUROC.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from functools import cached_property
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

import polymodal.targets.checks as checks
from polymodal.data.cells import is_blank
from polymodal.errors import ModelError, ReadError, SpecError
from polymodal.targets.base import (
    TARGETS,
    Example,
    LabelFrame,
    TargetKind,
    TargetSpec,
    TargetState,
    positions,
)
from polymodal.targets.binary import CLASSIFICATION_HEADERS
from polymodal.targets.figure_inputs import DecidedClasses, Outcome, shares
from polymodal.targets.head import PerSampleHead, class_weights, softmax_kl
from polymodal.targets.scores import (
    EvaluationError,
    MetricOptions,
    MetricValues,
    check_probabilities,
    class_names,
    expected_calibration_error,
    one_class_reason,
    roc_summary,
    set_macro,
    set_per_class,
)


class MulticlassTarget(TargetSpec):
    kind: Literal["multiclass"]
    column: str
    # Class names in a fixed order; inferred (sorted) from the training split when omitted.
    classes: list[str] | None = None
    class_weights: list[float] | Literal["balanced"] | None = None


class MulticlassState(TargetState):
    classes: list[str]
    class_weights: list[float] | None

    @cached_property
    def position(self) -> dict[str, int]:
        """Class name → index (built once per state)."""
        return positions(self.classes)


class MulticlassHead(PerSampleHead):
    """K logits. Loss: cross-entropy with optional per-class weights (weighted mean).

    Predicts ``probabilities`` (B, K) and ``label`` (B,) the most probable class index.
    """

    def __init__(self, *, in_dim: int, n_classes: int, class_weights: Tensor | None = None):
        super().__init__(in_dim=in_dim, n_outputs=n_classes)
        self.register_buffer("class_weights", class_weights, persistent=False)

    def per_sample_loss(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        target = target.long()
        values = F.cross_entropy(logits, target, reduction="none", label_smoothing=self.smoothing())
        if self.class_weights is None:
            return values, torch.ones_like(values)
        return values, self.class_weights.to(logits.dtype)[target]

    def predict(self, logits: Tensor) -> dict[str, Tensor]:
        return {"probabilities": logits.softmax(dim=-1), "label": logits.argmax(dim=-1)}


def fit_classes(where: str, cfg: Any, rows: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(training labels, classes): the spec's classes, else the sorted training labels.

    Raises:
        SpecError: a training label outside the classes, or fewer than two classes.
    """
    labels = [c.strip() for c in rows[cfg.column] if not is_blank(c)]
    classes = list(cfg.classes) if cfg.classes else sorted(set(labels))
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise SpecError(
            f"{where}: column {cfg.column!r} holds {unknown} in the training split, which are "
            f"not in 'classes' {classes}; add them to 'classes' or fix the labels"
        )
    if len(classes) < 2:
        raise SpecError(
            f"{where}: column {cfg.column!r} holds only {classes} in the training split; "
            f"a {cfg.kind} target needs at least two classes"
        )
    return labels, classes


def encode_class(cfg: Any, state: Any, cells: Mapping[str, str]) -> Tensor | None:
    """A class cell → its index ``()`` int64; None when blank; ReadError for an unknown class."""
    cell = cells.get(cfg.column, "")
    if is_blank(cell):
        return None
    position = state.position.get(cell.strip())
    if position is None:
        raise ReadError(
            f"column {cfg.column!r}: {cell.strip()!r} is not a class seen in training "
            f"{state.classes}"
        )
    return torch.tensor(position, dtype=torch.int64)


def check_classes(cfg: Any, labels: LabelFrame) -> tuple[pd.Series, pd.DataFrame]:
    """Class labels outside the spec's classes (or, without them, the training classes)."""
    if cfg.classes is not None:
        allowed, explain = cfg.classes, f"expected one of targets.{labels.name}.classes"
    else:
        allowed = sorted(set(checks.clean(labels.frame[cfg.column])[labels.train].dropna()))
        explain = "it never occurs in the training split, where the classes come from"
    usable = checks.categorical(labels, cfg.column, allowed, explain)
    return usable, checks.shown_classes(labels, cfg.column, usable)


def n_classes(name: str, info: Mapping[str, Any]) -> int:
    """K from the info (``n_outputs``, else ``classes``); ModelError below two."""
    classes = info.get("classes")
    count = info.get("n_outputs") or (len(classes) if classes else 0)
    if count < 2:
        raise ModelError(
            f"target '{name}': a {info.get('kind')} target needs at least 2 classes, got {count}"
        )
    return count


def class_columns(target: str, info: Mapping[str, Any], probs: np.ndarray) -> dict[str, np.ndarray]:
    """One probability column per class and the predicted class name."""
    classes = info.get("classes") or [str(i) for i in range(probs.shape[1])]
    cols = {f"{target}_probability_{c}": probs[:, i] for i, c in enumerate(classes)}
    cols[f"{target}_predicted"] = np.asarray(classes, dtype=object)[probs.argmax(axis=1)]
    return cols


def class_indices(kind: str, y: np.ndarray, n: int) -> np.ndarray:
    """``y (n,)`` as int64 class indices 0..n−1; EvaluationError otherwise."""
    if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
        raise EvaluationError(
            f"{kind} metrics: y_true must hold integer class indices; drop samples without "
            "a label (target_mask False) before scoring"
        )
    y = y.astype(np.int64)
    out_of_range = np.flatnonzero((y < 0) | (y >= n))
    if len(out_of_range):
        raise EvaluationError(
            f"{kind} metrics: y_true at row {out_of_range[0]} is {y[out_of_range[0]]}, "
            f"outside the {n} classes 0..{n - 1}"
        )
    return y


def check_distribution(kind: str, y: np.ndarray, prob: np.ndarray) -> None:
    """``prob (n, K)`` rows are probabilities summing to 1, one per label of ``y (n,)``."""
    if y.ndim != 1 or prob.ndim != 2 or prob.shape[1] < 2:
        raise EvaluationError(
            f"{kind} metrics: expected y_true (n,) and prob (n, K) with K ≥ 2, got "
            f"{y.shape} and {prob.shape}"
        )
    check_probabilities(kind, prob)
    off = np.flatnonzero(np.abs(prob.sum(axis=1) - 1.0) > 1e-3)
    if len(off):
        raise EvaluationError(
            f"{kind} metrics: probabilities of row {off[0]} sum to "
            f"{prob[off[0]].sum():.4f}, not 1; pass softmax probabilities"
        )


def label_names(kind: str, y: np.ndarray, options: MetricOptions) -> list[str]:
    """The class names of class indices ``y`` (n,): the options' names, else "0" … max."""
    count = len(options.classes) if options.classes else int(np.max(y)) + 1
    return class_names(kind, options.classes, count)


def multiclass_metrics(
    kind: str, y: np.ndarray, prob: np.ndarray, o: MetricOptions
) -> MetricValues:
    """auroc_macro, auprc_macro, balanced_accuracy, accuracy, f1_macro,
    sensitivity_at_specificity_macro, brier (0–2), ece (top-label), then per class ``auroc[c]``
    and ``auprc[c]`` (one-vs-rest) of ``prob (n, K)`` against class indices ``y (n,)``."""
    # Imported here, not at the top: scikit-learn/SciPy take seconds to import and a
    # model folder that only predicts never needs them (issue 12: load in < 5 s).
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        precision_recall_fscore_support,
    )

    check_distribution(kind, y, prob)
    count = prob.shape[1]
    names = class_names(kind, o.classes, count)
    y = class_indices(kind, y, count)
    aurocs, auprcs, sensitivities, reasons = [], [], [], []
    for k, name in enumerate(names):
        positive = (y == k).astype(np.int64)
        reason = one_class_reason(positive, f"class {name!r}")
        reasons.append(reason)
        if reason is None:
            auroc, sensitivity = roc_summary(positive, prob[:, k], o.specificity)
            auprc = float(average_precision_score(positive, prob[:, k]))
        else:
            auroc = sensitivity = auprc = math.nan
        aurocs.append(auroc)
        auprcs.append(auprc)
        sensitivities.append(sensitivity)
    predicted = prob.argmax(axis=1)
    _, recall, f1, _ = precision_recall_fscore_support(
        y, predicted, labels=list(range(count)), zero_division=np.nan
    )
    absent = [names[k] for k in np.flatnonzero(~np.isfinite(recall))]

    out = MetricValues()
    set_macro(out, "auroc_macro", aurocs, reasons)
    set_macro(out, "auprc_macro", auprcs, reasons)
    if absent:
        out.undefined("balanced_accuracy", f"class {absent[0]!r} has no samples in y_true")
    else:
        out["balanced_accuracy"] = float(recall.mean())
    out["accuracy"] = float(accuracy_score(y, predicted))
    f1_reasons = [
        None if np.isfinite(v) else f"class {names[k]!r} is neither in y_true nor predicted"
        for k, v in enumerate(f1)
    ]
    set_macro(out, "f1_macro", list(f1), f1_reasons)
    set_macro(out, "sensitivity_at_specificity_macro", sensitivities, reasons)
    one_hot = np.eye(count)[y]  # (n, K)
    out["brier"] = float(((prob - one_hot) ** 2).sum(axis=1).mean())
    top_label_correct = (predicted == y).astype(np.float64)
    out["ece"] = expected_calibration_error(top_label_correct, prob.max(axis=1), o.n_bins_ece)
    set_per_class(out, names, {"auroc": aurocs, "auprc": auprcs}, reasons)
    return out


@TARGETS.register("multiclass")
class Multiclass(TargetKind):
    name = "multiclass"
    spec = MulticlassTarget
    state = MulticlassState
    prediction = "probabilities"
    headline = "auroc_macro"
    table_metrics = (
        "auroc_macro",
        "auprc_macro",
        "balanced_accuracy",
        "accuracy",
        "f1_macro",
        "sensitivity_at_specificity_macro",
        "brier",
        "ece",
    )
    lower_is_better = frozenset({"brier", "ece"})
    headers = MappingProxyType(
        {
            **CLASSIFICATION_HEADERS,
            "auroc_macro": "AUROC (macro)",
            "auprc_macro": "AUPRC (macro)",
            "f1_macro": "F1 (macro)",
            "sensitivity_at_specificity_macro": "Sens. @ spec. (macro)",
        }
    )
    detail_table = "per class"
    cross_entropy = True
    class_valued = True
    recalibrations = ("temperature",)

    def fit(self, where: str, cfg: Any, rows: pd.DataFrame, ids: pd.Series) -> MulticlassState:
        labels, classes = fit_classes(where, cfg, rows)
        counts = Counter(labels)
        weights: list[float] | None = None
        if cfg.class_weights == "balanced":
            empty = [c for c in classes if counts[c] == 0]
            if empty:
                raise SpecError(
                    f"{where}: class_weights 'balanced' needs training rows of every class; "
                    f"none for {empty} (give explicit class_weights or drop the class)"
                )
            weights = [len(labels) / (len(classes) * counts[c]) for c in classes]
        elif cfg.class_weights is not None:
            if len(cfg.class_weights) != len(classes):
                raise SpecError(
                    f"{where}: class_weights has {len(cfg.class_weights)} values for "
                    f"{len(classes)} classes {classes}"
                )
            weights = [float(w) for w in cfg.class_weights]
        return MulticlassState(classes=classes, class_weights=weights)

    def head_info(self, cfg: Any, state: Any) -> dict[str, Any]:
        return {
            "n_outputs": len(state.classes),
            "classes": list(state.classes),
            "class_weights": state.class_weights,
        }

    def encode(self, cfg: Any, state: Any, cells: Mapping[str, str]) -> Tensor | None:
        return encode_class(cfg, state, cells)

    def empty(self, cfg: Any) -> Tensor:
        return torch.tensor(0, dtype=torch.int64)

    def check_labels(self, cfg: Any, labels: LabelFrame) -> tuple[pd.Series, pd.DataFrame]:
        return check_classes(cfg, labels)

    def create_head(self, name: str, info: Mapping[str, Any], *, in_dim: int) -> MulticlassHead:
        count = n_classes(name, info)
        weights = class_weights(name, info, count)
        return MulticlassHead(in_dim=in_dim, n_classes=count, class_weights=weights)

    def distillation_loss(
        self, info: Mapping[str, Any], student: Tensor, teacher: Tensor, *, temperature: float
    ) -> Tensor:
        return softmax_kl(teacher, student, temperature)

    def scored_labels(self, info: Mapping[str, Any], y_true: np.ndarray) -> np.ndarray:
        return y_true.astype(np.int64)

    def prediction_columns(
        self, target: str, info: Mapping[str, Any], outputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        return class_columns(target, info, outputs["probabilities"])

    def predictions_from_average(self, averaged: dict[str, Tensor]) -> dict[str, Tensor]:
        # The most probable class of the mixture, as the head's label is of one pass.
        return {**averaged, "label": averaged["probabilities"].argmax(dim=-1)}

    def metrics(self, y: np.ndarray, pred: np.ndarray, options: MetricOptions) -> MetricValues:
        return multiclass_metrics(self.name, y, pred, options)

    def logit_nll(self, logits: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(logits.double(), labels.long(), reduction="none")

    def class_probabilities(
        self, info: Mapping[str, Any], outputs: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        return np.asarray(outputs["probabilities"], dtype=np.float64)

    def no_skill(self, y: np.ndarray, options: MetricOptions) -> dict[str, float]:
        # Always predicting the class shares p_k: Brier 1 − Σ p_k², recall 1/K on average.
        names = label_names(self.name, y, options)
        share = np.array(list(shares(y, names).values()))
        out = {"auroc_macro": 0.5, "balanced_accuracy": 1.0 / len(names)}
        out["brier"] = float(1.0 - (share**2).sum())
        for name, p in zip(names, share, strict=True):
            out[f"auroc[{name}]"], out[f"auprc[{name}]"] = 0.5, float(p)
        out["auprc_macro"] = float(share.mean())
        return out

    def label_summary(self, y: np.ndarray, options: MetricOptions) -> dict[str, float]:
        names = label_names(self.name, y, options)
        return shares(y, names)

    def outcomes(self, y: np.ndarray, pred: np.ndarray, options: MetricOptions) -> list[Outcome]:
        # One class against the rest, per class.
        names = class_names(self.name, options.classes, pred.shape[1])
        return [Outcome(n, np.asarray(y) == k, pred[:, k]) for k, n in enumerate(names)]

    def decided_classes(
        self, y: np.ndarray, pred: np.ndarray, options: MetricOptions
    ) -> DecidedClasses:
        names = class_names(self.name, options.classes, pred.shape[1])
        predicted = pred.argmax(axis=1)
        return DecidedClasses(
            np.asarray(y, dtype=np.int64), predicted, names, "most probable class"
        )

    def reference_index(self, predictions: Mapping[str, Tensor]) -> int | None:
        return int(predictions["probabilities"][0].argmax())

    def explanation_score(self, predictions: Mapping[str, Tensor], reference: int | None):
        return predictions["probabilities"][:, reference]

    def score_description(self, info: Mapping[str, Any], reference: int | None) -> str:
        classes = info.get("classes") or []
        name = (
            classes[reference] if reference is not None and reference < len(classes) else reference
        )
        return f"probability of the predicted class {name!r}"

    def example(self) -> Example:
        labels = ["nevus", "melanoma", "bcc", "nevus", "", "bcc", "melanoma", "nevus"]
        return Example(
            spec={"kind": "multiclass", "column": "dx", "class_weights": "balanced"},
            cells=[{"dx": v} for v in labels],
        )
