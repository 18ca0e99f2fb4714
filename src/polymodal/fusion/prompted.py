"""``prompted``: a free-text task prompt reads every modality (M3FM task encoder, methods.md §2.2).

The sequence is ``[prompt token; R learned registers; tokens of every available modality +
modality-type embeddings]`` (M3FM: 1 + 3 + image tokens + clinical-text tokens). It goes through
pre-LN transformer blocks with key-padding masks (True = valid; padding and missing modalities are
never attended, where the official code used an additive −10,000 that breaks fp16), and the
prompt token's output is the feature a task head reads.

Prompt encoder: a hashed bag of words. The prompt text is split into lowercase words once, when
the core is built; each word is hashed (blake2b, stable across runs and machines) into one of
``prompt_buckets`` learned embeddings, and the prompt token is their mean. Why: the core stays
self-contained (it needs no tokenizer fitted on the cohort or text encoder passed in, and nothing
but the prompt text in the config to rebuild), and prompts that share words (paraphrases, related
tasks) share parameters. M3FM instead reads the prompt with its clinical-text transformer; sharing
the model's text encoder would tie the core to one encoder and its tokenizer, so it is left out.

Several prompts (multitask): :meth:`PromptedCore.forward_tasks` returns ``(B, T, D)``, one
feature per prompt. Each prompt gets its own sequence (the T prompts are folded into the batch),
so every task sees the context exactly as a single-task M3FM does (image and text tokens attend
to the prompt too) and a task's output never depends on which other tasks are configured. The
cost is T passes over the context; M3FM trains one task per step anyway.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from polymodal.errors import ModelError
from polymodal.fusion._layers import batch_size, gather_streams, transformer_stack
from polymodal.fusion.registry import register_core

DEFAULT_TASK = "task"
_WORD = re.compile(r"\w+")


def prompt_word_buckets(prompt: str, buckets: int) -> list[int]:
    """Bucket ids ``[0, buckets)`` of a prompt's lowercase words, in order (stable hash)."""
    words = _WORD.findall(prompt.lower())
    return [
        int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little") % buckets
        for w in words
    ]


