"""Attention rollout over pre-LN blocks (Abnar & Zuidema 2020, as M3FM uses it).

With the attention probabilities ``A`` of each block, averaged over heads after clamping at 0,
the relevance starts at the identity and accumulates ``R <- R + mean_heads(clamp(A, 0)) @ R``
(the residual path is the identity). The blocks record their probabilities only inside
:func:`recording_attention`, so a forward outside it runs SDPA's fused kernels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from polymodal.errors import ModelError
from polymodal.layers.attention import Attention


@contextmanager
def recording_attention(module: nn.Module) -> Iterator[None]:
    """Every :class:`Attention` inside ``module`` keeps its probabilities while inside."""
    layers = [m for m in module.modules() if isinstance(m, Attention)]
    for layer in layers:
        layer.record_attention, layer.attention_probs = True, None
    try:
        yield
    finally:
        for layer in layers:
            layer.record_attention, layer.attention_probs = False, None


def rollout(attentions: Sequence[Tensor]) -> Tensor:
    """``[(B, H, N, N)]`` per block, in order -> relevance ``R`` ``(B, N, N)``."""
    first = attentions[0]
    n = first.shape[-1]
    relevance = torch.eye(n, device=first.device, dtype=first.dtype).expand(first.shape[0], n, n)
    for probs in attentions:
        relevance = relevance + probs.clamp(min=0).mean(dim=1) @ relevance
    return relevance


def recorded_attention(layer: Attention, where: str) -> Tensor:
    """The probabilities ``(B, H, N_q, N_k)`` ``layer`` recorded in the last forward.

    Raises:
        ModelError: nothing was recorded (the forward ran outside :func:`recording_attention`).
    """
    if layer.attention_probs is None:
        raise ModelError(
            f"attention rollout: {where} recorded no attention; run the core inside "
            "recording_attention()"
        )
    return layer.attention_probs


def head_mean(layer: Attention, where: str) -> Tensor:
    """``mean_heads(clamp(A, 0))`` of ``layer``'s recorded attention: ``(B, N_q, N_k)``."""
    return recorded_attention(layer, where).clamp(min=0).mean(dim=1)
