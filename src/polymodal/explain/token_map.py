"""From rollout shares of a modality's tokens to shares of its data elements.

Where the encoder's token layout is known, token shares are summed into the elements of
:mod:`polymodal.explain.elements`:

* ``tabular_tokens``: one token per column (numeric first), so each field gets its token's share;
* ``image_timm``: each view's tokens form an ``h × w`` grid over the image (after any CLS /
  register tokens); a token's share is spread over the 4 × 4 regions in proportion to the area
  of its cell inside each region;
* volume encoders with a ``grid`` (``volume_patch``, ``volume_monai``, ``volume_multiscale``):
  the same over the ``d × h × w`` grid and the 2 × 4 × 4 regions;
* text with the fitted word tokenizer (``[CLS]`` then one token per word or punctuation mark):
  each token belongs to the sentence it was cut from.

Other elements (series channels, text read by a Hugging Face tokenizer) get only their
modality's share.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from polymodal.data.preprocessing import Preprocessor
from polymodal.errors import ReadError
from polymodal.modalities import get as modality_kind
from polymodal.modalities.elements import grid_bounds
from polymodal.modalities.image import IMAGE_GRID, ImageModality, image_region_name
from polymodal.modalities.tabular import TabularModality
from polymodal.modalities.volume import VOLUME_GRID, volume_region_name


def _overlap(tokens: int, bounds: list[tuple[int, int]], size: int) -> np.ndarray:
    """``(tokens, regions)``: the fraction of each token's cell (along one axis) in each region."""
    edges = np.linspace(0.0, size, tokens + 1)
    weights = np.zeros((tokens, len(bounds)))
    for i in range(tokens):
        for r, (start, stop) in enumerate(bounds):
            inside = min(edges[i + 1], stop) - max(edges[i], start)
            weights[i, r] = max(inside, 0.0) / (edges[i + 1] - edges[i])
    return weights


