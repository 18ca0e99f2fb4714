"""2D images: PNG/JPEG (8 or 16 bit) or single-file DICOM; one manifest column per view.

Fields ``pixels`` ``(V, C, H, W)`` and ``view_mask`` ``(V,)`` (see :mod:`polymodal.data.batch`);
nothing is fitted (each file is normalised by :func:`polymodal.data.readers.read_image`);
elements are the regions of a 4 × 4 grid over each present view.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor

from polymodal.data import readers
from polymodal.data.cells import is_blank
from polymodal.errors import ReadError
from polymodal.modalities.base import (
    MODALITIES,
    Example,
    Fitted,
    FittedInputs,
    ModalityKind,
    ModalitySpec,
    PathResolver,
    RowReader,
)
from polymodal.modalities.elements import Element, Fields, Occlusion, grid_bounds, without

# Largest image (height x width x frames) decoded by default; a 7000 x 7000 radiograph fits.
DEFAULT_MAX_PIXELS = 50_000_000
IMAGE_GRID = (4, 4)


class ImageModality(ModalitySpec):
    """2D images: PNG/JPEG (8 or 16 bit) or single-file DICOM; one column per view."""

    kind: Literal["image"]
    columns: list[str] = Field(min_length=1)
    # Build the file path from the cell value, e.g. "images/{}.jpg" (relative to the data root).
    path_template: str | None = None
    # (height, width) in pixels after resizing.
    size: tuple[int, int] = (224, 224)
    channels: Literal[1, 3] = 3
    # imagenet: scale to [0,1] then ImageNet mean/std; minmax: per image to [0,1];
    # zscore: per image zero mean, unit variance; none: raw intensities as float.
    normalize: Literal["imagenet", "minmax", "zscore", "none"] = "imagenet"
    augment: bool = False
    # Largest image (height x width x frames) decoded; a larger file is refused, not read.
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1)

    @field_validator("size")
    @classmethod
    def _size_pair(cls, v: tuple[int, int]) -> tuple[int, int]:
        if any(s <= 0 for s in v):
            raise ValueError(f"expected two positive integers (height, width), got {list(v)}")
        return v

    @model_validator(mode="after")
    def _size_within_limit(self) -> ImageModality:
        if self.size[0] * self.size[1] > self.max_pixels:
            raise ValueError(
                f"size {list(self.size)} has more pixels than max_pixels ({self.max_pixels})"
            )
        return self


def image_region_name(modality: str, cfg: ImageModality, view: int, cell: tuple[int, int]) -> str:
    """``xray.r1c2`` (one view) or ``xray.<view column>.r1c2`` (several views)."""
    prefix = f"{modality}." if len(cfg.columns) == 1 else f"{modality}.{cfg.columns[view]}."
    return f"{prefix}r{cell[0]}c{cell[1]}"


def view_regions(height: int, width: int) -> list[tuple[tuple[int, int], slice, slice]]:
    """``((r, c), rows, columns)`` of each region of the grid over one ``height × width`` view."""
    return [
        ((r, c), slice(h0, h1), slice(w0, w1))
        for r, (h0, h1) in enumerate(grid_bounds(height, IMAGE_GRID[0]))
        for c, (w0, w1) in enumerate(grid_bounds(width, IMAGE_GRID[1]))
    ]


class ViewAugmenter:
    """Light geometric augmentation of every present view ``(C, H, W)``: flip, small rotation
    and zoom, the same random draw for a given seed."""

    def __init__(self) -> None:
        # Imported here: importing MONAI takes seconds, and only an augmenting training set
        # needs it (loading a model folder for prediction must not pay for it).
        from monai.transforms import Compose, RandAffine, RandFlip

        self.transform = Compose(
            [
                RandFlip(prob=0.5, spatial_axis=1),
                RandAffine(prob=0.5, rotate_range=(np.pi / 12,), scale_range=(0.1, 0.1)),
            ]
        )

    def __call__(self, fields: Fields, seed: int) -> None:
        self.transform.set_random_state(seed=seed)
        for view in torch.nonzero(fields["view_mask"]).flatten().tolist():
            out = self.transform(fields["pixels"][view])  # (C, H, W)
            fields["pixels"][view] = torch.as_tensor(out).as_subclass(torch.Tensor)


@MODALITIES.register("image")
class Image(ModalityKind):
    name = "image"
    spec = ImageModality
    fields = ("pixels", "view_mask")
    default_encoder = "image_timm"
    info_keys = ("channels", "size", "views")
    token_layout = "views_2d"
    pixels_2d = True
    spatial = True

    def columns(self, cfg: ImageModality) -> list[str]:
        return list(cfg.columns)

    def file_columns(self, cfg: ImageModality) -> list[str]:
        return list(cfg.columns)

    def read_file(self, cfg: ImageModality, cell: str, resolve: PathResolver) -> np.ndarray:
        """The view ``(C, H, W)`` by :func:`~polymodal.data.readers.read_image`."""
        return readers.read_image(resolve(cell, cfg.path_template), cfg)

    def input_info(self, cfg: ImageModality, state: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "kind": self.name,
            "channels": cfg.channels,
            "size": list(cfg.size),
            "views": len(cfg.columns),
        }

    def empty_inputs(self, fitted: Fitted) -> dict[str, Tensor]:
        cfg = fitted.cfg
        views = len(cfg.columns)
        return {
            "pixels": torch.zeros(views, cfg.channels, *cfg.size),
            "view_mask": torch.zeros(views, dtype=torch.bool),
        }

    def transform(
        self, fitted: Fitted, views: Sequence[np.ndarray | Tensor | None]
    ) -> dict[str, Tensor]:
        """Reader outputs ``(C, H, W)`` per view column (None: view missing) -> ``pixels``
        ``(V, C, H, W)`` and ``view_mask`` ``(V,)``."""
        cfg = fitted.cfg
        out = self.empty_inputs(fitted)
        expected = (cfg.channels, *cfg.size)
        for index, view in enumerate(views):
            if view is None:
                continue
            view = torch.as_tensor(view, dtype=torch.float32)
            if tuple(view.shape) != expected:
                raise ReadError(
                    f"image of shape {tuple(view.shape)}, expected {expected} (C, H, W)"
                )
            out["pixels"][index] = view
            out["view_mask"][index] = True
        return out

    def encode(
        self, prep: FittedInputs, name: str, cells: Mapping[str, str], row: RowReader
    ) -> dict[str, Tensor] | None:
        fitted = prep.fitted(name)
        views: list[Tensor | None] = []
        for column in fitted.cfg.columns:
            cell = cells.get(column, "")
            # Read by polymodal.data.readers.read_image, cached as 8-bit pixels where exact.
            views.append(None if is_blank(cell) else row.load_pixels(prep, name, cell, column))
        if all(v is None for v in views):
            return None
        return row.read(self.transform, fitted, views, modality=name, column=None)

    def augmenter(self, cfg: ImageModality) -> ViewAugmenter | None:
        return ViewAugmenter() if cfg.augment else None

    def occlusions(
        self, fitted: Fitted, fields: Fields, sentences: Sequence[tuple[str, str]] | None
    ) -> list[Occlusion]:
        """Each region of each present view, filled with the view's mean (per channel)."""
        cfg, modality = fitted.cfg, fitted.name
        pixels = fields["pixels"]  # (V, C, H, W)
        out = []
        for view, column in enumerate(cfg.columns):
            if not bool(fields["view_mask"][view]):
                continue
            mean = pixels[view].mean(dim=(1, 2), keepdim=True)  # (C, 1, 1)
            for cell, rows, cols in view_regions(*pixels.shape[-2:]):
                occluded = without(fields)
                occluded["pixels"][view, :, rows, cols] = mean
                detail = f"{column} rows {rows.start}:{rows.stop} columns {cols.start}:{cols.stop}"
                name = image_region_name(modality, cfg, view, cell)
                out.append(Occlusion(Element(name, "region", modality, detail), occluded))
        return out

    def heat_maps(
        self, modality: str, cfg: ImageModality, fields: Fields, relevance: Mapping[str, float]
    ) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """One map per present view: the view ``(H, W)`` or ``(H, W, 3)`` and its heat."""
        maps = []
        for view, column in enumerate(cfg.columns):
            if not bool(fields["view_mask"][view]):
                continue
            pixels = fields["pixels"][view].numpy()  # (C, H, W)
            heat = np.zeros(pixels.shape[1:], dtype=np.float32)  # (H, W)
            for cell, rows, cols in view_regions(*pixels.shape[1:]):
                name = image_region_name(modality, cfg, view, cell)
                heat[rows, cols] = np.nan_to_num(relevance.get(name, 0.0))
            label = column if len(cfg.columns) > 1 else ""
            background = pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)
            maps.append((label, background, heat))
        return maps

    def example(self, folder: Path) -> Example:
        """Two views of 32 × 32 grey PNGs; the second row lacks one view, the last both."""
        from PIL import Image as PILImage

        rng = np.random.default_rng(0)
        names = []
        for index in range(4):
            pixels = rng.integers(0, 255, (40, 36), dtype=np.uint8)
            PILImage.fromarray(pixels).save(folder / f"img{index}.png")
            names.append(f"img{index}.png")
        cells = [
            {"front": names[0], "side": names[1]},
            {"front": names[2], "side": ""},
            {"front": names[3], "side": names[0]},
            {"front": "", "side": ""},
        ]
        spec = {"kind": self.name, "columns": ["front", "side"], "size": [32, 32], "channels": 1}
        return Example(spec, cells, encoder_options={"backbone": "test_resnet"})
