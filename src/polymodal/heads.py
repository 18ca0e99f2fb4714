"""Prediction heads and their losses, one per target kind.

Build a head with :func:`create_head` from a ``target_info`` dict (made by the data layer)::

    {"kind": "binary" | "multiclass" | "multilabel" | "regression" | "time_to_event"
             | "cumulative_risk" | "digits",
     "n_outputs": int, "classes": [...] | None, "class_weights": [...] | None,
     "bins": [...] | None, "loss": "discrete" | "cox", "mean": float, "std": float,
     "horizons": [...], "monotone": bool, "num_digits": int}

Every head has ``forward(features (B, D)) -> logits``, ``loss(logits, target, target_mask)``
and ``predict(logits) -> {name: Tensor}``. Targets are encoded as in
:mod:`polymodal.data.batch`. A loss averages over the samples whose ``target_mask`` is True; a
batch without any label gives exactly 0 that still has a gradient path (so multitask batches
where one target is unlabeled train the others). Values of unlabeled targets are never read,
even when they are NaN.

Output sizes come from the kind: binary, regression and Cox give one logit per sample
(``(B,)``), multiclass ``n_outputs`` (or ``len(classes)``), multilabel ``n_outputs``, and the
discrete-time survival head ``len(bins)`` hazards (one per bin, ``bins`` = upper edges). The
M3FM heads (:mod:`polymodal.task_heads`): cumulative_risk gives ``len(horizons) + 1`` logits
(hazards, then a base), digits ``(B, num_digits, 10)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.data.spec import TARGET_KINDS as KINDS
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


def _class_weights(name: str, info: dict[str, Any], n_classes: int) -> Tensor | None:
    weights = info.get("class_weights")
    if weights is None:
        return None
    if isinstance(weights, str) or len(weights) != n_classes or any(w < 0 for w in weights):
        raise ModelError(
            f"target '{name}': class_weights must be {n_classes} non-negative numbers "
            f"(one per class), got {weights!r}"
        )
    return torch.tensor([float(w) for w in weights])


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


class DiscreteTimeHead(PerSampleHead):
    """Discrete-time survival: one hazard logit per time bin (logistic hazard).

    ``bins`` are the K increasing upper bin edges, as the preprocessing state writes them: bin k
    covers ``(bins[k-1], bins[k]]``, bin 0 everything up to ``bins[0]``. With h_j = σ(logit_j),
    a sample contributes the negative log of

    * an event at time t in bin k: h_k · Π_{j<k} (1 − h_j)
    * censored at time t: Π (1 − h_j) over the bins that ended by t (``bins[j] ≤ t``), the
      survival actually observed, with no guess about the bin it was censored in
    * an event after the last edge: Π_{j<K} (1 − h_j), i.e. event-free through the horizon.

    Target ``(B, 2)`` = (time, event). Predicts ``hazard``, ``survival`` (S at each upper edge,
    non-increasing) and ``cumulative_risk`` = 1 − survival, each ``(B, K)``, and ``risk`` (B,)
    = the cumulative risk at the last edge (higher = earlier event, for the C-index).
    """

    def __init__(self, *, in_dim: int, bins: Sequence[float]) -> None:
        super().__init__(in_dim=in_dim, n_outputs=len(bins))
        self.register_buffer("edges", torch.tensor([float(b) for b in bins]), persistent=False)

    def per_sample_loss(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        time, event = target[:, 0].contiguous(), target[:, 1] > 0.5
        edges = self.edges.to(time.dtype)
        event_bin = torch.bucketize(time, edges, right=False)  # (B,) 0..K, K = after the horizon
        survived = torch.bucketize(time, edges, right=True)  # (B,) bins with an edge ≤ time
        in_horizon = event & (event_bin < len(edges))
        # Bins whose outcome is known: survived ones, plus the event's own bin.
        last_known = torch.where(in_horizon, event_bin + 1, survived)
        bin_index = torch.arange(logits.shape[-1], device=logits.device)
        known = bin_index[None, :] < last_known[:, None]  # (B, K)
        occurred = (bin_index[None, :] == event_bin[:, None]) & in_horizon[:, None]
        bce = F.binary_cross_entropy_with_logits(
            logits, occurred.to(logits.dtype), reduction="none"
        )  # (B, K): −log h_j where the event happened, −log(1 − h_j) elsewhere
        values = torch.where(known, bce, torch.zeros_like(bce)).sum(dim=-1)
        return values, torch.ones_like(values)

    def predict(self, logits: Tensor) -> dict[str, Tensor]:
        # Summing log(1 − h) rather than multiplying keeps many small hazards accurate.
        survival = torch.exp(torch.cumsum(F.logsigmoid(-logits), dim=-1))  # (B, K)
        return {
            "hazard": torch.sigmoid(logits),
            "survival": survival,
            "cumulative_risk": 1.0 - survival,
            "risk": 1.0 - survival[:, -1],
        }


class CoxHead(Head):
    """Proportional hazards: one risk score per sample; Breslow partial likelihood over the batch.

    loss = −(1/E) Σ_{i: event} [η_i − log Σ_{j: t_j ≥ t_i} exp(η_j)], the risk sets holding the
    labeled samples only; tied event times share one risk set (Breslow). A batch without events
    gives 0. Predicts ``risk`` (B,) = η: higher means an earlier expected event.
    """

    def __init__(self, *, in_dim: int) -> None:
        super().__init__(in_dim=in_dim, n_outputs=1, squeeze=True)

    def loss(self, logits: Tensor, target: Tensor, target_mask: Tensor) -> Tensor:
        labeled = target_mask.bool()
        target = torch.where(labeled[:, None], target, torch.zeros_like(target))
        time, event = target[:, 0], (target[:, 1] > 0.5) & labeled
        # risk[i, j]: sample j is still at risk at sample i's time. The diagonal is always kept
        # so no row's logsumexp is over an empty set (whose gradient would be NaN).
        risk = (time[None, :] >= time[:, None]) & labeled[None, :]
        risk = risk | torch.eye(len(time), dtype=torch.bool, device=time.device)
        scores = logits[None, :].expand(len(time), -1)
        log_risk = torch.logsumexp(
            torch.where(risk, scores, torch.full_like(scores, float("-inf"))), dim=1
        )
        return masked_weighted_mean(log_risk - logits, torch.ones_like(logits), event)

    def predict(self, logits: Tensor) -> dict[str, Tensor]:
        return {"risk": logits}


def create_head(name: str, target_info: dict[str, Any], *, in_dim: int) -> Head:
    """The head for target ``name`` described by ``target_info`` (see the module docstring).

    Raises:
        ModelError: unknown kind, missing ``bins`` for the discrete-time loss, bad class weights,
            ``horizons`` or ``num_digits``.
    """
    kind = target_info.get("kind")
    if kind not in KINDS:
        raise ModelError(f"target '{name}': unknown kind {kind!r}; known kinds: {', '.join(KINDS)}")
    if kind in ("cumulative_risk", "digits"):
        return _m3fm_head(name, target_info, in_dim)
    if kind == "binary":
        return BinaryHead(in_dim=in_dim, class_weights=_class_weights(name, target_info, 2))
    if kind == "multiclass":
        classes = target_info.get("classes")
        n_classes = target_info.get("n_outputs") or (len(classes) if classes else 0)
        if n_classes < 2:
            raise ModelError(
                f"target '{name}': a multiclass target needs at least 2 classes, got {n_classes}"
            )
        weights = _class_weights(name, target_info, n_classes)
        return MulticlassHead(in_dim=in_dim, n_classes=n_classes, class_weights=weights)
    if kind == "multilabel":
        n_labels = target_info.get("n_outputs") or len(target_info.get("classes") or ())
        if n_labels < 1:
            raise ModelError(f"target '{name}': a multilabel target needs at least one label")
        if target_info.get("class_weights") is not None:
            raise ModelError(
                f"target '{name}': class_weights are not supported for multilabel targets; "
                "remove them from the spec"
            )
        return MultilabelHead(in_dim=in_dim, n_labels=n_labels)
    if kind == "regression":
        std = float(target_info.get("std") or 1.0)
        return RegressionHead(in_dim=in_dim, mean=float(target_info.get("mean") or 0.0), std=std)

    loss = target_info.get("loss") or "discrete"
    if loss == "cox":
        return CoxHead(in_dim=in_dim)
    if loss != "discrete":
        raise ModelError(
            f"target '{name}': time_to_event loss {loss!r} is not one of discrete, cox"
        )
    bins = target_info.get("bins")
    if not bins or any(later <= earlier for earlier, later in pairwise(bins)):
        raise ModelError(
            f"target '{name}': the discrete-time loss needs 'bins', strictly increasing upper "
            f"bin edges (e.g. [365, 730, 1095]), got {bins!r}; or set loss: cox"
        )
    return DiscreteTimeHead(in_dim=in_dim, bins=bins)


def _m3fm_head(name: str, target_info: dict[str, Any], in_dim: int) -> Head:
    # Imported here: polymodal.task_heads builds on this module's PerSampleHead.
    from polymodal.task_heads import CumulativeRiskHead, DigitsHead

    if target_info["kind"] == "digits":
        num_digits = target_info.get("num_digits")
        if not isinstance(num_digits, int) or not 1 <= num_digits <= 6:
            raise ModelError(
                f"target '{name}': a digits target needs 'num_digits' from 1 to 6, "
                f"got {num_digits!r}"
            )
        return DigitsHead(in_dim=in_dim, num_digits=num_digits)
    horizons = target_info.get("horizons")
    if not horizons or any(later <= earlier for earlier, later in pairwise(horizons)):
        raise ModelError(
            f"target '{name}': a cumulative_risk target needs 'horizons', strictly increasing "
            f"(e.g. [1, 2, 3, 4, 5, 6] years), got {horizons!r}"
        )
    monotone = target_info.get("monotone")
    return CumulativeRiskHead(
        in_dim=in_dim, horizons=horizons, monotone=True if monotone is None else bool(monotone)
    )
