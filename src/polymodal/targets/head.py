"""What every prediction head is: a linear layer, a masked loss and named predictions.

Every head has ``forward(features (B, D)) -> logits``, ``loss(logits, target, target_mask)``
and ``predict(logits) -> {name: Tensor}``. Targets are encoded as in
:mod:`polymodal.data.batch`. A loss averages over the samples whose ``target_mask`` is True; a
batch without any label gives exactly 0 that still has a gradient path (so multitask batches
where one target is unlabeled train the others). Values of unlabeled targets are never read,
even when they are NaN. Each target kind (:mod:`polymodal.targets`) has its head in its own file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.errors import ModelError


def masked_weighted_mean(values: Tensor, weights: Tensor, labeled: Tensor) -> Tensor:
    """``Σ w_i·v_i / Σ w_i`` over labeled samples; exactly 0 (with a grad path) when none are."""
    weights = torch.where(labeled, weights, torch.zeros_like(weights))
    total = (torch.where(labeled, values, torch.zeros_like(values)) * weights).sum()
    weight_sum = weights.sum()
    return total / torch.where(weight_sum > 0, weight_sum, torch.ones_like(weight_sum))


class Head(nn.Module, ABC):
    """A linear layer ``(B, D) -> (B, n_outputs)`` plus the loss and prediction of its kind."""

    def __init__(self, *, in_dim: int, n_outputs: int, squeeze: bool = False) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, n_outputs)
        # Single-output kinds give (B,) logits, matching their (B,) targets.
        self.squeeze = squeeze

    def forward(self, features: Tensor) -> Tensor:
        """``features (B, D)`` -> logits ``(B,)`` or ``(B, n_outputs)``."""
        logits = self.proj(features)
        return logits.squeeze(-1) if self.squeeze else logits

    @abstractmethod
    def loss(self, logits: Tensor, target: Tensor, target_mask: Tensor) -> Tensor:
        """Scalar loss averaged over the samples whose ``target_mask (B,)`` is True."""

    @abstractmethod
    def predict(self, logits: Tensor) -> dict[str, Tensor]:
        """Named predictions of the batch, e.g. ``{"probability": (B,)}``."""


class PerSampleHead(Head):
    """A head whose loss is a (weighted) mean of independent per-sample losses."""

    # Label smoothing ε of the cross-entropy kinds (binary, multiclass, multilabel), set by the
    # training loop from ``train.label_smoothing``. Applied in training mode only: validation
    # losses stay the plain cross-entropy. Other kinds ignore it.
    label_smoothing: float = 0.0

    def smoothing(self) -> float:
        """The ε this loss applies now: ``label_smoothing`` in training mode, else 0."""
        return self.label_smoothing if self.training else 0.0

    @abstractmethod
    def per_sample_loss(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Loss and weight of each sample, both ``(B,)``; ``target`` is already sanitised."""

    def loss(self, logits: Tensor, target: Tensor, target_mask: Tensor) -> Tensor:
        labeled = target_mask.bool()
        # Unlabeled targets may hold anything (NaN, -1): replace them before they reach a loss
        # function, whose gradient would otherwise be 0 · NaN = NaN.
        shape = (-1,) + (1,) * (target.dim() - 1)
        target = torch.where(labeled.view(shape), target, torch.zeros_like(target))
        values, weights = self.per_sample_loss(logits, target)
        return masked_weighted_mean(values, weights, labeled)


def class_weights(name: str, info: Mapping[str, Any], n_classes: int) -> Tensor | None:
    weights = info.get("class_weights")
    if weights is None:
        return None
    if isinstance(weights, str) or len(weights) != n_classes or any(w < 0 for w in weights):
        raise ModelError(
            f"target '{name}': class_weights must be {n_classes} non-negative numbers "
            f"(one per class), got {weights!r}"
        )
    return torch.tensor([float(w) for w in weights])


def bernoulli_kl(teacher_logits: Tensor, student_logits: Tensor) -> Tensor:
    """Elementwise KL(Bernoulli(σ(t)) ‖ Bernoulli(σ(s))), computed from logits in log space."""
    p = torch.sigmoid(teacher_logits)
    return p * (F.logsigmoid(teacher_logits) - F.logsigmoid(student_logits)) + (1 - p) * (
        F.logsigmoid(-teacher_logits) - F.logsigmoid(-student_logits)
    )


def softmax_kl(teacher_logits: Tensor, student_logits: Tensor, temperature: float) -> Tensor:
    """KL between τ-softened softmax distributions over the last dim, × τ², averaged over every
    other position (samples; digits)."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1).flatten(0, -2)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=-1).flatten(0, -2)
    kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
    return kl * temperature**2
