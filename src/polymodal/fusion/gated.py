"""``gated``: a gated multimodal unit over pooled tokens (Arevalo et al., "Gated Multimodal Units
for Information Fusion", ICLR workshop 2017), generalised to any number of modalities.

Each modality's tokens are pooled by a masked mean and mapped to a candidate ``h_m = tanh(W_m x_m)``;
a sigmoid gate per modality and feature, computed from every pooled modality and the availability
indicators, decides how much of each candidate enters the sum::

    x_m = masked_mean(tokens_m)                   (B, D), zero when m is missing
    h_m = tanh(W_m x_m)                           (B, out_dim)
    z   = sigmoid(W_z [x_1; …; x_M; a_1 … a_M])   (B, M, out_dim)
    out = LayerNorm(Σ_m a_m · z_m ⊙ h_m)          (B, out_dim)

with ``a_m`` 1 when the sample has at least one valid token of m. A missing modality adds
nothing (its gate is multiplied by 0) and its tokens never enter the pooling, so whatever its
stream holds cannot reach the output.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.fusion.base import FusionCore
from polymodal.fusion.registry import register_core
from polymodal.fusion.streams import batch_size, gather_streams
from polymodal.layers.pooling import masked_mean


@register_core("gated")
class GatedCore(FusionCore):
    """Gated multimodal unit. Output ``(B, out_dim)``.

    Args:
        modalities: modality name -> kind.
        dim: token width D.
        out_dim: output width (default ``dim``).
        dropout: dropout on the pooled features before the candidates and gates.
    """

    def __init__(
        self,
        *,
        modalities: dict[str, str],
        dim: int,
        out_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(modalities=modalities, dim=dim)
        self.out_dim = out_dim or dim
        n = len(self.modalities)
        self.dropout = nn.Dropout(dropout)
        self.candidates = nn.ModuleList(nn.Linear(dim, self.out_dim) for _ in range(n))
        self.gate = nn.Linear(n * dim + n, n * self.out_dim)
        self.norm = nn.LayerNorm(self.out_dim)

    def forward(
        self,
        tokens: dict[str, Tensor],
        masks: dict[str, Tensor],
        available: dict[str, Tensor],
    ) -> Tensor:
        """``tokens[m] (B, N_m, D)`` -> ``(B, out_dim)``."""
        n = batch_size(tokens, available)
        like = self.gate.weight
        pooled = like.new_zeros(n, len(self.modalities), self.dim)  # (B, M, D)
        present = torch.zeros(n, len(self.modalities), dtype=torch.bool, device=like.device)
        for index, stream, mask in gather_streams(self.modalities, tokens, masks, available):
            pooled[:, index] = masked_mean(stream, mask)
            present[:, index] = mask.any(dim=1)
        pooled = self.dropout(pooled)
        candidates = torch.stack(
            [torch.tanh(layer(pooled[:, i])) for i, layer in enumerate(self.candidates)], dim=1
        )  # (B, M, out_dim)
        gate_input = torch.cat([pooled.flatten(1), present.to(like.dtype)], dim=1)
        gates = torch.sigmoid(self.gate(gate_input)).unflatten(1, (len(self.modalities), -1))
        weights = gates * present[:, :, None].to(like.dtype)  # (B, M, out_dim)
        return self.norm((weights * candidates).sum(dim=1))
