"""``attention``: early fusion by full self-attention over the tokens of every modality.

The reference point for ``synergy``: every token attends to every other, so the cost grows with
the square of the number of tokens (see ``bench/scaling.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.fusion.base import FusionCore
from polymodal.fusion.registry import register_core
from polymodal.fusion.streams import batch_size, gather_streams
from polymodal.layers.attention import transformer_stack


@register_core("attention")
class AttentionCore(FusionCore):
    """``[CLS; tokens + modality-type embeddings]`` -> ``depth`` pre-LN blocks -> CLS.

    Output ``(B, dim)``. Attention rollout reads the CLS token's row through ``blocks``.

    Args:
        modalities: modality name -> kind.
        dim: token width D.
        depth: number of transformer blocks.
        heads: attention heads; dim_head defaults to ``dim // heads``.
        ff_mult: GEGLU feed-forward expansion.
        dropout: attention and feed-forward dropout.
    """

    supports_rollout = True

    def __init__(
        self,
        *,
        modalities: dict[str, str],
        dim: int,
        depth: int = 4,
        heads: int = 4,
        dim_head: int | None = None,
        ff_mult: float = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(modalities=modalities, dim=dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.modality_embedding = nn.Parameter(torch.randn(len(self.modalities), dim) * 0.02)
        self.blocks = transformer_stack(
            depth, dim=dim, heads=heads, dim_head=dim_head, ff_mult=ff_mult, dropout=dropout
        )
        self.norm = nn.LayerNorm(dim)

    def rollout_blocks(self) -> Sequence[nn.Module]:
        return self.blocks  # sequence [CLS; streams]

    @classmethod
    def example_options(cls) -> dict[str, Any]:
        return {"depth": 1, "heads": 2}

    def forward(
        self,
        tokens: dict[str, Tensor],
        masks: dict[str, Tensor],
        available: dict[str, Tensor],
    ) -> Tensor:
        """``tokens[m] (B, N_m, D)`` -> ``(B, D)``."""
        n = batch_size(tokens, available)
        streams = gather_streams(self.modalities, tokens, masks, available)
        cls = self.cls_token.expand(n, -1, -1)
        x = torch.cat([cls, *(t + self.modality_embedding[i] for i, t, _ in streams)], dim=1)
        # (B, 1 + ΣN_m, D); the CLS token is always valid, so no sample is left without keys.
        always = torch.ones(n, 1, dtype=torch.bool, device=x.device)
        mask = torch.cat([always, *(m for _, _, m in streams)], dim=1)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x[:, 0])
