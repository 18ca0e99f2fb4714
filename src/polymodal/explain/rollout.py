"""Attention rollout: which input tokens the task (or CLS) token reads, through every block.

With the attention probabilities ``A`` of each block, averaged over heads after clamping at 0,
the relevance starts at the identity and accumulates ``R <- R + mean_heads(clamp(A, 0)) @ R``
(M3FM's relevance maps, methods.md §2.2; the residual path is the identity). The row of the
query token, restricted to the tokens of the modalities, is normalised to sum to 1: a sample's
**rollout shares**. A masked token (padding, a missing modality) is never attended, so its
share is exactly 0.

Supported cores (all built of :class:`~polymodal.fusion._layers.TransformerBlock` s):

* ``prompted``: the row of the task's prompt token (each task has its own sequence);
* ``attention``: the row of the CLS token;
* ``synergy``: the latent memory is rolled out through its cross-attention (latents to context:
  ``R_lc <- R_lc + Ā_cross``) and latent self-attention (``R_lc <- R_lc + Ā R_lc``); the
  ``latent`` layout reads the latents by their mean (or the attention pool's weights), the
  ``paper`` layout by the CLS row of its fusion transformer, which also reads the direct
  (image / volume) tokens.

Other cores (``concat``, ``single``, ``bottleneck``, ``intervention``) have no single query token
whose attention covers every modality; explain them by occlusion.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from polymodal.errors import ModelError
from polymodal.fusion._layers import Attention

ROLLOUT_CORES = ("prompted", "attention", "synergy")


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


def _probs(layer: Attention, where: str) -> Tensor:
    if layer.attention_probs is None:
        raise ModelError(
            f"attention rollout: {where} recorded no attention; run the core inside "
            "recording_attention()"
        )
    return layer.attention_probs


def check_rollout_support(core: nn.Module) -> str:
    """The core's name among :data:`ROLLOUT_CORES`; ModelError for any other core."""
    from polymodal.fusion.attention import AttentionCore
    from polymodal.fusion.prompted import PromptedCore
    from polymodal.fusion.synergy import SynergyCore

    for name, cls in (
        ("prompted", PromptedCore),
        ("attention", AttentionCore),
        ("synergy", SynergyCore),
    ):
        if isinstance(core, cls):
            return name
    raise ModelError(
        f"attention rollout supports the fusion cores {', '.join(ROLLOUT_CORES)}; this model's "
        f"core is {type(core).__name__}: use --method occlusion"
    )


def supports_rollout(core: nn.Module) -> bool:
    """Whether :func:`modality_token_shares` can explain this core."""
    try:
        check_rollout_support(core)
    except ModelError:
        return False
    return True


def modality_token_shares(
    core: nn.Module,
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
        task: the prompted core's task (needed when it ran several prompts).
        folded_tasks: the tasks the prompted core ran, in order (the model's ``task_routing``;
            default the core's ``tasks``).
    """
    name = check_rollout_support(core)
    if name == "synergy":
        relevance = _synergy_relevance(core, layout, batch_size)
    else:
        blocks = core.blocks
        attentions = [_probs(b.attn, f"block {i}") for i, b in enumerate(blocks)]
        folded = attentions[0].shape[0] // batch_size
        if folded > 1:
            # The prompted core folds its T task sequences into the batch: row b·T + t.
            tasks = tuple(folded_tasks or getattr(core, "tasks", ()))
            if task not in tasks:
                raise ModelError(
                    f"attention rollout: the prompted core has no task {task!r}; its tasks: "
                    f"{', '.join(map(repr, tasks))}"
                )
            index = tasks.index(task)
            attentions = [a.unflatten(0, (batch_size, folded))[:, index] for a in attentions]
        total_tokens = sum(n for _, n in layout)
        # The modality tokens are the last ΣN_m positions: [query; registers/CLS; streams].
        row = rollout(attentions)[:, 0]  # (B, S)
        relevance = row[:, row.shape[1] - total_tokens :]
    return _split_normalised(relevance, layout)


def _synergy_relevance(core: nn.Module, layout: Sequence[tuple[str, int]], n: int) -> Tensor:
    """``(B, ΣN_m)`` relevance of the synergy core's input tokens, in ``layout`` order."""
    direct = set(core.direct)
    memory_sizes = [size for m, size in layout if m not in direct]
    direct_sizes = [size for m, size in layout if m in direct]
    n_memory, n_direct = sum(memory_sizes), sum(direct_sizes)
    latents = core.memory.latents.shape[0]
    device = core.memory.latents.device
    # Relevance of each latent to each memory token; the context itself never changes.
    to_context = torch.zeros(n, latents, n_memory, device=device)  # (B, L, N_mem)
    for i, (cross, latent_blocks) in enumerate(core.memory.layers):
        if n_memory:
            to_context = to_context + _probs(cross.attn, f"memory cross-attention {i}").clamp(
                min=0
            ).mean(dim=1)
        for j, block in enumerate(latent_blocks):
            mixing = _probs(block.attn, f"memory block {i}.{j}").clamp(min=0).mean(dim=1)
            to_context = to_context + mixing @ to_context  # (B, L, N_mem)
    if core.layout == "latent":
        if core.pool == "mean":
            weights = torch.full((n, latents), 1.0 / latents, device=device)
        else:
            weights = _probs(core.pool_attn, "attention pool").clamp(min=0).mean(dim=1)[:, 0]
        memory_relevance = (weights[:, None] @ to_context)[:, 0]  # (B, N_mem)
        direct_relevance = memory_relevance.new_zeros(n, 0)
    else:
        attentions = [_probs(b.attn, f"fusion block {i}") for i, b in enumerate(core.fusion)]
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


def _split_normalised(relevance: Tensor, layout: Sequence[tuple[str, int]]) -> dict[str, Tensor]:
    """``(B, ΣN_m)`` -> ``{modality: (B, N_m)}``, each sample's shares summing to 1."""
    total = relevance.sum(dim=1, keepdim=True)
    shares = torch.where(total > 0, relevance / total.clamp_min(1e-30), torch.zeros_like(relevance))
    out, at = {}, 0
    for modality, size in layout:
        out[modality] = shares[:, at : at + size]
        at += size
    return out
