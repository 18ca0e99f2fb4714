"""Pooling of a variable number of valid tokens."""

from __future__ import annotations

import torch
from torch import Tensor


def masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    """Mean of the valid tokens: ``tokens (B, N, D)``, ``mask (B, N)`` -> ``(B, D)``.

    A sample without any valid token gets zeros (not NaN); masked values never enter the sum,
    even when they are NaN or inf.
    """
    valid = mask[..., None]
    total = torch.where(valid, tokens, torch.zeros_like(tokens)).sum(dim=1)
    count = mask.sum(dim=1, keepdim=True).clamp_min(1).to(tokens.dtype)
    return total / count
