"""Clinical time series as one token per time step.

Each step's token sees its measured values, which of them were measured (an unmeasured value is
information, not a zero), and Fourier features of the step's time, as in LSMT (methods.md §1.2
item 2). Steps are encoded independently, so padding the series never changes a real step's token.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.encoders.registry import register_encoder
from polymodal.errors import ModelError


def fourier_time_features(times: Tensor, frequencies: Tensor) -> Tensor:
    """(B, T) times -> (B, T, 2K + 1): sin(π f_k t), cos(π f_k t) for K frequencies, and t."""
    angles = math.pi * times[..., None] * frequencies  # (B, T, K)
    return torch.cat([angles.sin(), angles.cos(), times[..., None]], dim=-1)


@register_encoder("series_tokens", kinds=("series",))
class SeriesTokenEncoder(nn.Module):
    """A Linear map of [values, observed mask, Fourier time features] per step, then LayerNorm.

    Inputs: ``values`` (B, T, C) float, ``observed`` (B, T, C) bool, ``times`` (B, T) float,
    ``step_mask`` (B, T) bool.
    Output: tokens (B, T, dim) (zero at padded steps), mask (B, T) = ``step_mask``.

    Args:
        input_info: ``{"kind": "series", "channels": [names], "max_steps": T_max}``.
        dim: token width.
        num_frequencies: K, the number of Fourier frequencies.
        max_frequency: frequencies are spaced linearly from 1 to ``max_frequency / 2`` (LSMT: 10).
    """

    def __init__(
        self,
        input_info: dict[str, Any],
        dim: int,
        *,
        num_frequencies: int = 6,
        max_frequency: float = 10.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.channels = list(input_info["channels"])
        if not self.channels:
            raise ModelError("series_tokens: the series modality lists no channel")
        if num_frequencies < 1:
            raise ModelError(f"series_tokens: num_frequencies must be ≥ 1, got {num_frequencies}")
        frequencies = torch.linspace(1.0, max(max_frequency / 2, 1.0), num_frequencies)
        self.register_buffer("frequencies", frequencies, persistent=False)
        num_channels = len(self.channels)
        self.proj = nn.Linear(2 * num_channels + 2 * num_frequencies + 1, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``values`` (B, T, C), ``observed`` (B, T, C), ``times`` (B, T), ``step_mask`` (B, T)
        -> tokens (B, T, dim), mask (B, T)."""
        values, observed = inputs["values"].float(), inputs["observed"].bool()
        times, step_mask = inputs["times"].float(), inputs["step_mask"].bool()
        if values.shape[-1] != len(self.channels):
            raise ModelError(
                f"series_tokens was built for {len(self.channels)} channels "
                f"({', '.join(self.channels)}) but got {values.shape[-1]}; encode with the "
                "preprocessing state it was fitted with"
            )
        # Unmeasured values and padded steps may hold anything: zero them before they are used.
        observed = observed & step_mask[..., None]
        values = values.masked_fill(~observed, 0.0)
        times = times.masked_fill(~step_mask, 0.0)
        features = torch.cat(
            [values, observed.float(), fourier_time_features(times, self.frequencies)], dim=-1
        )  # (B, T, 2C + 2K + 1)
        tokens = self.norm(self.proj(features)) * step_mask[..., None]  # (B, T, dim)
        return tokens, step_mask
