"""Building blocks shared by the fusion cores: masked attention, feed-forward, pooling, PE.

Masks are True = valid (a real token of an available modality), as everywhere in polymodal.
``torch.nn.functional.scaled_dot_product_attention`` takes a boolean ``attn_mask`` with the same
meaning (True = may attend), so masks are passed straight through, never inverted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from polymodal.errors import ModelError


class Attention(nn.Module):
    """Multi-head (cross-)attention with a key-padding mask.

    Args:
        query_dim: width D_q of the queries.
        context_dim: width D_c of keys/values; ``None`` means self-attention (D_c = D_q).
        heads: number of attention heads.
        dim_head: width of each head; the inner width is ``heads * dim_head``.
        dropout: dropout on the attention weights (training only).

    Attention recording (for attention rollout, :mod:`polymodal.explain.rollout`): set
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
        if key_padding_mask is not None and not bool(key_padding_mask.all()):
            # Without padding no mask is passed, which lets SDPA pick its fused kernels.
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


def masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    """Mean of the valid tokens: ``tokens (B, N, D)``, ``mask (B, N)`` -> ``(B, D)``.

    A sample without any valid token gets zeros (not NaN); masked values never enter the sum,
    even when they are NaN or inf.
    """
    valid = mask[..., None]
    total = torch.where(valid, tokens, torch.zeros_like(tokens)).sum(dim=1)
    count = mask.sum(dim=1, keepdim=True).clamp_min(1).to(tokens.dtype)
    return total / count


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


def gather_streams(
    modalities: tuple[str, ...],
    tokens: Mapping[str, Tensor],
    masks: Mapping[str, Tensor],
    available: Mapping[str, Tensor],
) -> list[tuple[int, Tensor, Tensor]]:
    """The streams a core reads, in the core's own modality order.

    Returns ``[(index in modalities, tokens (B, N_m, D), mask (B, N_m))]`` for each modality
    present in ``tokens``. The mask is ANDed with availability again (cheap, and a core must not
    depend on its caller for correctness), and masked tokens are replaced by zeros so garbage in
    a missing stream (even NaN) never enters any arithmetic, forward or backward.
    Modalities absent from ``tokens`` are simply skipped: absent and unavailable are the same.
    """
    streams = []
    for index, name in enumerate(modalities):
        if name not in tokens:
            continue
        stream = tokens[name]
        mask = masks[name].bool() if name in masks else stream.new_ones(stream.shape[:2], bool)
        if name in available:
            mask = mask & available[name].bool()[:, None]
        stream = torch.where(mask[..., None], stream, torch.zeros_like(stream))
        streams.append((index, stream, mask))
    return streams


def batch_size(tokens: Mapping[str, Tensor], available: Mapping[str, Tensor]) -> int:
    """B from any token stream or availability vector; a core needs at least one of them."""
    for tensor in (*tokens.values(), *available.values()):
        return int(tensor.shape[0])
    raise ModelError(
        "the fusion core received no modality at all (no tokens and no availability); "
        "check that the batch's 'inputs' and 'available' name the model's modalities"
    )


def check_modality_names(core: str, modalities: Mapping[str, str], names: list[str]) -> None:
    """Raise a :class:`ModelError` when an option names a modality the core was not given."""
    unknown = [n for n in names if n not in modalities]
    if unknown:
        raise ModelError(
            f"fusion core '{core}': unknown modality {', '.join(map(repr, unknown))}; "
            f"the cohort's modalities are {', '.join(map(repr, modalities)) or 'none'}"
        )
