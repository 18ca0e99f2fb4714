"""``concat``: late fusion of pooled per-modality embeddings plus availability indicators."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.fusion.base import FusionCore
from polymodal.fusion.registry import register_core
from polymodal.fusion.streams import batch_size
from polymodal.layers.pooling import masked_mean


@register_core("concat")
class ConcatCore(FusionCore):
    """Per-modality masked mean -> ``[pooled_1, …, pooled_M, indicators]`` -> MLP.

    A missing modality contributes a zero vector and indicator 0, so the MLP can tell "missing"
    from "present with a small embedding". Output ``(B, out_dim)``.

    Args:
        modalities: modality name -> kind (sets the order of the concatenation).
        dim: token width D.
        hidden_dim: width of the MLP's hidden layer (default ``dim``).
        out_dim: output width (default ``dim``).
        dropout: dropout in the MLP.
    """

    def __init__(
        self,
        *,
        modalities: dict[str, str],
        dim: int,
        hidden_dim: int | None = None,
        out_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(modalities=modalities, dim=dim)
        self.out_dim = out_dim or dim
        n = len(self.modalities)
        self.mlp = nn.Sequential(
            nn.Linear(n * dim + n, hidden_dim or dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim or dim, self.out_dim),
        )

    def forward(
        self,
        tokens: dict[str, Tensor],
        masks: dict[str, Tensor],
        available: dict[str, Tensor],
    ) -> Tensor:
        """``tokens[m] (B, N_m, D)`` -> ``(B, out_dim)``."""
        n = batch_size(tokens, available)
        like = self.mlp[0].weight
        pooled, indicators = [], []
        for name in self.modalities:
            if name not in tokens:
                pooled.append(like.new_zeros(n, self.dim))
                indicators.append(like.new_zeros(n))
                continue
            mask = masks[name].bool()
            if name in available:
                mask = mask & available[name].bool()[:, None]
            pooled.append(masked_mean(tokens[name], mask))  # (B, D), zeros when missing
            indicators.append(mask.any(dim=1).to(like.dtype))
        features = torch.cat([*pooled, torch.stack(indicators, dim=1)], dim=1)  # (B, M·D + M)
        return self.mlp(features)
