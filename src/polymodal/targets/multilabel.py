"""Multilabel targets: one 0/1 column per label, any number of them positive.

Label ``(K,)`` float 0/1; head: K logits, BCE per label (label smoothing); prediction:
``probabilities`` ``(B, K)``; headline: macro AUROC.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

import polymodal.targets.checks as checks
from polymodal.data.cells import parse_flag
from polymodal.errors import ModelError, ReadError
from polymodal.targets.base import TARGETS, Example, LabelFrame, TargetKind, TargetSpec
from polymodal.targets.figure_inputs import DecidedClasses, Outcome
from polymodal.targets.head import PerSampleHead, bernoulli_kl
from polymodal.targets.multiclass import Multiclass
from polymodal.targets.scores import (
    EvaluationError,
    MetricOptions,
    MetricValues,
    auroc,
    check_binary_labels,
    check_probabilities,
    class_names,
    expected_calibration_error,
    one_class_reason,
    set_macro,
    set_per_class,
)


class MultilabelTarget(TargetSpec):
    kind: Literal["multilabel"]
    # One 0/1 column per label.
    columns: list[str] = Field(min_length=1)


class MultilabelHead(PerSampleHead):
    """K independent logits. Loss: BCE averaged over labels, then over labeled samples.

    Predicts ``probabilities`` (B, K).
    """

    def __init__(self, *, in_dim: int, n_labels: int) -> None:
        super().__init__(in_dim=in_dim, n_outputs=n_labels)

    def per_sample_loss(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        soft = target.to(logits.dtype) * (1 - self.smoothing()) + self.smoothing() / 2
        values = F.binary_cross_entropy_with_logits(logits, soft, reduction="none").mean(dim=-1)
        return values, torch.ones_like(values)

    def predict(self, logits: Tensor) -> dict[str, Tensor]:
        return {"probabilities": torch.sigmoid(logits)}


def multilabel_metrics(kind: str, y: np.ndarray, prob: np.ndarray, o: MetricOptions):
    """auroc_macro, auprc_macro, f1_macro, brier (mean over all entries), ece (over all
    sample-label pairs), then per label ``auroc[l]``, ``auprc[l]``."""
    # Imported here, not at the top: scikit-learn/SciPy take seconds to import and a
    # model folder that only predicts never needs them (issue 12: load in < 5 s).
    from sklearn.metrics import average_precision_score, brier_score_loss
    from sklearn.metrics import precision_recall_fscore_support as prf

    if y.ndim != 2 or prob.shape != y.shape:
        raise EvaluationError(
            f"{kind} metrics: expected y_true and prob of the same shape (n, K), got "
            f"{y.shape} and {prob.shape}"
        )
    names = class_names(kind, o.classes, y.shape[1])
    y = check_binary_labels(kind, y)
    check_probabilities(kind, prob)
    aurocs, auprcs, reasons = [], [], []
    for k, name in enumerate(names):
        reason = one_class_reason(y[:, k], f"label {name!r}")
        reasons.append(reason)
        if reason is None:
            aurocs.append(auroc(y[:, k], prob[:, k]))
            auprcs.append(float(average_precision_score(y[:, k], prob[:, k])))
        else:
            aurocs.append(math.nan)
            auprcs.append(math.nan)
    _, _, f1, _ = prf(y, (prob >= o.threshold).astype(np.int64), zero_division=np.nan)

    out = MetricValues()
    set_macro(out, "auroc_macro", aurocs, reasons)
    set_macro(out, "auprc_macro", auprcs, reasons)
    f1_reasons = [
        None if np.isfinite(v) else f"label {names[k]!r} is neither positive nor predicted"
        for k, v in enumerate(f1)
    ]
    set_macro(out, "f1_macro", list(f1), f1_reasons)
    out["brier"] = float(brier_score_loss(y.ravel(), prob.ravel()))
    out["ece"] = expected_calibration_error(y.ravel(), prob.ravel(), o.n_bins_ece)
    set_per_class(out, names, {"auroc": aurocs, "auprc": auprcs}, reasons)
    return out


@TARGETS.register("multilabel")
class Multilabel(TargetKind):
    name = "multilabel"
    spec = MultilabelTarget
    prediction = "probabilities"
    headline = "auroc_macro"
    table_metrics = ("auroc_macro", "auprc_macro", "f1_macro", "brier", "ece")
    lower_is_better = frozenset({"brier", "ece"})
    headers = Multiclass.headers
    detail_table = "per class"
    cross_entropy = True
    multi_label = True

    def columns(self, cfg: Any) -> list[str]:
        return list(cfg.columns)

    def fit(self, where: str, cfg: Any, rows: pd.DataFrame, ids: pd.Series):
        for column in cfg.columns:
            for row_id, cell in zip(ids, rows[column], strict=True):
                try:
                    parse_flag(cell, column)
                except ReadError as err:
                    raise ReadError(f"training row {row_id!r}: {err}") from None
        return self.state()

    def head_info(self, cfg: Any, state: Any) -> dict[str, Any]:
        return {"n_outputs": len(cfg.columns), "classes": list(cfg.columns)}

    def encode(self, cfg: Any, state: Any, cells: Mapping[str, str]) -> Tensor | None:
        flags = [parse_flag(cells.get(c, ""), c) for c in cfg.columns]
        return None if any(np.isnan(flags)) else torch.tensor(flags, dtype=torch.float32)

    def empty(self, cfg: Any) -> Tensor:
        return torch.zeros(len(cfg.columns))

    def check_labels(self, cfg: Any, labels: LabelFrame) -> tuple[pd.Series, pd.DataFrame]:
        parts = {c: checks.zero_one(labels, c) for c in cfg.columns}
        complete = pd.concat(parts, axis=1).notna().all(axis=1)
        usable = pd.Series(np.where(complete, "labelled", None), dtype=object)
        return usable, pd.DataFrame({c: (v == "1") for c, v in parts.items()})

    def count_labels(self, shown: pd.DataFrame) -> dict[str, int]:
        # Rows where each label is positive.
        return {c: int(shown[c].sum()) for c in shown.columns}

    def create_head(self, name: str, info: Mapping[str, Any], *, in_dim: int) -> MultilabelHead:
        n_labels = info.get("n_outputs") or len(info.get("classes") or ())
        if n_labels < 1:
            raise ModelError(f"target '{name}': a multilabel target needs at least one label")
        if info.get("class_weights") is not None:
            raise ModelError(
                f"target '{name}': class_weights are not supported for multilabel targets; "
                "remove them from the spec"
            )
        return MultilabelHead(in_dim=in_dim, n_labels=n_labels)

    def distillation_loss(
        self, info: Mapping[str, Any], student: Tensor, teacher: Tensor, *, temperature: float
    ) -> Tensor:
        # One Bernoulli per label.
        return bernoulli_kl(teacher / temperature, student / temperature).mean() * temperature**2

    def prediction_columns(
        self, target: str, info: Mapping[str, Any], outputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        probs = outputs["probabilities"]
        labels = info.get("classes") or [str(i) for i in range(probs.shape[1])]
        return {f"{target}_probability_{c}": probs[:, i] for i, c in enumerate(labels)}

    def metrics(self, y: np.ndarray, pred: np.ndarray, options: MetricOptions) -> MetricValues:
        return multilabel_metrics(self.name, y, pred, options)

    def no_skill(self, y: np.ndarray, options: MetricOptions) -> dict[str, float]:
        # Always predicting each label's prevalence p_l: Brier is the mean of p_l(1 − p_l).
        share = np.asarray(y, dtype=float).mean(axis=0)  # (K,)
        out = {"auroc_macro": 0.5, "auprc_macro": float(share.mean())}
        out["brier"] = float((share * (1.0 - share)).mean())
        for name, p in zip(class_names(self.name, options.classes, len(share)), share, strict=True):
            out[f"auroc[{name}]"], out[f"auprc[{name}]"] = 0.5, float(p)
        return out

    def label_summary(self, y: np.ndarray, options: MetricOptions) -> dict[str, float]:
        share = np.asarray(y, dtype=float).mean(axis=0)
        names = class_names(self.name, options.classes, len(share))
        return {f"prevalence[{n}]": float(p) for n, p in zip(names, share, strict=True)}

    def outcomes(self, y: np.ndarray, pred: np.ndarray, options: MetricOptions) -> list[Outcome]:
        names = class_names(self.name, options.classes, pred.shape[1])
        return [Outcome(n, np.asarray(y)[:, k] == 1, pred[:, k]) for k, n in enumerate(names)]

    def decided_classes(
        self, y: np.ndarray, pred: np.ndarray, options: MetricOptions
    ) -> DecidedClasses | None:
        return None  # labels are not exclusive: no single class per sample

    reference_index = Multiclass.reference_index
    explanation_score = Multiclass.explanation_score
    score_description = Multiclass.score_description

    def example(self) -> Example:
        rows = [("1", "0"), ("0", "1"), ("1", "1"), ("0", "0"), ("", "1"), ("1", "0")]
        return Example(
            spec={"kind": "multilabel", "columns": ["edema", "effusion"]},
            cells=[{"edema": a, "effusion": b} for a, b in rows],
        )
