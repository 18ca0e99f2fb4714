"""M3FM's multi-scale 3D tokenizer (methods.md §2.2 items 1-2): one model, several crop sizes.

Each supported crop size (a *scale*) has its own Conv3d patch embedding (kernel = stride = patch)
and its own separable learnable positional tables: a slice table ``(s, D)`` plus an in-plane table
``(h·w, D)``, summed over the ``s × h × w`` token grid. Which scale a batch uses is decided by
the volume's shape at run time, so one encoder reads e.g. a lung crop and a heart crop. The
voxel-size embedding (physical patch size = spacing × patch, mm) is added to every patch token.

Fixes of the official code: an unsupported crop size raises :class:`ModelError` naming the size
and the supported ones (the official tokenizer silently returns zeros), and no dummy convolution
runs for the scales a batch does not use.

``mask_ratio > 0`` turns on MAE-style per-sample random token masking in training: the tokens are
ranked by uniform noise (argsort) and the first ``int((1 - r)·N)`` are kept, with their
positional and voxel-size embeddings already added.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from polymodal.encoders.registry import register_encoder
from polymodal.encoders.volume import _check_even, _triple, spacing_embedding, token_transformer
from polymodal.errors import ModelError

# Small enough for a CPU: a 32³ cube in 8³ patches (64 tokens) and a thin 16×64×64 slab in
# 4×16×16 patches (64 tokens).
DEFAULT_SCALES: tuple[dict[str, list[int]], ...] = (
    {"size": [32, 32, 32], "patch": [8, 8, 8]},
    {"size": [16, 64, 64], "patch": [4, 16, 16]},
)

Size = tuple[int, int, int]


class VolumeTokens(NamedTuple):
    """What :meth:`VolumeMultiscaleEncoder.tokenize` returns.

    ``tokens`` (B, [1 +] N_keep, D) with the CLS token first when the encoder has one;
    ``mask`` (B, [1 +] N_keep) bool, True = valid; ``kept_indices`` (B, N_keep) int64 positions
    of the kept tokens in the flattened ``s × h × w`` grid (every position, in order, without
    masking).
    """

    tokens: Tensor
    mask: Tensor
    kept_indices: Tensor


def random_token_masking(
    tokens: Tensor, mask_ratio: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """MAE-style per-sample random masking: ``tokens`` (B, N, D) -> kept (B, N_keep, D), indices.

    ``N_keep = int(N·(1 - mask_ratio))`` (at least 1). Each sample ranks its tokens by its own
    uniform noise, so every sample keeps a different subset; ``indices`` (B, N_keep) are the kept
    grid positions in noise order, as MAE gathers them.
    """
    batch, count, dim = tokens.shape
    keep = max(1, int(count * (1.0 - mask_ratio)))
    noise = torch.rand(batch, count, device=tokens.device, generator=generator)
    indices = noise.argsort(dim=1)[:, :keep]  # (B, N_keep)
    kept = tokens.gather(1, indices[..., None].expand(-1, -1, dim))  # (B, N_keep, D)
    return kept, indices


class _Scale(nn.Module):
    """One supported crop size: its patch embedding and separable positional tables."""

    def __init__(self, size: Size, patch: Size, dim: int) -> None:
        super().__init__()
        self.size, self.patch = size, patch
        self.grid = tuple(s // p for s, p in zip(size, patch, strict=True))
        slices, rows, columns = self.grid
        self.patch_embedding = nn.Conv3d(1, dim, kernel_size=patch, stride=patch)
        self.slice_position = nn.Parameter(torch.zeros(slices, dim))
        self.plane_position = nn.Parameter(torch.zeros(rows * columns, dim))
        nn.init.trunc_normal_(self.slice_position, std=0.02)
        nn.init.trunc_normal_(self.plane_position, std=0.02)

    def position(self) -> Tensor:
        """The positional table over the grid, (s·h·w, D), slice-major like ``flatten(2)``."""
        table = self.slice_position[:, None, :] + self.plane_position[None, :, :]  # (s, h·w, D)
        return table.flatten(0, 1)


def _parse_scales(scales: Sequence[Mapping[str, Any]]) -> list[tuple[Size, Size]]:
    if not scales:
        raise ModelError("volume_multiscale: scales is empty; give at least one {size, patch}")
    parsed: list[tuple[Size, Size]] = []
    for index, scale in enumerate(scales):
        if not isinstance(scale, Mapping) or set(scale) != {"size", "patch"}:
            raise ModelError(
                f"volume_multiscale: scales[{index}] must be a mapping with exactly 'size' and "
                f"'patch' (three integers each), got {scale!r}"
            )
        size = _triple(scale["size"], f"volume_multiscale scales[{index}].size")
        patch = _triple(scale["patch"], f"volume_multiscale scales[{index}].patch")
        if any(s % p for s, p in zip(size, patch, strict=True)):
            raise ModelError(
                f"volume_multiscale: scales[{index}] size {list(size)} is not a multiple of its "
                f"patch {list(patch)}; pick a patch that divides every axis"
            )
        if any(size == known for known, _ in parsed):
            raise ModelError(f"volume_multiscale: crop size {list(size)} is listed twice in scales")
        parsed.append((size, patch))
    return parsed


def _scale_key(size: Size) -> str:
    return "x".join(str(s) for s in size)


@register_encoder("volume_multiscale", kinds=("volume",))
class VolumeMultiscaleEncoder(nn.Module):
    """Multi-scale Conv3d patch tokens, separable positions, voxel-size embedding, optional CLS,
    MAE masking and pre-LN transformer blocks.

    Inputs: ``voxels`` (B, 1, D, H, W) float with (D, H, W) one of the supported sizes,
    ``spacing`` (B, 3) mm.
    Output: tokens (B, [1 +] N, dim), N = s·h·w of that size's grid (fewer in training when
    ``mask_ratio > 0``), mask (B, [1 +] N) all True.

    Args:
        input_info: ``{"kind": "volume", "size": [D, H, W] or None}``; a fixed size must be one of
            the scales (checked when the encoder is built).
        dim: token width (even, ≥ 6).
        scales: supported crop sizes, each ``{"size": [D, H, W], "patch": [d, h, w]}``.
        cls_token: prepend a learnable CLS token with its own positional vector.
        mask_ratio: share of patch tokens dropped per sample in training (MAE pretraining);
            0 keeps all. Never applied in eval mode.
        depth: transformer blocks after the tokenizer (0: tokens straight from the tokenizer).
        heads: attention heads per block.
        mlp_ratio: hidden width of each block's MLP, as a multiple of ``dim``.
        dropout: dropout inside the blocks.
    """

    def __init__(
        self,
        input_info: dict[str, Any],
        dim: int,
        *,
        scales: Sequence[Mapping[str, Any]] = DEFAULT_SCALES,
        cls_token: bool = True,
        mask_ratio: float = 0.0,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_even("volume_multiscale", dim)
        if not 0.0 <= mask_ratio < 1.0:
            raise ModelError(f"volume_multiscale: mask_ratio must be in [0, 1), got {mask_ratio}")
        self.dim = dim
        self.mask_ratio = float(mask_ratio)
        self.scales = nn.ModuleDict(
            {_scale_key(size): _Scale(size, patch, dim) for size, patch in _parse_scales(scales)}
        )
        size = input_info.get("size")
        if size is not None:
            self._scale(_triple(size, "volume size"))  # fail now, not at the first batch
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cls_token else None
        self.cls_position = nn.Parameter(torch.zeros(1, 1, dim)) if cls_token else None
        if cls_token:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
            nn.init.trunc_normal_(self.cls_position, std=0.02)
        self.blocks = token_transformer(
            dim, depth=depth, heads=heads, mlp_ratio=mlp_ratio, dropout=dropout
        )
        self.norm = nn.LayerNorm(dim)

    @property
    def supported_sizes(self) -> list[list[int]]:
        """The crop sizes (D, H, W) this encoder reads, in the order of ``scales``."""
        return [list(scale.size) for scale in self.scales.values()]

    def _scale(self, size: Sequence[int]) -> _Scale:
        key = _scale_key(tuple(int(s) for s in size))  # type: ignore[arg-type]
        if key not in self.scales:
            raise ModelError(
                f"volume_multiscale: crop size {list(size)} is not supported; supported sizes: "
                f"{self.supported_sizes}. Crop/pad the volume to one of them (modality `size` in "
                "the cohort spec) or add {size, patch} for it to the encoder's scales"
            )
        return self.scales[key]

    def grid(self, size: Sequence[int]) -> tuple[int, int, int]:
        """Token grid (s, h, w) of a supported crop size."""
        return self._scale(size).grid  # type: ignore[return-value]

    def num_tokens(self, size: Sequence[int]) -> int:
        """Tokens the encoder outputs for a crop size without masking: s·h·w (+1 with CLS)."""
        return math.prod(self.grid(size)) + (self.cls_token is not None)

    def tokenize(
        self, voxels: Tensor, spacing: Tensor, *, generator: torch.Generator | None = None
    ) -> VolumeTokens:
        """Patch tokens with positions and voxel-size code, MAE-masked in training (see module).

        ``voxels`` (B, 1, D, H, W), ``spacing`` (B, 3) mm -> :class:`VolumeTokens`.
        """
        if voxels.ndim != 5 or voxels.shape[1] != 1:
            raise ModelError(
                "volume_multiscale expects voxels of shape (B, 1, D, H, W), got "
                f"{list(voxels.shape)}"
            )
        scale = self._scale(voxels.shape[2:])
        tokens = scale.patch_embedding(voxels).flatten(2).transpose(1, 2)  # (B, N, dim)
        physical = spacing.float() * spacing.new_tensor(scale.patch, dtype=torch.float32)
        tokens = tokens + scale.position() + spacing_embedding(physical, self.dim)[:, None, :]
        batch, count = tokens.shape[:2]
        if self.training and self.mask_ratio > 0:
            tokens, kept = random_token_masking(tokens, self.mask_ratio, generator)
        else:
            kept = torch.arange(count, device=tokens.device).expand(batch, count)
        if self.cls_token is not None:
            cls = (self.cls_token + self.cls_position).expand(batch, -1, -1)
            tokens = torch.cat([cls, tokens], dim=1)  # (B, 1 + N_keep, dim)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return VolumeTokens(tokens, mask, kept)

    def forward(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``voxels`` (B, 1, D, H, W), ``spacing`` (B, 3) -> tokens (B, N', dim), mask (B, N')."""
        tokens, mask, _ = self.tokenize(inputs["voxels"], inputs["spacing"])
        if self.blocks is not None:
            tokens = self.blocks(tokens)
        return self.norm(tokens), mask
