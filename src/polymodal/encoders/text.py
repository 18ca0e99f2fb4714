"""Clinical free text as token states: a local Hugging Face model, or a small transformer from scratch.

Padding never changes an output: padded positions are excluded from attention by key-padding
masks, positions are absolute (padding sits after the text), and padded outputs are zeroed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from polymodal.encoders.registry import register_encoder
from polymodal.errors import ModelError
from polymodal.freezing import freeze, keep_frozen_parts_in_eval, settle_frozen_modes
from polymodal.layers.pretrained import load_hf_model, resolve_pretrained

Freeze = Literal["none", "all", "all_but_last"]
FREEZE_MODES = ("none", "all", "all_but_last")


class ScratchTextTransformer(nn.Module):
    """Token + learned position embeddings, pre-LN transformer blocks, final LayerNorm.

    ``forward(input_ids (B, L), attention_mask (B, L) bool) -> (B, L, width)``.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        pad_id: int,
        max_tokens: int,
        width: int,
        depth: int,
        heads: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.max_tokens = max_tokens
        self.token_embedding = nn.Embedding(vocab_size, width, padding_idx=pad_id)
        self.position_embedding = nn.Parameter(torch.zeros(1, max_tokens, width))
        nn.init.trunc_normal_(self.position_embedding, std=0.02)
        layer = nn.TransformerEncoderLayer(
            width,
            heads,
            dim_feedforward=4 * width,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # enable_nested_tensor=False: the nested fast path changes padded outputs between modes.
        self.layers = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        length = input_ids.shape[1]
        states = self.token_embedding(input_ids) + self.position_embedding[:, :length]
        states = self.layers(states, src_key_padding_mask=~attention_mask)  # (B, L, width)
        return self.norm(states)


@register_encoder("text_transformer", kinds=("text",))
class TextTransformerEncoder(nn.Module):
    """Token states of a transformer, projected to ``dim``.

    With a Hugging Face folder (option ``model_path``, else ``input_info["tokenizer"]``; a path or
    ``package:all-MiniLM-L6-v2``) the pretrained model is loaded from disk only
    (``local_files_only``); otherwise a small transformer is trained from scratch.

    Inputs: ``input_ids`` (B, L) int64, ``attention_mask`` (B, L) bool.
    Output: tokens (B, L, dim) (zero at padding), mask (B, L) = ``attention_mask``.

    Args:
        input_info: ``{"kind": "text", "vocab_size", "pad_id", "max_tokens", "tokenizer"}``.
        dim: token width.
        model_path: a local Hugging Face model folder (or ``package:<model>``) overriding the
            tokenizer folder.
        from_scratch: ignore any folder and train the small transformer (the tokenizer still
            decides the vocabulary).
        freeze: for the backbone: ``"none"``, ``"all"`` (fixed, eval mode) or ``"all_but_last"``
            (only the last transformer layer trains; the frozen layers stay in eval mode).
        width, depth, heads, dropout: the from-scratch transformer (width defaults to ``dim``).
    """

    def __init__(
        self,
        input_info: dict[str, Any],
        dim: int,
        *,
        model_path: str | Path | None = None,
        from_scratch: bool = False,
        freeze: Freeze = "none",
        width: int | None = None,
        depth: int = 2,
        heads: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if freeze not in FREEZE_MODES:
            raise ModelError(
                f"text_transformer: freeze must be one of {FREEZE_MODES}, got '{freeze}'"
            )
        self.dim = dim
        self.freeze = freeze
        self.vocab_size = int(input_info["vocab_size"])
        self.max_tokens = int(input_info["max_tokens"])
        folder = None if from_scratch else (model_path or input_info.get("tokenizer"))
        if folder is not None:
            # from_pretrained returns the model in eval mode; like any new module it starts in
            # training mode, so that what trains follows the trainer (frozen parts: see below).
            self.backbone: nn.Module = self._load_pretrained(folder).train()
            self.pretrained = True
            hidden = int(self.backbone.config.hidden_size)
        else:
            hidden = width or dim
            self.backbone = ScratchTextTransformer(
                vocab_size=self.vocab_size,
                pad_id=int(input_info["pad_id"]),
                max_tokens=self.max_tokens,
                width=hidden,
                depth=depth,
                heads=heads,
                dropout=dropout,
            )
            self.pretrained = False
        self.proj = nn.Linear(hidden, dim)
        self._freeze_backbone()

    def _load_pretrained(self, folder: str | Path) -> nn.Module:
        path = resolve_pretrained(folder)
        if not (path.is_dir() and (path / "config.json").is_file()):
            raise ModelError(
                f"text_transformer: {path} is not a Hugging Face model folder (no config.json); "
                "give a folder saved with save_pretrained, or from_scratch: true"
            )
        try:
            model = load_hf_model(path)
        except (OSError, ValueError) as err:
            raise ModelError(f"text_transformer: cannot load a model from {path}: {err}") from err
        config = model.config
        if self.vocab_size > config.vocab_size:
            raise ModelError(
                f"text_transformer: the tokenizer has {self.vocab_size} tokens but the model in "
                f"{path} only {config.vocab_size}; use the tokenizer that ships with the model"
            )
        positions = getattr(config, "max_position_embeddings", None)
        if positions is not None and self.max_tokens > positions:
            raise ModelError(
                f"text_transformer: max_tokens {self.max_tokens} exceeds the {positions} positions "
                f"of the model in {path}; lower max_tokens in the spec"
            )
        return model

    def _layer_stack(self) -> nn.ModuleList:
        """The backbone's list of transformer layers (its longest ModuleList)."""
        stacks = [m for m in self.backbone.modules() if isinstance(m, nn.ModuleList)]
        return max(stacks, key=len)

    def _freeze_backbone(self) -> None:
        """Frozen parts get no gradient and stay in eval mode (no dropout) whatever mode the
        trainer sets (:mod:`polymodal.freezing`)."""
        if self.freeze == "all":
            freeze(self.backbone)
        elif self.freeze == "all_but_last":
            self.backbone.requires_grad_(False)
            self._layer_stack()[-1].requires_grad_(True)
            keep_frozen_parts_in_eval(self.backbone)

    def train(self, mode: bool = True) -> TextTransformerEncoder:
        """Switch modes; frozen parts of the backbone keep eval mode (only for truthful flags:
        they compute in eval mode however their flags are set)."""
        super().train(mode)
        settle_frozen_modes(self)
        return self

    def forward(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``input_ids`` (B, L), ``attention_mask`` (B, L) -> tokens (B, L, dim), mask (B, L)."""
        input_ids, mask = inputs["input_ids"].long(), inputs["attention_mask"].bool()
        length = input_ids.shape[1]
        if length > self.max_tokens:
            raise ModelError(
                f"text_transformer was built for at most {self.max_tokens} tokens but got {length}; "
                "truncate with the preprocessing state it was fitted with"
            )
        # Garbage ids under padding are allowed; replace them so embeddings never index past the table.
        input_ids = input_ids.masked_fill(~mask, 0)
        # An exported graph cannot raise on values; there the embedding lookup (ONNX Gather)
        # refuses an id past the table.
        exporting = torch.compiler.is_exporting()
        if not exporting and input_ids.numel() and int(input_ids.max()) >= self.vocab_size:
            raise ModelError(
                f"text_transformer: token id {int(input_ids.max())} is outside the vocabulary of "
                f"{self.vocab_size}; tokenize with the tokenizer this model was fitted with"
            )
        # A sample with no text at all (every position padding) would give attention nothing to
        # attend to (NaN); let it attend its first position, whose output is masked anyway.
        empty = ~mask.any(dim=1)
        attend = mask.clone()
        attend[:, 0] |= empty
        if self.pretrained:
            states = self.backbone(
                input_ids=input_ids, attention_mask=attend.long()
            ).last_hidden_state
        else:
            states = self.backbone(input_ids, attend)  # (B, L, hidden)
        tokens = self.proj(states) * mask[..., None]  # (B, L, dim), zero at padding
        return tokens, mask