class TokenMapper:
    """Maps one sample's token shares to element shares; caches encoder layouts per modality."""

    def __init__(self, model: nn.Module, prep: Preprocessor) -> None:
        self.model = model
        self.prep = prep
        self._image_layouts: dict[str, tuple[int, int, int] | None] = {}

    def element_shares(
        self,
        modality: str,
        shares: np.ndarray,
        fields: dict[str, torch.Tensor],
        sentences: list[tuple[str, str]] | None,
    ) -> dict[str, float]:
        """``shares`` ``(N_m,)`` of one sample -> ``{element name: share}`` (the modality too)."""
        out = {modality: float(shares.sum())}
        cfg = self.prep.modality_configs[modality]
        if modality not in self.model.encoders:  # a modality the core takes raw
            return out
        encoder = self.model.encoders[modality]
        # The kind says how its elements lie in the tokens (None: no finer mapping).
        layout = modality_kind(cfg.kind).token_layout
        if layout == "columns":
            out.update(self._tabular(modality, cfg, encoder, shares))
        elif layout == "views_2d":
            out.update(self._image(modality, cfg, encoder, shares, fields))
        elif layout == "grid_3d":
            out.update(self._volume(modality, encoder, shares, fields))
        elif layout == "words" and sentences:
            out.update(self._text(modality, shares, sentences))
        return out

    def _tabular(
        self, modality: str, cfg: TabularModality, encoder: nn.Module, shares: np.ndarray
    ) -> dict[str, float]:
        from polymodal.encoders.tabular import TabularTokenEncoder

        columns = [*cfg.numeric, *cfg.categorical]
        if not isinstance(encoder, TabularTokenEncoder) or len(shares) != len(columns):
            return {}
        return {f"{modality}.{c}": float(s) for c, s in zip(columns, shares, strict=True)}

    def _image_layout(self, modality: str, encoder: nn.Module) -> tuple[int, int, int] | None:
        """``(prefix tokens, h, w)`` of one view's tokens, probed once; None when unknown."""
        if modality in self._image_layouts:
            return self._image_layouts[modality]
        from polymodal.encoders.image import ImageTimmEncoder

        layout = None
        if isinstance(encoder, ImageTimmEncoder):
            device = next(encoder.parameters()).device
            with torch.no_grad():
                probe = torch.zeros(1, encoder.channels, *encoder.size, device=device)
                features = encoder.backbone.forward_features(probe)
            if features.ndim == 4:
                nhwc = getattr(encoder.backbone, "output_fmt", "NCHW") == "NHWC"
                h, w = features.shape[1:3] if nhwc else features.shape[2:4]
                layout = (0, int(h), int(w))
            else:
                grid = getattr(getattr(encoder.backbone, "patch_embed", None), "grid_size", None)
                if grid is not None:
                    h, w = int(grid[0]), int(grid[1])
                    prefix = encoder.num_tokens - h * w
                    layout = (prefix, h, w) if prefix >= 0 else None
        self._image_layouts[modality] = layout
        return layout

    def _image(
        self,
        modality: str,
        cfg: ImageModality,
        encoder: nn.Module,
        shares: np.ndarray,
        fields: dict[str, torch.Tensor],
    ) -> dict[str, float]:
        layout = self._image_layout(modality, encoder)
        if layout is None:
            return {}
        prefix, h, w = layout
        per_view = encoder.num_tokens
        height, width = fields["pixels"].shape[-2:]
        rows = _overlap(h, grid_bounds(height, IMAGE_GRID[0]), height)  # (h, R)
        cols = _overlap(w, grid_bounds(width, IMAGE_GRID[1]), width)  # (w, C)
        out = {}
        for view in range(len(cfg.columns)):
            if not bool(fields["view_mask"][view]):
                continue
            cells = shares[view * per_view + prefix : (view + 1) * per_view].reshape(h, w)
            regions = rows.T @ cells @ cols  # (R, C)
            for (r, c), value in np.ndenumerate(regions):
                out[image_region_name(modality, cfg, view, (r, c))] = float(value)
        return out

    def _volume(
        self,
        modality: str,
        encoder: nn.Module,
        shares: np.ndarray,
        fields: dict[str, torch.Tensor],
    ) -> dict[str, float]:
        size = tuple(int(s) for s in fields["voxels"].shape[1:])
        grid: Any = getattr(encoder, "grid", None)
        if callable(grid):
            try:
                grid = grid(size)
            except Exception:  # a size the encoder does not support: no mapping
                return {}
        if grid is None or len(grid) != 3:
            return {}
        grid = tuple(int(g) for g in grid)
        prefix = len(shares) - math.prod(grid)
        if prefix < 0:
            return {}
        cells = shares[prefix:].reshape(grid)
        weights = [
            _overlap(grid[a], grid_bounds(size[a], VOLUME_GRID[a]), size[a]) for a in range(3)
        ]
        regions = np.einsum("dhw,da,hb,wc->abc", cells, *weights)
        return {
            volume_region_name(modality, index): float(value)
            for index, value in np.ndenumerate(regions)
        }

    def _text(
        self, modality: str, shares: np.ndarray, sentences: list[tuple[str, str]]
    ) -> dict[str, float]:
        if self.prep.input_info(modality).get("tokenizer") is not None:
            return {}  # a Hugging Face tokenizer: special tokens at both ends, no clean cut
        try:
            # Tokens of the text up to the end of each sentence: word-level tokens never span
            # a sentence boundary, so token i belongs to the first sentence whose end passes i.
            ends = [
                len(
                    self.prep.transform_text(
                        modality, "".join(s for _, s in sentences[: k + 1]).strip()
                    )["input_ids"]
                )
                for k in range(len(sentences))
            ]
        except ReadError:
            return {}
        out, start = {}, 1  # token 0 is [CLS]
        for (label, _), end in zip(sentences, ends, strict=True):
            out[f"{modality}.{label}"] = float(shares[start:end].sum())
            start = max(start, end)
        return out
