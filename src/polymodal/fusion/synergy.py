"""``synergy``: a learned latent memory reads every modality (Khader et al., "learnable synergies").

A small set of L learned latents cross-attends to the tokens of all available modalities, then
attends to itself; this repeats ``depth`` times. The cost is O(N·L) in the number N of input
tokens instead of the O(N²) of full self-attention, and pairwise interactions happen only
through the memory.

Two layouts:

* ``layout="latent"`` (default): every modality is read by the memory; the latents are pooled
  (``pool="mean"`` or ``"attention"``) into the output.
* ``layout="paper"`` (LSMT, methods.md §1.2): the modalities in ``direct`` (by default those of a
  spatial kind, ``ModalityKind.spatial``: images and volumes) skip the memory; the others are compressed into the latents, projected to
  ``dim``, and ``[CLS; direct tokens; latents]`` + sinusoidal PE goes through ``fusion_depth``
  pre-LN transformer blocks; the CLS token is the output.

Fixes of the official code (methods.md §1.10): key-padding masks everywhere (padded steps and
missing modalities are never attended), a missing modality is masked rather than a zero input, and
positions count valid tokens only, so padding or a missing image never shifts the latents' PE.
``pe_mode="faithful_double_add"`` reproduces the official ``x + dropout(x + PE)`` quirk on request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.errors import ModelError
from polymodal.fusion.base import FusionCore
from polymodal.fusion.registry import register_core
from polymodal.fusion.streams import batch_size, check_modality_names, gather_streams
from polymodal.layers.attention import Attention, CrossAttentionBlock, TransformerBlock
from polymodal.layers.positional import sinusoidal_embedding
from polymodal.layers.rollout import head_mean, recorded_attention, rollout
from polymodal.modalities import get as modality_kind


class LatentMemory(nn.Module):
    """Perceiver encoder: L learned latents read a context by cross-attention, then self-attend.

    Inputs: ``context (B, N, D_c)``, ``context_mask (B, N)`` True = valid.
    Returns the latents ``(B, L, D_l)``.
    """

    def __init__(
        self,
        *,
        context_dim: int,
        num_latents: int,
        latent_dim: int,
        depth: int,
        cross_heads: int,
        cross_dim_head: int,
        latent_heads: int,
        latent_dim_head: int,
        self_per_cross: int,
        ff_mult: float,
        dropout: float,
    ) -> None:
        super().__init__()
        self.latents = nn.Parameter(torch.randn(num_latents, latent_dim))
        self.layers = nn.ModuleList()
        for _ in range(depth):
            cross = CrossAttentionBlock(
                query_dim=latent_dim,
                context_dim=context_dim,
                heads=cross_heads,
                dim_head=cross_dim_head,
                ff_mult=ff_mult,
                dropout=dropout,
            )
            latent_blocks = nn.ModuleList(
                TransformerBlock(
                    dim=latent_dim,
                    heads=latent_heads,
                    dim_head=latent_dim_head,
                    ff_mult=ff_mult,
                    dropout=dropout,
                )
                for _ in range(self_per_cross)
            )
            self.layers.append(nn.ModuleList([cross, latent_blocks]))

    def forward(self, context: Tensor, context_mask: Tensor) -> Tensor:
        latents = self.latents.expand(context.shape[0], -1, -1)  # (B, L, D_l)
        for cross, latent_blocks in self.layers:
            latents = cross(latents, context, context_mask)
            for block in latent_blocks:
                latents = block(latents)
        return latents


@register_core("synergy")
class SynergyCore(FusionCore):
    """Latent-memory fusion. Output ``(B, out_dim)``: ``latent_dim`` (latent layout) or ``dim``.

    Args:
        modalities: modality name -> kind, in the order the core reads them.
        dim: token width D of every encoder.
        num_latents: L, the size of the memory.
        latent_dim: width of the latents (default ``dim``).
        depth: repeats of (cross-attention -> ``self_per_cross`` latent self-attention blocks).
        cross_heads, cross_dim_head: heads of the cross-attention (paper: 1 × 64).
        latent_heads, latent_dim_head: heads of the latent self-attention (paper: 4 × 32).
        self_per_cross: latent self-attention blocks after each cross-attention.
        ff_mult: GEGLU feed-forward expansion.
        dropout: attention and feed-forward dropout.
        pool: latent layout readout, ``"mean"`` of the latents or ``"attention"`` (a learned query).
        layout: ``"latent"`` or ``"paper"`` (see the module docstring).
        direct: paper layout: modalities fed straight to the fusion transformer (default: those
            of a spatial kind, images and volumes).
        fusion_depth, fusion_heads, fusion_dim_head, fusion_ff_mult: the paper layout's fusion
            transformer (paper: 4 blocks, 4 heads × 128, MLP ratio 1).
        pe_mode: paper layout: ``"standard"`` (dropout(x + PE)) or ``"faithful_double_add"``
            (x + dropout(x + PE), the official code's quirk).
        pe_dropout: dropout applied with the positional encoding (paper: 0.1).

    Attention rollout (:meth:`rollout_relevance`) follows the memory's cross-attention and
    latent self-attention, then the readout: the latents' mean or attention pool (latent layout)
    or the CLS row of the fusion transformer, which also reads the direct tokens (paper layout).
    """

    supports_rollout = True

    def __init__(
        self,
        *,
        modalities: dict[str, str],
        dim: int,
        num_latents: int = 32,
        latent_dim: int | None = None,
        depth: int = 4,
        cross_heads: int = 1,
        cross_dim_head: int = 64,
        latent_heads: int = 4,
        latent_dim_head: int = 32,
        self_per_cross: int = 1,
        ff_mult: float = 4,
        dropout: float = 0.0,
        pool: str = "mean",
        layout: str = "latent",
        direct: list[str] | None = None,
        fusion_depth: int = 4,
        fusion_heads: int = 4,
        fusion_dim_head: int | None = None,
        fusion_ff_mult: float = 4,
        pe_mode: str = "standard",
        pe_dropout: float = 0.0,
    ) -> None:
        super().__init__(modalities=modalities, dim=dim)
        for option, value, choices in (
            ("pool", pool, ("mean", "attention")),
            ("layout", layout, ("latent", "paper")),
            ("pe_mode", pe_mode, ("standard", "faithful_double_add")),
        ):
            if value not in choices:
                raise ModelError(
                    f"fusion core 'synergy': {option}={value!r} is not one of {', '.join(choices)}"
                )
        if direct is not None and layout != "paper":
            raise ModelError("fusion core 'synergy': 'direct' needs layout='paper'")
        latent_dim = latent_dim or dim
        self.layout = layout
        self.pool = pool
        self.pe_mode = pe_mode

        if layout == "paper":
            if direct is None:
                # The paper feeds the spatial grids (pixels, voxels) straight to the fusion.
                direct = [m for m, kind in modalities.items() if modality_kind(kind).spatial]
            check_modality_names("synergy", modalities, list(direct))
        self.direct = tuple(direct or ())

        self.modality_embedding = nn.Parameter(torch.randn(len(self.modalities), dim) * 0.02)
        self.memory = LatentMemory(
            context_dim=dim,
            num_latents=num_latents,
            latent_dim=latent_dim,
            depth=depth,
            cross_heads=cross_heads,
            cross_dim_head=cross_dim_head,
            latent_heads=latent_heads,
            latent_dim_head=latent_dim_head,
            self_per_cross=self_per_cross,
            ff_mult=ff_mult,
            dropout=dropout,
        )

        if layout == "latent":
            if pool == "attention":
                self.pool_query = nn.Parameter(torch.randn(1, 1, latent_dim) * 0.02)
                self.pool_norm = nn.LayerNorm(latent_dim)
                self.pool_attn = Attention(
                    query_dim=latent_dim, heads=latent_heads, dim_head=latent_dim_head
                )
            self.norm = nn.LayerNorm(latent_dim)
            self.out_dim = latent_dim
        else:
            self.latent_to_tokens = nn.Linear(latent_dim, dim)
            self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
            self.pe_dropout = nn.Dropout(pe_dropout)
            self.fusion = nn.ModuleList(
                TransformerBlock(
                    dim=dim,
                    heads=fusion_heads,
                    dim_head=fusion_dim_head or dim // fusion_heads,
                    ff_mult=fusion_ff_mult,
                    geglu=False,
                    dropout=dropout,
                )
                for _ in range(fusion_depth)
            )
            self.norm = nn.LayerNorm(dim)
            self.out_dim = dim

    def _concat(self, streams: list[tuple[int, Tensor, Tensor]], n: int) -> tuple[Tensor, Tensor]:
        """Streams + their modality embedding, concatenated: ``(B, ΣN_m, D)``, ``(B, ΣN_m)``."""
        embedding = self.modality_embedding
        if not streams:
            empty = torch.zeros(n, 0, dtype=torch.bool, device=embedding.device)
            return embedding.new_zeros(n, 0, embedding.shape[-1]), empty
        tokens = torch.cat([t + embedding[i] for i, t, _ in streams], dim=1)
        mask = torch.cat([m for _, _, m in streams], dim=1)
        return tokens, mask

    def forward(
        self,
        tokens: dict[str, Tensor],
        masks: dict[str, Tensor],
        available: dict[str, Tensor],
    ) -> Tensor:
        """``tokens[m] (B, N_m, D)``, ``masks[m] (B, N_m)``, ``available[m] (B,)`` -> ``(B, out_dim)``."""
        n = batch_size(tokens, available)
        streams = gather_streams(self.modalities, tokens, masks, available)
        memory_streams = [s for s in streams if self.modalities[s[0]] not in self.direct]
        context, context_mask = self._concat(memory_streams, n)
        latents = self.memory(context, context_mask)  # (B, L, D_l)

        if self.layout == "latent":
            return self._pool(latents)

        # Direct tokens keep their modality embedding too, so several direct modalities stay
        # distinguishable beyond their positions.
        direct_streams = [s for s in streams if self.modalities[s[0]] in self.direct]
        direct_tokens, direct_mask = self._concat(direct_streams, n)  # (B, N_direct, D)
        latents = self.latent_to_tokens(latents)  # (B, L, D)
        always = torch.ones(n, 1, dtype=torch.bool, device=latents.device)
        sequence = torch.cat([self.cls_token.expand(n, -1, -1), direct_tokens, latents], dim=1)
        mask = torch.cat([always, direct_mask, always.expand(n, latents.shape[1])], dim=1)
        # (B, 1 + N_direct + L, D). Positions count valid tokens only, so padding or a missing
        # direct modality leaves the latents' positions (and hence the output) unchanged.
        positions = (mask.cumsum(dim=1) - 1).clamp_min(0)
        pe = sinusoidal_embedding(positions, sequence.shape[-1]).to(sequence.dtype)
        if self.pe_mode == "standard":
            x = self.pe_dropout(sequence + pe)
        else:
            x = sequence + self.pe_dropout(sequence + pe)
        for block in self.fusion:
            x = block(x, mask)
        return self.norm(x[:, 0])

    def _pool(self, latents: Tensor) -> Tensor:
        """``(B, L, D_l)`` -> ``(B, D_l)``."""
        if self.pool == "mean":
            return self.norm(latents.mean(dim=1))
        query = self.pool_query.expand(latents.shape[0], -1, -1)  # (B, 1, D_l)
        pooled = query + self.pool_attn(query, self.pool_norm(latents))
        return self.norm(pooled[:, 0])

    # -- attention rollout -------------------------------------------------------------------------

    def rollout_layers(self) -> list[Attention]:
        """Memory cross- and self-attention, then the pool's attention or the fusion blocks."""
        layers = []
        for cross, latent_blocks in self.memory.layers:
            layers.append(cross.attn)
            layers.extend(block.attn for block in latent_blocks)
        if self.layout == "paper":
            layers.extend(block.attn for block in self.fusion)
        elif self.pool == "attention":
            layers.append(self.pool_attn)
        return layers

    def rollout_relevance(
        self,
        layout: Sequence[tuple[str, int]],
        batch_size: int,
        *,
        task: str | None = None,
        folded_tasks: Sequence[str] | None = None,
    ) -> Tensor:
        """``(B, ΣN_m)`` relevance of the input tokens, in ``layout`` order.

        The memory is rolled out through its cross-attention (latents to context:
        ``R_lc <- R_lc + Ā_cross``) and latent self-attention (``R_lc <- R_lc + Ā R_lc``).
        """
        n = batch_size
        direct = set(self.direct)
        n_memory = sum(size for m, size in layout if m not in direct)
        n_direct = sum(size for m, size in layout if m in direct)
        to_context = self._memory_relevance(n, n_memory)  # (B, L, N_mem)
        if self.layout == "latent":
            latents = to_context.shape[1]
            if self.pool == "mean":
                weights = to_context.new_full((n, latents), 1.0 / latents)
            else:
                weights = head_mean(self.pool_attn, "attention pool")[:, 0]  # (B, L)
            memory_relevance = (weights[:, None] @ to_context)[:, 0]  # (B, N_mem)
            direct_relevance = memory_relevance.new_zeros(n, 0)
        else:
            attentions = [
                recorded_attention(b.attn, f"fusion block {i}") for i, b in enumerate(self.fusion)
            ]
            row = rollout(attentions)[:, 0]  # (B, 1 + N_direct + L)
            direct_relevance = row[:, 1 : 1 + n_direct]
            memory_relevance = (row[:, None, 1 + n_direct :] @ to_context)[:, 0]
        # Back to layout order: each modality's block from the memory or the direct part.
        pieces, memory_at, direct_at = [], 0, 0
        for modality, size in layout:
            if modality in direct:
                pieces.append(direct_relevance[:, direct_at : direct_at + size])
                direct_at += size
            else:
                pieces.append(memory_relevance[:, memory_at : memory_at + size])
                memory_at += size
        return torch.cat(pieces, dim=1) if pieces else direct_relevance

    def _memory_relevance(self, n: int, n_memory: int) -> Tensor:
        """Relevance of each latent to each memory token, ``(B, L, N_mem)``."""
        latents = self.memory.latents
        to_context = latents.new_zeros(n, latents.shape[0], n_memory)
        for i, (cross, latent_blocks) in enumerate(self.memory.layers):
            if n_memory:
                to_context = to_context + head_mean(cross.attn, f"memory cross-attention {i}")
            for j, block in enumerate(latent_blocks):
                to_context = (
                    to_context + head_mean(block.attn, f"memory block {i}.{j}") @ to_context
                )
        return to_context

    @classmethod
    def example_options(cls) -> dict[str, Any]:
        return {
            "num_latents": 3,
            "depth": 1,
            "cross_dim_head": 4,
            "latent_heads": 2,
            "latent_dim_head": 4,
        }
