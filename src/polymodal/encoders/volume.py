"""3D volumes (CT, MRI) as tokens: ViT-style patch tokens or a MONAI 3D network's feature map.

Both encoders add a voxel-spacing embedding (M3FM, methods.md §2.2 item 2): the physical size in mm
of what one token covers, per axis, as a sin-cos code added to every token, so a model can tell a
1 mm slice from a 5 mm one even after resampling to a fixed grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.encoders.registry import register_encoder
from polymodal.errors import ModelError


def sincos_embedding(values: Tensor, dim: int) -> Tensor:
    """1-D sin-cos code of scalars: (B,) -> (B, dim), frequencies ω_i = 10000^(−2i/dim).

    ``dim`` must be even (half sines, half cosines).
    """
    half = dim // 2
    omega = torch.exp(
        -math.log(10000.0) * torch.arange(half, device=values.device, dtype=torch.float32) * 2 / dim
    )
    angles = values.float()[:, None] * omega[None, :]  # (B, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def spacing_embedding(physical_size: Tensor, dim: int) -> Tensor:
    """Voxel-size embedding: (B, 3) token extent in mm along (d, h, w) -> (B, dim).

    As in M3FM, h and w get ``⌊dim/6⌋·2`` channels each and the slice axis the rest
    (dim = 1024 -> 344 / 340 / 340); each axis is a :func:`sincos_embedding`.
    """
    in_plane = (dim // 6) * 2
    through_plane = dim - 2 * in_plane
    return torch.cat(
        [
            sincos_embedding(physical_size[:, 0], through_plane),
            sincos_embedding(physical_size[:, 1], in_plane),
            sincos_embedding(physical_size[:, 2], in_plane),
        ],
        dim=1,
    )


def token_transformer(
    dim: int, *, depth: int, heads: int, mlp_ratio: float, dropout: float
) -> nn.TransformerEncoder | None:
    """``depth`` pre-LN transformer layers over patch tokens (None when ``depth`` is 0)."""
    if not depth:
        return None
    layer = nn.TransformerEncoderLayer(
        dim,
        heads,
        dim_feedforward=int(dim * mlp_ratio),
        dropout=dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


def _check_even(name: str, dim: int) -> None:
    if dim % 2 or dim < 6:
        raise ModelError(
            f"{name}: dim must be even and at least 6 (sin-cos spacing code), got {dim}"
        )


def _triple(value: int | Sequence[int], name: str) -> tuple[int, int, int]:
    triple = (value,) * 3 if isinstance(value, int) else tuple(int(v) for v in value)
    if len(triple) != 3 or min(triple) <= 0:
        raise ModelError(f"{name} must be one positive integer or three, got {value!r}")
    return triple  # type: ignore[return-value]


@register_encoder("volume_patch", kinds=("volume",))
class VolumePatchEncoder(nn.Module):
    """Conv3d patch tokens with a learnable positional table, a voxel-spacing embedding and
    optional pre-LN transformer blocks.

    Inputs: ``voxels`` (B, 1, D, H, W) float, ``spacing`` (B, 3) mm.
    Output: tokens (B, N, dim) with N = (D/p_d)·(H/p_h)·(W/p_w), mask (B, N) all True.

    Args:
        input_info: ``{"kind": "volume", "size": [D, H, W]}``; the size fixes the positional table.
        dim: token width (even, ≥ 6).
        patch_size: patch edge in voxels, one number or (p_d, p_h, p_w); kernel = stride.
        depth: transformer blocks after the patch embedding (0: tokens straight from the patch
            embedding).
        heads: attention heads per block.
        mlp_ratio: hidden width of each block's MLP, as a multiple of ``dim``.
        dropout: dropout inside the blocks.
    """

    def __init__(
        self,
        input_info: dict[str, Any],
        dim: int,
        *,
        patch_size: int | Sequence[int] = 8,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_even("volume_patch", dim)
        if input_info.get("size") is None:
            raise ModelError(
                "volume_patch needs a fixed volume size for its positional table: set "
                "`size: [D, H, W]` on the volume modality in the cohort spec, or use volume_monai"
            )
        self.dim = dim
        self.size = _triple(input_info["size"], "volume size")
        self.patch_size = _triple(patch_size, "volume_patch patch_size")
        if any(s % p for s, p in zip(self.size, self.patch_size, strict=True)):
            raise ModelError(
                f"volume_patch: volume size {list(self.size)} is not a multiple of patch_size "
                f"{list(self.patch_size)}; pick a patch size that divides every axis"
            )
        self.grid = tuple(s // p for s, p in zip(self.size, self.patch_size, strict=True))
        self.num_tokens = math.prod(self.grid)
        self.patch_embedding = nn.Conv3d(
            1, dim, kernel_size=self.patch_size, stride=self.patch_size
        )
        self.position = nn.Parameter(torch.zeros(1, self.num_tokens, dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.blocks = token_transformer(
            dim, depth=depth, heads=heads, mlp_ratio=mlp_ratio, dropout=dropout
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``voxels`` (B, 1, D, H, W), ``spacing`` (B, 3) -> tokens (B, N, dim), mask (B, N)."""
        voxels, spacing = inputs["voxels"], inputs["spacing"]
        if tuple(voxels.shape[1:]) != (1, *self.size):
            raise ModelError(
                f"volume_patch was built for volumes of size {list(self.size)} (1 channel) but got "
                f"{list(voxels.shape[2:])} with {voxels.shape[1]} channel(s); resample to the size "
                "the preprocessing state was fitted with"
            )
        tokens = self.patch_embedding(voxels).flatten(2).transpose(1, 2)  # (B, N, dim)
        physical = spacing.float() * spacing.new_tensor(self.patch_size, dtype=torch.float32)
        tokens = tokens + self.position + spacing_embedding(physical, self.dim)[:, None, :]
        if self.blocks is not None:
            tokens = self.blocks(tokens)
        tokens = self.norm(tokens)
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)


