"""The two M3FM predictors (methods.md §2.2 "Predictors"): an additive hazard layer for the
cumulative risk by each of K horizons, and digit-wise classification of a clinical number.

Both are built by :func:`polymodal.heads.create_head` from a target info (``kind``
``"cumulative_risk"`` with ``horizons`` and ``monotone``, or ``"digits"`` with ``num_digits``)
and read the targets encoded as in :mod:`polymodal.data.batch`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.heads import PerSampleHead


def cumulative_logits(logits: Tensor, *, monotone: bool = True) -> Tensor:
    """Additive-hazard logits ``(B, K + 1)`` (K hazards, then the base) -> ``(B, K)``.

    The cumulative logit by horizon t is ``base + Σ_{k ≤ t} h_k``; ``monotone`` passes the
    hazards through softplus first.
    """
    hazards, base = logits[:, :-1], logits[:, -1:]
    if monotone:
        hazards = F.softplus(hazards)
    return base + torch.cumsum(hazards, dim=-1)


class CumulativeRiskHead(PerSampleHead):
    """Additive hazard layer: logits ``(B, K + 1)`` = K per-horizon hazards h_k, then a base b.

    The cumulative logit by horizon t is ``b + Σ_{k ≤ t} h_k`` and its sigmoid the risk of an
    event by t. ``monotone=True`` passes the hazards through softplus, so the risk never falls
    with the horizon; ``monotone=False`` keeps the raw hazards of the official M3FM code, where a
    later risk can be lower than an earlier one (methods.md §2.9).

    Loss: binary cross-entropy of every horizon whose label is known (target ``(B, 2K)``: labels,
    then the label mask), summed and divided by the number of known (sample, horizon) pairs; a
    batch with nothing known gives exactly 0 with a gradient path. Predicts ``risk`` ``(B, K)``.
    """

    def __init__(self, *, in_dim: int, horizons: Sequence[float], monotone: bool = True) -> None:
        super().__init__(in_dim=in_dim, n_outputs=len(horizons) + 1)
        self.horizons = [float(h) for h in horizons]
        self.monotone = bool(monotone)

    def cumulative_logits(self, logits: Tensor) -> Tensor:
        """Head logits ``(B, K + 1)`` -> cumulative logit by each horizon ``(B, K)``."""
        return cumulative_logits(logits, monotone=self.monotone)

    def per_sample_loss(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        n_horizons = len(self.horizons)
        labels, known = target[:, :n_horizons], target[:, n_horizons:] > 0.5  # (B, K) each
        bce = F.binary_cross_entropy_with_logits(
            self.cumulative_logits(logits), labels.to(logits.dtype), reduction="none"
        )
        n_known = known.sum(dim=-1).to(logits.dtype)  # (B,)
        total = torch.where(known, bce, torch.zeros_like(bce)).sum(dim=-1)
        # Weighted by its known horizons, a sample's mean gives Σ BCE / Σ mask over the batch.
        return total / n_known.clamp(min=1.0), n_known

    def predict(self, logits: Tensor) -> dict[str, Tensor]:
        return {"risk": torch.sigmoid(self.cumulative_logits(logits))}


class DigitsHead(PerSampleHead):
    """A non-negative integer as ``num_digits`` 10-way classifications, most significant first.

    Logits ``(B, num_digits, 10)``. Loss: cross-entropy averaged over the digits, then over the
    labelled samples (target int64 ``(B, num_digits)``). Predicts ``digits`` ``(B, num_digits)``
    (each digit's argmax) and ``value`` ``(B,)`` = Σ d_i · 10^(num_digits − 1 − i), e.g.
    100·d₁ + 10·d₂ + d₃ for three digits.
    """

    def __init__(self, *, in_dim: int, num_digits: int = 3) -> None:
        super().__init__(in_dim=in_dim, n_outputs=10 * num_digits)
        self.num_digits = int(num_digits)
        # An integer buffer: a cast of the model to half precision leaves it exact.
        place_values = 10 ** torch.arange(self.num_digits - 1, -1, -1, dtype=torch.int64)
        self.register_buffer("place_values", place_values, persistent=False)

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
        value = (digits * self.place_values).sum(dim=-1)
        return {"value": value.to(torch.float32), "digits": digits}
