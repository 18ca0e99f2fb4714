"""A timm ViT that takes extra tokens before block k and returns CLS, patch and extra tokens.

This is the image side of Early Intervention (methods.md §3.2): other modalities become extra
tokens appended to an image's sequence before block ``insert_at`` (0 for EI, so every block sees
them). Several images of one sample (views, slices) go through the same
backbone and are pooled by max or mean over the images that are present.

The same wrapped backbone serves several passes: switch adapters between passes with
:func:`polymodal.adapters.set_active_adapter` (the frozen weights are shared, only adapters
differ) and give each pass its own ``extra_tokens``.
"""

from __future__ import annotations

import inspect
from typing import Literal

import torch
from torch import Tensor, nn

from polymodal.errors import ModelError

ViewPool = Literal["max", "mean"]


class ViTWithInsertion(nn.Module):
    """Wrap a timm ``VisionTransformer`` so extra tokens can join its sequence before block k.

    The sequence is ``[CLS, registers, patches]`` (timm's order) and the extra tokens are appended
    at its end before block ``insert_at``, without positional embedding. Masked extra tokens are
    hidden from every attention as keys, so they change nothing else; their own output rows are
    zero.

    Args:
        timm_vit: a timm ``VisionTransformer`` with a class token (register tokens are fine).
        insert_at: index of the first block that sees the extra tokens, 0 … depth (0 = EI).

    Inputs:
        images: (B, C, H, W).
        extra_tokens: (B, E, D) or None.
        extra_mask: (B, E) bool, True = valid, or None (all valid).

    Returns:
        dict with ``cls`` (B, D), ``patches`` (B, N, D) and ``extra`` (B, E, D), all after the
        ViT's final norm; ``extra`` has E = 0 without extra tokens.
    """

    def __init__(self, timm_vit: nn.Module, insert_at: int = 0) -> None:
        super().__init__()
        for part in ("patch_embed", "blocks", "norm", "num_prefix_tokens", "cls_token"):
            if not hasattr(timm_vit, part):
                raise ModelError(
                    f"ViTWithInsertion needs a timm VisionTransformer; {type(timm_vit).__name__} "
                    f"has no '{part}'"
                )
        if timm_vit.cls_token is None:
            raise ModelError(
                "ViTWithInsertion returns the CLS token but this ViT was built with "
                "class_token=False; choose a ViT with a class token"
            )
        depth = len(timm_vit.blocks)
        if not 0 <= insert_at <= depth:
            raise ModelError(f"insert_at must lie in 0..{depth} for this ViT, got {insert_at}")
        self.vit = timm_vit
        self.insert_at = insert_at
        self.embed_dim: int = timm_vit.embed_dim
        self.num_prefix_tokens: int = timm_vit.num_prefix_tokens

    @property
    def blocks(self) -> nn.Sequential:
        return self.vit.blocks

    @property
    def norm(self) -> nn.Module:
        return self.vit.norm

    def prepare_tokens(self, images: Tensor) -> Tensor:
        """Patch embedding, CLS + registers and positional embedding: (B, C, H, W) → (B, P + N, D)."""
        tokens = self.vit.patch_embed(images)
        tokens = self.vit._pos_embed(tokens)
        tokens = self.vit.patch_drop(tokens)
        return self.vit.norm_pre(tokens)

    def forward(
        self,
        images: Tensor,
        extra_tokens: Tensor | None = None,
        extra_mask: Tensor | None = None,
    ) -> dict[str, Tensor]:
        tokens = self.prepare_tokens(images)  # (B, P + N, D)
        batch, base_length, dim = tokens.shape
        if extra_tokens is None:
            extra_tokens = tokens.new_zeros(batch, 0, dim)
            extra_mask = None
        self._check_extra(extra_tokens, extra_mask, batch)
        num_extra = extra_tokens.shape[1]
        attn_mask = None
        if extra_mask is not None and not bool(extra_mask.all()):
            # Key-padding mask over the whole sequence, broadcast over heads and queries.
            keys_valid = torch.cat([extra_mask.new_ones(batch, base_length), extra_mask], dim=1)
            attn_mask = keys_valid[:, None, None, :]  # (B, 1, 1, P + N + E)
            self._check_blocks_take_masks()

        for index, block in enumerate(self.vit.blocks):
            if index == self.insert_at and num_extra:
                tokens = torch.cat([tokens, extra_tokens.to(tokens.dtype)], dim=1)  # (B, P+N+E, D)
            if attn_mask is not None and index >= self.insert_at:
                tokens = block(tokens, attn_mask=attn_mask)
            else:
                tokens = block(tokens)
        if self.insert_at == len(self.vit.blocks) and num_extra:
            tokens = torch.cat([tokens, extra_tokens.to(tokens.dtype)], dim=1)
        tokens = self.vit.norm(tokens)

        extra = tokens[:, base_length:]  # (B, E, D)
        if extra_mask is not None:
            extra = extra * extra_mask[..., None].to(extra.dtype)
        return {
            "cls": tokens[:, 0],
            "patches": tokens[:, self.num_prefix_tokens : base_length],
            "extra": extra,
        }

    def forward_views(
        self,
        images: Tensor,
        view_mask: Tensor | None = None,
        extra_tokens: Tensor | None = None,
        extra_mask: Tensor | None = None,
        pool: ViewPool = "max",
    ) -> dict[str, Tensor]:
        """Several images per sample (views or slices) through the backbone, pooled over images.

        Only present images go through the backbone. Every image of a sample gets the sample's
        extra tokens. Pooling ("max" or "mean") runs over present images only; a sample with no
        image gets zeros and ``availability`` False.

        Inputs:
            images: (B, I, C, H, W).
            view_mask: (B, I) bool, True = image present, or None (all present).
            extra_tokens: (B, E, D) or None; extra_mask: (B, E) bool or None.

        Returns:
            dict with ``cls`` (B, D), ``patches`` (B, N, D), ``extra`` (B, E, D) pooled over
            images, ``view_cls`` (B, I, D) per image (zero where absent) and ``availability``
            (B,) bool.
        """
        if pool not in ("max", "mean"):
            raise ModelError(f"view pooling must be 'max' or 'mean', got {pool!r}")
        if images.ndim != 5:
            raise ModelError(
                f"forward_views expects images of shape (B, I, C, H, W), got {tuple(images.shape)}"
            )
        batch, num_views = images.shape[:2]
        if view_mask is None:
            view_mask = torch.ones(batch, num_views, dtype=torch.bool, device=images.device)
        if view_mask.shape != (batch, num_views):
            raise ModelError(
                f"view_mask has shape {tuple(view_mask.shape)}; expected ({batch}, {num_views})"
            )
        sample_of_image = torch.arange(batch, device=images.device)[:, None].expand(-1, num_views)
        sample_of_image = sample_of_image[view_mask]  # (P,) for the P present images
        per_image = self(
            images[view_mask],  # (P, C, H, W)
            None if extra_tokens is None else extra_tokens[sample_of_image],
            None if extra_mask is None else extra_mask[sample_of_image],
        )
        pooled = {}
        for key, values in per_image.items():
            scattered = values.new_zeros(batch, num_views, *values.shape[1:])
            scattered[view_mask] = values  # (B, I, ...)
            pooled[key] = _pool_views(scattered, view_mask, pool)
            if key == "cls":
                pooled["view_cls"] = scattered
        pooled["availability"] = view_mask.any(dim=1)
        return pooled

    def _check_extra(self, extra_tokens: Tensor, extra_mask: Tensor | None, batch: int) -> None:
        if extra_tokens.ndim != 3 or extra_tokens.shape[0] != batch:
            raise ModelError(
                f"extra_tokens must be (B={batch}, E, D={self.embed_dim}), got "
                f"{tuple(extra_tokens.shape)}"
            )
        if extra_tokens.shape[2] != self.embed_dim:
            raise ModelError(
                f"extra_tokens have width {extra_tokens.shape[2]} but the ViT's width is "
                f"{self.embed_dim}; project them to {self.embed_dim} first"
            )
        if extra_mask is not None and (
            extra_mask.dtype != torch.bool or extra_mask.shape != extra_tokens.shape[:2]
        ):
            raise ModelError(
                f"extra_mask must be bool of shape {tuple(extra_tokens.shape[:2])}, got "
                f"{extra_mask.dtype} {tuple(extra_mask.shape)}"
            )

    def _check_blocks_take_masks(self) -> None:
        import timm  # for its version in the message; imported where a ViT was built anyway

        for index in range(self.insert_at, len(self.vit.blocks)):
            block = self.vit.blocks[index]
            if "attn_mask" not in inspect.signature(block.forward).parameters:
                raise ModelError(
                    f"block {index} ({type(block).__name__}) of this ViT takes no attn_mask in "
                    f"timm {timm.__version__}, so masked extra tokens cannot be hidden; upgrade "
                    "timm (pip install -U timm) or pass only valid extra tokens with extra_mask=None"
                )


def _pool_views(values: Tensor, view_mask: Tensor, pool: ViewPool) -> Tensor:
    """(B, I, ...) → (B, ...) by max or mean over the images where ``view_mask`` (B, I) is True."""
    present = view_mask.reshape(*view_mask.shape, *([1] * (values.ndim - 2)))
    if pool == "mean":
        count = present.sum(dim=1).clamp(min=1).to(values.dtype)
        return (values * present.to(values.dtype)).sum(dim=1) / count
    pooled = values.masked_fill(~present, float("-inf")).amax(dim=1)
    # A sample without any image has -inf everywhere: give it zeros instead.
    return torch.where(view_mask.any(dim=1).reshape(-1, *([1] * (values.ndim - 2))), pooled, 0.0)
