"""3D volumes: NIfTI, a DICOM series folder, or .npy/.npz (with optional spacing).

Fields ``voxels`` ``(1, D, H, W)`` and ``spacing`` ``(3,)`` (see :mod:`polymodal.data.batch`);
nothing is fitted (:func:`polymodal.data.readers.read_volume` windows, resamples and crops each
file); elements are the regions of a 2 × 4 × 4 grid over the volume.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
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

# Largest voxel count read by default: a 512 x 512 x 512 CT fits.
DEFAULT_MAX_VOXELS = 512**3
VOLUME_GRID = (2, 4, 4)


def _positive_triple(value: list[float] | None, what: str) -> list[float] | None:
    if value is not None and (len(value) != 3 or any(v <= 0 for v in value)):
        raise ValueError(f"{what}: expected three positive numbers, got {value}")
    return value


class VolumeModality(ModalitySpec):
    """3D volumes: NIfTI, a DICOM series folder, or .npy/.npz (with optional spacing)."""

    kind: Literal["volume"]
    column: str
    # Build the file path from the cell value, e.g. "images/{}.jpg" (relative to the data root).
    path_template: str | None = None
    # Key inside .npz files (first array when omitted).
    npz_key: str | None = None
    orientation: str | None = "RAS"
    # Resample to this voxel spacing in mm (None keeps the file's spacing).
    spacing: list[float] | None = None
    # Intensity window [low, high] (e.g. HU), then scaled to [0, 1].
    window: tuple[float, float] | None = None
    # Crop or pad (centred) to this size in voxels.
    size: list[int] | None = None
    # Spacing assumed for .npy/.npz files, which carry none.
    default_spacing: list[float] = Field(default_factory=lambda: [1.0, 1.0, 1.0])
    # Largest voxel count read from a file or made by resampling to `spacing`; checked before
    # the memory is allocated.
    max_voxels: int = Field(DEFAULT_MAX_VOXELS, ge=1)

    _check_spacing = field_validator("spacing")(
        lambda v: _positive_triple(v, "spacing")  # type: ignore[misc]
    )
    _check_default_spacing = field_validator("default_spacing")(
        lambda v: _positive_triple(v, "default_spacing")  # type: ignore[misc]
    )

    @field_validator("size")
    @classmethod
    def _size_triple(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (len(v) != 3 or any(s <= 0 for s in v)):
            raise ValueError(f"expected three positive integers, got {v}")
        return v

    @field_validator("window")
    @classmethod
    def _window_increasing(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and v[0] >= v[1]:
            raise ValueError(f"expected [low, high] with low < high, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _size_within_limit(self) -> VolumeModality:
        if self.size is not None and self.size[0] * self.size[1] * self.size[2] > self.max_voxels:
            raise ValueError(
                f"size {self.size} has more voxels than max_voxels ({self.max_voxels})"
            )
        return self


def volume_region_name(modality: str, cell: tuple[int, int, int]) -> str:
    """``ct.d0h1w2``: the region's index along depth, height and width."""
    return f"{modality}.d{cell[0]}h{cell[1]}w{cell[2]}"


def volume_regions(
    size: Sequence[int],
) -> list[tuple[tuple[int, int, int], tuple[slice, slice, slice]]]:
    """``((d, h, w), (depth, rows, columns))`` of each region of the grid over a ``D × H × W``
    volume."""
    bounds = [grid_bounds(size[a], VOLUME_GRID[a]) for a in range(3)]
    return [
        ((d, h, w), (slice(*bd), slice(*bh), slice(*bw)))
        for d, bd in enumerate(bounds[0])
        for h, bh in enumerate(bounds[1])
        for w, bw in enumerate(bounds[2])
    ]