@register_core("prompted")
class PromptedCore(nn.Module):
    """``[prompt; registers; modality tokens]`` -> ``depth`` pre-LN blocks -> prompt token.

    Output ``(B, dim)`` for the selected (or only) prompt; ``forward_tasks`` gives ``(B, T, dim)``.

    Args:
        modalities: modality name -> kind.
        dim: token width D.
        task_prompts: one prompt text, or task name (e.g. the target) -> prompt text, e.g.
            ``{"cancer": "Predict the lung cancer risk over six years."}``.
        num_registers: learned register tokens R beside the prompt (M3FM: 3).
        depth: transformer blocks (M3FM: 4).
        heads: attention heads; dim_head defaults to ``dim // heads``.
        ff_mult: GEGLU feed-forward expansion.
        dropout: attention and feed-forward dropout.
        prompt_buckets: hashed word embeddings of the prompt encoder.
    """

    def __init__(
        self,
        *,
        modalities: dict[str, str],
        dim: int,
        task_prompts: str | Mapping[str, str] | None = None,
        num_registers: int = 3,
        depth: int = 4,
        heads: int = 4,
        dim_head: int | None = None,
        ff_mult: float = 4,
        dropout: float = 0.0,
        prompt_buckets: int = 1024,
    ) -> None:
        super().__init__()
        if task_prompts is None:
            raise ModelError(
                "fusion core 'prompted' needs task_prompts: the text of the task, e.g. "
                "task_prompts: 'Predict the lung cancer risk over six years.' (or one per target)"
            )
        prompts = {DEFAULT_TASK: task_prompts} if isinstance(task_prompts, str) else task_prompts
        if not prompts:
            raise ModelError("fusion core 'prompted': task_prompts is empty; give one prompt")
        if num_registers < 0 or prompt_buckets < 1:
            raise ModelError(
                "fusion core 'prompted': num_registers must be ≥ 0 and prompt_buckets ≥ 1, got "
                f"{num_registers} and {prompt_buckets}"
            )
        word_ids, offsets = [], []
        for task, text in prompts.items():
            ids = prompt_word_buckets(str(text), prompt_buckets)
            if not ids:
                raise ModelError(
                    f"fusion core 'prompted': the prompt of task {task!r} ({text!r}) has no words"
                )
            offsets.append(len(word_ids))
            word_ids.extend(ids)
        self.modalities = tuple(modalities)
        self.tasks = tuple(prompts)
        self.task_prompts = {task: str(text) for task, text in prompts.items()}
        # Derived from the config's prompt text, so not saved with the weights.
        self.register_buffer("prompt_words", torch.tensor(word_ids), persistent=False)
        self.register_buffer("prompt_offsets", torch.tensor(offsets), persistent=False)
        self.word_embedding = nn.EmbeddingBag(prompt_buckets, dim, mode="mean")
        nn.init.trunc_normal_(self.word_embedding.weight, std=0.02)
        self.registers = nn.Parameter(torch.randn(num_registers, dim) * 0.02)
        self.modality_embedding = nn.Parameter(torch.randn(len(self.modalities), dim) * 0.02)
        self.blocks = transformer_stack(
            depth, dim=dim, heads=heads, dim_head=dim_head, ff_mult=ff_mult, dropout=dropout
        )
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim

    def prompt_tokens(self) -> Tensor:
        """One token per task prompt, ``(T, D)``: the mean of its hashed word embeddings."""
        return self.word_embedding(self.prompt_words, self.prompt_offsets)

    def forward_tasks(
        self,
        tokens: dict[str, Tensor],
        masks: dict[str, Tensor],
        available: dict[str, Tensor],
        tasks: Sequence[str] | None = None,
    ) -> Tensor:
        """``tokens[m] (B, N_m, D)`` -> ``(B, T, D)``, one feature per task (all by default)."""
        tasks = self.tasks if tasks is None else tuple(tasks)
        unknown = [t for t in tasks if t not in self.tasks]
        if unknown:
            raise ModelError(
                f"fusion core 'prompted' has no task prompt for {', '.join(map(repr, unknown))}; "
                f"its tasks: {', '.join(map(repr, self.tasks))}"
            )
        n = batch_size(tokens, available)
        n_tasks = len(tasks)
        all_prompts = self.prompt_tokens()
        prompt = all_prompts[[self.tasks.index(t) for t in tasks]]  # (T, D)
        streams = gather_streams(self.modalities, tokens, masks, available)
        context = torch.cat(
            [
                self.registers.expand(n, -1, -1),
                *(t + self.modality_embedding[i] for i, t, _ in streams),
            ],
            dim=1,
        )  # (B, R + ΣN_m, D)
        always = torch.ones(n, 1 + self.registers.shape[0], dtype=torch.bool, device=prompt.device)
        mask = torch.cat([always, *(m for _, _, m in streams)], dim=1)  # (B, 1 + R + ΣN_m)
        # Fold the tasks into the batch: each prompt gets its own copy of the context.
        x = torch.cat(
            [
                prompt[None, :, None, :].expand(n, -1, -1, -1),
                context[:, None].expand(-1, n_tasks, -1, -1),
            ],
            dim=2,
        ).flatten(0, 1)  # (B·T, 1 + R + ΣN_m, D)
        mask = mask.repeat_interleave(n_tasks, dim=0)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x[:, 0]).unflatten(0, (n, n_tasks))  # (B, T, D)

    def forward(
        self,
        tokens: dict[str, Tensor],
        masks: dict[str, Tensor],
        available: dict[str, Tensor],
        task: str | None = None,
    ) -> Tensor:
        """``tokens[m] (B, N_m, D)`` -> ``(B, D)`` for ``task`` (or the only prompt)."""
        if task is None:
            if len(self.tasks) > 1:
                raise ModelError(
                    f"fusion core 'prompted' has {len(self.tasks)} task prompts "
                    f"({', '.join(map(repr, self.tasks))}); name the task, or use forward_tasks "
                    "for one feature per task"
                )
            task = self.tasks[0]
        return self.forward_tasks(tokens, masks, available, [task])[:, 0]
