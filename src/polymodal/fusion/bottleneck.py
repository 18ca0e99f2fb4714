"""``bottleneck``: pooled-bottleneck attention (Wang et al., CMPB 2025; methods.md §4.2).

Each modality keeps its own token stream and its own transformer blocks; the streams exchange
information only through a few shared **bottleneck tokens** Z (an MBT-style attention bottleneck,
Nagrani et al. 2021). In every fusion layer, for every modality m present for a sample::

    [X_m' ; Z_m'] = Block_m([X_m ; Z])       # self-attention over m's tokens + the bottleneck
    Z <- pool_m(Z_m')                        # over the modalities present for that sample only

so the attention cost per layer is Σ_m (N_m + n_b)² instead of the (Σ_m N_m)² of full joint
attention. A missing modality takes no part at all: its tokens are masked out of its own block
and its bottleneck copy is left out of the pool, so whatever its stream holds never reaches the
output. A sample with no modality at all keeps the learned initial bottleneck.

Provenance (methods.md §4.7): the paper's number of bottleneck tokens, number of fusion layers
and the exact meaning of "pooled" are not public; every default here is a reconstruction and is
tagged [recon] below. methods.md also names a third reading of "pooled", average-pooling each
modality's tokens to a fixed length before the bottleneck; it is not implemented here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from polymodal.errors import ModelError
from polymodal.fusion.base import FusionCore
from polymodal.fusion.registry import register_core
from polymodal.fusion.streams import batch_size, gather_streams
from polymodal.layers.attention import TransformerBlock
from polymodal.layers.pooling import masked_mean

POOLINGS = ("mean", "attention")
READOUTS = ("bottleneck", "bottleneck_tokens")


class AttentionPool(nn.Module):
    """Learned weights over the modalities' bottleneck copies, per bottleneck token.

    Inputs: ``copies (B, M, n_b, D)``, ``present (B, M)`` bool. Returns ``(B, n_b, D)``: for each
    bottleneck token a softmax over the present modalities of a scored LayerNorm of its copy.
    Rows without any present modality are left for the caller to replace (they come out zero).
    """

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.score = nn.Linear(dim, 1)

    def forward(self, copies: Tensor, present: Tensor) -> Tensor:
        scores = self.score(self.norm(copies)).squeeze(-1)  # (B, M, n_b)
        valid = present[:, :, None].expand_as(scores)
        scores = scores.masked_fill(~valid, float("-inf"))
        # A row with no present modality softmaxes over an empty set: give it uniform scores
        # (its result is zeroed by the validity mask below and replaced by the caller).
        scores = torch.where(valid.any(dim=1, keepdim=True), scores, torch.zeros_like(scores))
        weights = scores.softmax(dim=1) * valid  # (B, M, n_b)
        return (weights[..., None] * copies).sum(dim=1)  # (B, n_b, D)


@register_core("bottleneck")
class BottleneckCore(FusionCore):
    """Pooled-bottleneck fusion. Output ``(B, out_dim)``: ``dim``, or ``2·dim`` with token readout.

    Args:
        modalities: modality name -> kind; every modality gets its own blocks.
        dim: token width D of every encoder (and of the bottleneck tokens).
        depth: number F of fusion layers. [recon] 4, the number of fusion layers of MBT.
        num_bottlenecks: n_b, the shared bottleneck tokens. [recon] 4, as methods.md suggests.
        heads: attention heads per block; ``dim_head`` defaults to ``dim // heads``.
        dim_head: width of each head.
        ff_mult: GEGLU feed-forward expansion.
        dropout: attention and feed-forward dropout.
        pooling: how the modalities' bottleneck copies become one Z after each layer:
            ``"mean"`` (masked mean over the present modalities; [recon] the default reading) or
            ``"attention"`` (learned softmax weights over the present modalities, per token;
            methods.md's alternative reading).
        readout: ``"bottleneck"``: LayerNorm of the mean of the final Z (the pooled bottleneck
            Z̄, ``(B, D)``); ``"bottleneck_tokens"``: Z̄ concatenated with the mean over present
            modalities of each modality's masked-mean final tokens (``(B, 2·D)``).

    ``modalities`` (the names read, in order) and ``out_dim`` follow the core interface; the
    final pooled bottleneck tokens themselves are available from :meth:`pooled_bottleneck`.
    """

    def __init__(
        self,
        *,
        modalities: dict[str, str],
        dim: int,
        depth: int = 4,
        num_bottlenecks: int = 4,
        heads: int = 4,
        dim_head: int | None = None,
        ff_mult: float = 4,
        dropout: float = 0.0,
        pooling: str = "mean",
        readout: str = "bottleneck",
    ) -> None:
        super().__init__(modalities=modalities, dim=dim)
        for option, value, choices in (
            ("pooling", pooling, POOLINGS),
            ("readout", readout, READOUTS),
        ):
            if value not in choices:
                raise ModelError(
                    f"fusion core 'bottleneck': {option}={value!r} is not one of {', '.join(choices)}"
                )
        for option, value in (("depth", depth), ("num_bottlenecks", num_bottlenecks)):
            if value < 1:
                raise ModelError(
                    f"fusion core 'bottleneck': {option} must be at least 1, got {value}"
                )
        self.pooling = pooling
        self.readout = readout
        self.num_bottlenecks = num_bottlenecks
        self.bottleneck = nn.Parameter(torch.randn(num_bottlenecks, dim) * 0.02)
        # layers[f][m]: modality m's own block in fusion layer f (no weights shared across streams).
        self.layers = nn.ModuleList(
            nn.ModuleDict(
                {
                    name: TransformerBlock(
                        dim=dim,
                        heads=heads,
                        dim_head=dim_head or dim // heads,
                        ff_mult=ff_mult,
                        dropout=dropout,
                    )
                    for name in self.modalities
                }
            )
            for _ in range(depth)
        )
        if pooling == "attention":
            self.pools = nn.ModuleList(AttentionPool(dim=dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        if readout == "bottleneck_tokens":
            self.token_norm = nn.LayerNorm(dim)
        self.out_dim = dim * (2 if readout == "bottleneck_tokens" else 1)

    @classmethod
    def example_options(cls) -> dict[str, Any]:
        return {"depth": 1, "num_bottlenecks": 2, "heads": 2, "readout": "bottleneck_tokens"}

    def forward(
        self,
        tokens: dict[str, Tensor],
        masks: dict[str, Tensor],
        available: dict[str, Tensor],
    ) -> Tensor:
        """``tokens[m] (B, N_m, D)``, ``masks[m] (B, N_m)``, ``available[m] (B,)`` -> ``(B, out_dim)``."""
        bottleneck, streams = self._fuse(tokens, masks, available)
        pooled = self.norm(bottleneck.mean(dim=1))  # (B, D)
        if self.readout == "bottleneck":
            return pooled
        per_modality = [(masked_mean(x, mask), mask.any(dim=1)) for x, mask in streams]
        if per_modality:
            means = torch.stack([mean for mean, _ in per_modality], dim=1)  # (B, M, D)
            present = torch.stack([p for _, p in per_modality], dim=1)  # (B, M)
            token_summary = masked_mean(means, present)  # (B, D), zeros when nothing present
        else:
            token_summary = torch.zeros_like(pooled)
        return torch.cat([pooled, self.token_norm(token_summary)], dim=-1)  # (B, 2·D)

    def pooled_bottleneck(
        self,
        tokens: dict[str, Tensor],
        masks: dict[str, Tensor],
        available: dict[str, Tensor],
    ) -> Tensor:
        """The bottleneck tokens after the last fusion layer's pooling: ``(B, n_b, D)``."""
        bottleneck, _ = self._fuse(tokens, masks, available)
        return bottleneck

    def _fuse(
        self,
        tokens: dict[str, Tensor],
        masks: dict[str, Tensor],
        available: dict[str, Tensor],
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """Run the fusion layers: final Z ``(B, n_b, D)`` and each stream's ``(X_m, mask_m)``."""
        n = batch_size(tokens, available)
        streams = [
            (self.modalities[index], x, mask)
            for index, x, mask in gather_streams(self.modalities, tokens, masks, available)
        ]
        bottleneck = self.bottleneck.expand(n, -1, -1)  # (B, n_b, D)
        # A modality takes part for a sample when it has at least one valid token there.
        present = [mask.any(dim=1) for _, _, mask in streams]  # M × (B,)
        bottleneck_valid = torch.ones(
            n, self.num_bottlenecks, dtype=torch.bool, device=bottleneck.device
        )
        for depth_index, blocks in enumerate(self.layers):
            copies, updated = [], []
            for name, x, mask in streams:
                n_tokens = x.shape[1]
                joint = torch.cat([x, bottleneck], dim=1)  # (B, N_m + n_b, D)
                # The bottleneck keys are always valid, so every query has something to read;
                # the modality's padded or missing tokens are never read.
                joint = blocks[name](joint, torch.cat([mask, bottleneck_valid], dim=1))
                updated.append((name, joint[:, :n_tokens], mask))
                copies.append(joint[:, n_tokens:])  # (B, n_b, D): this modality's view of Z
            streams = updated
            if copies:
                bottleneck = self._pool(depth_index, copies, present, bottleneck)
        return bottleneck, [(x, mask) for _, x, mask in streams]

    def _pool(
        self, depth_index: int, copies: list[Tensor], present: list[Tensor], previous: Tensor
    ) -> Tensor:
        """``M × (B, n_b, D)`` copies -> ``(B, n_b, D)`` over the modalities present per sample."""
        stacked = torch.stack(copies, dim=1)  # (B, M, n_b, D)
        present_matrix = torch.stack(present, dim=1)  # (B, M)
        # Copies of absent modalities are replaced by zeros before any arithmetic, so even a
        # non-finite value there could not leak into the pool (forward or backward).
        stacked = torch.where(present_matrix[:, :, None, None], stacked, torch.zeros_like(stacked))
        if self.pooling == "mean":
            weights = present_matrix.to(stacked.dtype)[:, :, None, None]
            pooled = (stacked * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
        else:
            pooled = self.pools[depth_index](stacked, present_matrix)
        # A sample with nothing present keeps its previous bottleneck (ultimately the learned one).
        anything = present_matrix.any(dim=1)[:, None, None]  # (B, 1, 1)
        return torch.where(anything, pooled, previous)