@MODALITIES.register("volume")
class Volume(ModalityKind):
    name = "volume"
    spec = VolumeModality
    fields = ("voxels", "spacing")
    default_encoder = "volume_patch"
    info_keys = ("size",)
    token_layout = "grid_3d"
    spatial = True

    def columns(self, cfg: VolumeModality) -> list[str]:
        return [cfg.column]

    def file_columns(self, cfg: VolumeModality) -> list[str]:
        return [cfg.column]

    def read_file(
        self, cfg: VolumeModality, cell: str, resolve: PathResolver
    ) -> tuple[np.ndarray, tuple[float, float, float]]:
        """Voxels and spacing by :func:`~polymodal.data.readers.read_volume`."""
        return readers.read_volume(resolve(cell, cfg.path_template), cfg)

    def input_info(self, cfg: VolumeModality, state: Mapping[str, Any]) -> dict[str, Any]:
        return {"kind": self.name, "size": None if cfg.size is None else list(cfg.size)}

    def empty_inputs(self, fitted: Fitted) -> dict[str, Tensor]:
        size = fitted.cfg.size or [1, 1, 1]
        return {"voxels": torch.zeros(1, *size), "spacing": torch.zeros(3)}

    def transform(
        self, fitted: Fitted, voxels: np.ndarray | Tensor, spacing: Sequence[float]
    ) -> dict[str, Tensor]:
        """Reader output ``(1, D, H, W)`` + voxel spacing -> ``voxels`` and ``spacing`` ``(3,)``."""
        cfg = fitted.cfg
        voxels = torch.as_tensor(voxels, dtype=torch.float32)
        if voxels.ndim != 4 or voxels.shape[0] != 1:
            raise ReadError(f"volume of shape {tuple(voxels.shape)}, expected (1, D, H, W)")
        if cfg.size is not None and list(voxels.shape[1:]) != list(cfg.size):
            raise ReadError(f"volume of size {list(voxels.shape[1:])}, expected {cfg.size}")
        return {"voxels": voxels, "spacing": torch.tensor([float(s) for s in spacing])}

    def decode(self, fitted: Fitted, path: Path) -> dict[str, Tensor]:
        """One file's fields: :func:`~polymodal.data.readers.read_volume`, then the transform."""
        return self.transform(fitted, *readers.read_volume(path, fitted.cfg))

    def encode(
        self, prep: FittedInputs, name: str, cells: Mapping[str, str], row: RowReader
    ) -> dict[str, Tensor] | None:
        fitted = prep.fitted(name)
        cfg = fitted.cfg
        cell = cells.get(cfg.column, "")
        if is_blank(cell):
            return None
        decode = partial(self.decode, fitted)
        return row.load(prep, name, cell, cfg.path_template, decode, cfg.column)

    def occlusions(
        self, fitted: Fitted, fields: Fields, sentences: Sequence[tuple[str, str]] | None
    ) -> list[Occlusion]:
        """Each region of the volume, filled with the volume's mean."""
        modality = fitted.name
        voxels = fields["voxels"]  # (1, D, H, W)
        mean = voxels.mean()
        out = []
        for cell, (depth, rows, cols) in volume_regions(voxels.shape[1:]):
            occluded = without(fields)
            occluded["voxels"][:, depth, rows, cols] = mean
            detail = (
                f"voxels {depth.start}:{depth.stop}, {rows.start}:{rows.stop}, "
                f"{cols.start}:{cols.stop}"
            )
            name = volume_region_name(modality, cell)
            out.append(Occlusion(Element(name, "region", modality, detail), occluded))
        return out

    def heat_maps(
        self, modality: str, cfg: VolumeModality, fields: Fields, relevance: Mapping[str, float]
    ) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """The volume ``(D, H, W)`` and its heat."""
        voxels = fields["voxels"][0].numpy()  # (D, H, W)
        heat = np.zeros_like(voxels)
        for cell, box in volume_regions(voxels.shape):
            heat[box] = np.nan_to_num(relevance.get(volume_region_name(modality, cell), 0.0))
        return [("", voxels, heat)]

    def example(self, folder: Path) -> Example:
        """Three 16³ .npy volumes; the last row has none."""
        rng = np.random.default_rng(0)
        cells = []
        for index in range(3):
            np.save(folder / f"vol{index}.npy", rng.normal(size=(16, 16, 16)).astype(np.float32))
            cells.append({"ct": f"vol{index}.npy"})
        cells.append({"ct": ""})
        spec = {"kind": self.name, "column": "ct", "size": [16, 16, 16]}
        return Example(spec, cells, encoder_options={"patch_size": 4, "depth": 1, "heads": 2})
