"""Pre-LN transformer layers with key-padding masks: attention, feed-forward, blocks, stacks.

Masks are True = valid (a real token that may be attended).
``torch.nn.functional.scaled_dot_product_attention`` takes a boolean ``attn_mask`` with the same
meaning (True = may attend), so masks are passed straight through, never inverted.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


class Attention(nn.Module):
    """Multi-head (cross-)attention with a key-padding mask.

    Args:
        query_dim: width D_q of the queries.
        context_dim: width D_c of keys/values; ``None`` means self-attention (D_c = D_q).
        heads: number of attention heads.
        dim_head: width of each head; the inner width is ``heads * dim_head``.
        dropout: dropout on the attention weights (training only).

    Attention recording (for attention rollout, :mod:`polymodal.layers.rollout`): set
    ``record_attention = True`` and each forward keeps its attention probabilities
    ``(B, heads, N_q, N_k)`` (masked keys exactly 0; all 0 for a sample without a valid key) in
    ``attention_probs``. Off by default; when off, nothing is kept and SDPA's fused kernels run.

    Inputs:
        x: ``(B, N_q, D_q)`` queries.
        context: ``(B, N_k, D_c)`` keys/values; ``None`` means ``x``.
        key_padding_mask: ``(B, N_k)`` bool, True = a key that may be attended.

    Returns:
        ``(B, N_q, D_q)``. A sample with no valid key at all gets exactly zero, so a residual
        branch adds nothing for it (instead of the NaN of a softmax over an empty set).
    """

    def __init__(
        self,
        *,
        query_dim: int,
        context_dim: int | None = None,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        inner_dim = heads * dim_head
        self.heads = heads
        self.dropout = dropout
        self.to_q = nn.Linear(query_dim, inner_dim, bias=False)
        self.to_kv = nn.Linear(context_dim or query_dim, inner_dim * 2, bias=False)
        self.to_out = nn.Linear(inner_dim, query_dim)
        self.record_attention = False
        self.attention_probs: Tensor | None = None

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
    ) -> Tensor:
        context = x if context is None else context
        if context.shape[1] == 0:
            # Nothing to read (every stream absent): the branch contributes nothing.
            if self.record_attention:
                self.attention_probs = x.new_zeros(x.shape[0], self.heads, x.shape[1], 0)
            return torch.zeros_like(x)

        q = self.to_q(x)
        k, v = self.to_kv(context).chunk(2, dim=-1)
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.heads) for t in (q, k, v))

        attn_mask = None
        has_key = None
        if key_padding_mask is not None:
            # Masking is arithmetic, never a branch on the mask's values, so the same graph
            # serves every batch (torch.export, ONNX); an all-valid mask gives the unmasked result.
            has_key = key_padding_mask.any(dim=-1)  # (B,)
            # A sample with no valid key would softmax over an empty set (NaN on some backends):
            # let it attend anywhere and zero its result below.
            safe_mask = key_padding_mask | ~has_key[:, None]
            attn_mask = safe_mask[:, None, None, :]  # (B, 1, 1, N_k), broadcast over heads/queries

        if self.record_attention:
            out = self._attend_recorded(q, k, v, attn_mask, has_key)
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
            )
        out = self.to_out(rearrange(out, "b h n d -> b n (h d)"))  # (B, N_q, D_q)
        if has_key is not None:
            out = torch.where(has_key[:, None, None], out, torch.zeros_like(out))
        return out

    def _attend_recorded(
        self, q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None, has_key: Tensor | None
    ) -> Tensor:
        """SDPA written out, keeping the probabilities ``(B, H, N_q, N_k)`` it computes."""
        scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (B, H, N_q, N_k)
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        probs = scores.softmax(dim=-1)
        recorded = probs if has_key is None else probs * has_key[:, None, None, None]
        self.attention_probs = recorded.detach()
        probs = F.dropout(probs, self.dropout, training=self.training)
        return probs @ v  # (B, H, N_q, d)


class FeedForward(nn.Module):
    """Position-wise MLP ``D -> mult·D -> D``, GEGLU-gated (Shazeer 2020) or plain GELU.

    Inputs: ``(B, N, D)``; returns ``(B, N, D)``.
    """

    def __init__(
        self, *, dim: int, mult: float = 4, geglu: bool = True, dropout: float = 0.0
    ) -> None:
        super().__init__()
        hidden = int(dim * mult)
        self.geglu = geglu
        self.proj_in = nn.Linear(dim, hidden * 2 if geglu else hidden)
        self.dropout = nn.Dropout(dropout)
        self.proj_out = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.proj_in(x)
        if self.geglu:
            hidden, gate = hidden.chunk(2, dim=-1)
            hidden = hidden * F.gelu(gate)
        else:
            hidden = F.gelu(hidden)
        return self.proj_out(self.dropout(hidden))


class TransformerBlock(nn.Module):
    """Pre-LN transformer block: ``x + Attn(LN(x))``, then ``x + FF(LN(x))``.

    Inputs: ``x (B, N, D)``, ``mask (B, N)`` bool True = valid key (or ``None``).
    Returns ``(B, N, D)``.
    """

    def __init__(
        self,
        *,
        dim: int,
        heads: int,
        dim_head: int | None = None,
        ff_mult: float = 4,
        geglu: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = Attention(
            query_dim=dim, heads=heads, dim_head=dim_head or dim // heads, dropout=dropout
        )
        self.ff_norm = nn.LayerNorm(dim)
        self.ff = FeedForward(dim=dim, mult=ff_mult, geglu=geglu, dropout=dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.attn_norm(x), key_padding_mask=mask)
        return x + self.ff(self.ff_norm(x))


def transformer_stack(depth: int, **block_options: Any) -> nn.ModuleList:
    """``depth`` :class:`TransformerBlock` s with the same options (``dim``, ``heads``, …)."""
    return nn.ModuleList(TransformerBlock(**block_options) for _ in range(depth))


class CrossAttentionBlock(nn.Module):
    """Pre-LN cross-attention block: queries read a context, then a feed-forward.

    Separate LayerNorms on queries and context (Perceiver). Inputs: ``queries (B, L, D_q)``,
    ``context (B, N, D_c)``, ``context_mask (B, N)`` True = valid. Returns ``(B, L, D_q)``.
    """

    def __init__(
        self,
        *,
        query_dim: int,
        context_dim: int,
        heads: int,
        dim_head: int,
        ff_mult: float = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.query_norm = nn.LayerNorm(query_dim)
        self.context_norm = nn.LayerNorm(context_dim)
        self.attn = Attention(
            query_dim=query_dim,
            context_dim=context_dim,
            heads=heads,
            dim_head=dim_head,
            dropout=dropout,
        )
        self.ff_norm = nn.LayerNorm(query_dim)
        self.ff = FeedForward(dim=query_dim, mult=ff_mult, dropout=dropout)

    def forward(self, queries: Tensor, context: Tensor, context_mask: Tensor | None) -> Tensor:
        queries = queries + self.attn(
            self.query_norm(queries), self.context_norm(context), key_padding_mask=context_mask
        )
        return queries + self.ff(self.ff_norm(queries))
