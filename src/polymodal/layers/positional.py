"""Fixed positional embeddings."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sinusoidal_embedding(positions: Tensor, dim: int) -> Tensor:
    """Fixed sin/cos embedding of (possibly per-sample) positions: ``(B, N)`` -> ``(B, N, dim)``.

    Interleaved like the original Transformer: even channels sin, odd channels cos, with
    wavelengths from 2π to 10000·2π.
    """
    half = (dim + 1) // 2
    frequencies = torch.exp(
        torch.arange(half, device=positions.device, dtype=torch.float32)
        * (-2.0 * math.log(10000.0) / dim)
    )
    angles = positions.to(torch.float32)[..., None] * frequencies  # (B, N, half)
    embedding = torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)  # (B, N, 2·half)
    return embedding[..., :dim]