@register_encoder("volume_monai", kinds=("volume",))
class VolumeMonaiEncoder(nn.Module):
    """A MONAI 3D DenseNet's final feature map, one token per cell, plus the spacing embedding.

    Inputs: ``voxels`` (B, 1, D, H, W) float, ``spacing`` (B, 3) mm.
    Output: tokens (B, N, dim), N = d'·h'·w' cells of the final feature map (each axis shrinks
    4× in the stem and 2× per transition between dense blocks), mask (B, N) all True.

    Args:
        input_info: ``{"kind": "volume", "size": [D, H, W] or None}``; a known size is checked
            against the network's downsampling when the encoder is built.
        dim: token width (even, ≥ 6).
        network_options: keyword arguments for ``monai.networks.nets.DenseNet`` (defaults give
            DenseNet121: ``init_features=64, growth_rate=32, block_config=(6, 12, 24, 16)``).
    """

    def __init__(
        self,
        input_info: dict[str, Any],
        dim: int,
        *,
        network_options: dict[str, Any] | None = None,
    ) -> None:
        # Imported here: MONAI takes seconds to import and only this encoder needs it.
        from monai.networks.nets import DenseNet

        super().__init__()
        _check_even("volume_monai", dim)
        self.dim = dim
        options = {"init_features": 64, "growth_rate": 32, "block_config": (6, 12, 24, 16)}
        options.update(network_options or {})
        network = DenseNet(spatial_dims=3, in_channels=1, out_channels=1, **options)
        # Only the convolutional trunk: the pooled classifier would get no gradient.
        self.features = network.features
        self.num_blocks = len(options["block_config"])
        self.proj = nn.Linear(self.features[-1].num_features, dim)
        self.norm = nn.LayerNorm(dim)
        size = input_info.get("size")
        self.size = None if size is None else _triple(size, "volume size")
        self.grid = None if self.size is None else self._grid(self.size)

    def _grid(self, size: tuple[int, ...]) -> tuple[int, ...]:
        """Feature-map shape for an input ``size``: stem conv /2, max-pool /2, /2 per transition."""
        grid = []
        for extent in size:
            cells = (extent - 1) // 2 + 1  # 7³ conv, stride 2, padding 3
            cells = (cells - 1) // 2 + 1  # 3³ max-pool, stride 2, padding 1
            for _ in range(self.num_blocks - 1):
                cells //= 2  # transition: 2³ average pool
            grid.append(cells)
        if min(grid) < 1:
            raise ModelError(
                f"volume_monai: volumes of size {list(size)} are too small for a DenseNet with "
                f"{self.num_blocks} dense blocks; use fewer blocks (network_options.block_config), "
                "a larger volume size, or volume_patch"
            )
        return tuple(grid)

    def forward(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``voxels`` (B, 1, D, H, W), ``spacing`` (B, 3) -> tokens (B, N, dim), mask (B, N)."""
        voxels, spacing = inputs["voxels"], inputs["spacing"]
        size = tuple(voxels.shape[2:])
        if voxels.shape[1] != 1 or (self.size is not None and size != self.size):
            expected = "any size" if self.size is None else f"size {list(self.size)}"
            raise ModelError(
                f"volume_monai expects 1-channel volumes of {expected} but got "
                f"{voxels.shape[1]} channel(s) of size {list(size)}"
            )
        grid = self.grid or self._grid(size)
        features = torch.relu(self.features(voxels))  # (B, C', d', h', w')
        tokens = self.proj(features.flatten(2).transpose(1, 2))  # (B, N, dim)
        cell = [s / g for s, g in zip(size, grid, strict=True)]  # voxels per token, per axis
        physical = spacing.float() * spacing.new_tensor(cell, dtype=torch.float32)
        tokens = self.norm(tokens + spacing_embedding(physical, self.dim)[:, None, :])
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
