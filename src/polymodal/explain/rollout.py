"""Attention rollout: which input tokens the task (or CLS) token reads, through every block.

With the attention probabilities ``A`` of each block, averaged over heads after clamping at 0,
the relevance starts at the identity and accumulates ``R <- R + mean_heads(clamp(A, 0)) @ R``
(M3FM's relevance maps, methods.md §2.2; the residual path is the identity; the math is in
:mod:`polymodal.layers.rollout`). The row of the query token, restricted to the tokens of the
modalities, is normalised to sum to 1: a sample's **rollout shares**. A masked token (padding, a
missing modality) is never attended, so its share is exactly 0.

Which cores support it, and how their blocks are read, each core declares itself
(``supports_rollout`` and ``rollout_relevance`` of :class:`~polymodal.fusion.base.FusionCore`;
:func:`rollout_cores` lists them). The others have no single query token whose attention covers
every modality; explain them by occlusion.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from polymodal.errors import ModelError
from polymodal.fusion import FusionCore, list_cores
from polymodal.layers.rollout import recording_attention, rollout

__all__ = [
    "check_rollout_support",
    "modality_token_shares",
    "recording_attention",
    "rollout",
    "rollout_cores",
    "supports_rollout",
]


def rollout_cores() -> list[str]:
    """The registered fusion cores that support attention rollout."""
    return list_cores(supports_rollout=True)


def check_rollout_support(core: FusionCore) -> str:
    """The core's registered name; ModelError, naming the cores that do, for a core without
    rollout support."""
    if not core.supports_rollout:
        raise ModelError(
            f"attention rollout supports the fusion cores {', '.join(rollout_cores())}; this "
            f"model's core is {core.core_name!r}: use --method occlusion"
        )
    return core.core_name


def supports_rollout(core: FusionCore) -> bool:
    """Whether :func:`modality_token_shares` can explain this core."""
    return core.supports_rollout


def modality_token_shares(
    core: FusionCore,
    layout: Sequence[tuple[str, int]],
    batch_size: int,
    task: str | None = None,
    folded_tasks: Sequence[str] | None = None,
) -> dict[str, Tensor]:
    """Rollout shares of each modality's tokens, ``{modality: (B, N_m)}``, summing to 1 per sample.

    Call right after the core ran inside :func:`recording_attention`.

    Args:
        core: the fusion core.
        layout: ``(modality, N_m)`` of the streams the core received, in the core's modality
            order (``core.modalities`` filtered to the streams present).
        batch_size: B.
        task: the task whose query token to read, for a core that ran several tasks.
        folded_tasks: the tasks the core ran, in order (the model's ``task_routing``; default
            the core's ``tasks``).
    """
    check_rollout_support(core)
    relevance = core.rollout_relevance(
        layout, batch_size, task=task, folded_tasks=folded_tasks
    )  # (B, ΣN_m)
    return _split_normalised(relevance, layout)


def _split_normalised(relevance: Tensor, layout: Sequence[tuple[str, int]]) -> dict[str, Tensor]:
    """``(B, ΣN_m)`` -> ``{modality: (B, N_m)}``, each sample's shares summing to 1."""
    total = relevance.sum(dim=1, keepdim=True)
    shares = torch.where(total > 0, relevance / total.clamp_min(1e-30), torch.zeros_like(relevance))
    out, at = {}, 0
    for modality, size in layout:
        out[modality] = shares[:, at : at + size]
        at += size
    return out
