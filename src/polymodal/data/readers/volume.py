"""3D volume reader: NIfTI, a DICOM series folder, or ``.npy``/``.npz``, through MONAI transforms.

The voxel spacing comes from the file (NIfTI header, DICOM geometry) or from
``cfg.default_spacing`` for numpy arrays, which carry none. Preprocessing order: orientation,
resampling to ``cfg.spacing``, intensity window (scaled to [0, 1]), then centred crop/pad to
``cfg.size``, so the window is applied to real intensities before any padding is added.
"""

from __future__ import annotations

import functools
import logging
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from polymodal.data.spec import VolumeModality
from polymodal.errors import ReadError

if TYPE_CHECKING:
    from monai.data import MetaTensor
    from monai.transforms import LoadImage

# MONAI is imported where it is used: importing it loads every MONAI submodule (seconds), which a
# cohort without volumes never needs.

_NIFTI_SUFFIXES = (".nii", ".nii.gz")
# Axis codes are read in RAS world space (MONAI's MetaTensor default), stated so it can't drift.
_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


def _dimension_error(shape: tuple[int, ...]) -> str:
    return f"expected a 3D volume, got {len(shape)} dimensions (shape {tuple(shape)})"


def _squeeze_to_3d(array_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """Shape with trailing singleton axes beyond the third dropped; None if not 3D then."""
    shape = tuple(array_shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape if len(shape) == 3 else None


def _load_numpy(path: Path, cfg: VolumeModality) -> MetaTensor:
    """``.npy``/``.npz`` -> MetaTensor ``(D, H, W)`` with an affine of ``cfg.default_spacing``."""
    from monai.data import MetaTensor

    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise ReadError(f"not a readable numpy file: {err}", path) from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.keys())
            if not keys:
                raise ReadError("the .npz file holds no arrays", path)
            key = cfg.npz_key or keys[0]
            if key not in keys:
                raise ReadError(
                    f"the .npz file has no array {key!r} (modalities.*.npz_key); "
                    f"arrays present: {', '.join(keys)}",
                    path,
                )
            array = loaded[key]
    else:
        array = loaded
    if not np.issubdtype(array.dtype, np.number) and array.dtype != np.bool_:
        raise ReadError(f"expected a numeric array, got dtype {array.dtype}", path)
    shape = _squeeze_to_3d(array.shape)
    if shape is None:
        raise ReadError(_dimension_error(array.shape), path)
    affine = torch.diag(torch.tensor([*cfg.default_spacing, 1.0], dtype=torch.float64))
    return MetaTensor(torch.from_numpy(array.reshape(shape).astype(np.float32)), affine=affine)


@functools.cache
def _loader(reader: str) -> LoadImage:
    """One LoadImage per reader (it builds every MONAI reader, so not once per file)."""
    from monai.transforms import LoadImage

    # The optional GPU DICOM codec is absent on most machines and pydicom decodes instead; MONAI
    # says so by warning and by logging, which would read like a problem with the user's data.
    codec_logger = logging.getLogger("monai.data.nvimgcodec_pydicom_plugin")
    level = codec_logger.level
    codec_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*nvImageCodec.*")
            return LoadImage(reader=reader, image_only=True, dtype=np.float32)
    finally:
        codec_logger.setLevel(level)


def _load_with_monai(path: Path, reader: str) -> MetaTensor:
    """NIfTI file or DICOM series folder -> MetaTensor ``(X, Y, Z)`` with its affine."""
    try:
        image = _loader(reader)(str(path))
    except Exception as err:  # readers raise many types for bad files; all mean "unreadable"
        what = "DICOM series folder" if reader == "PydicomReader" else "NIfTI file"
        raise ReadError(f"not a readable {what}: {type(err).__name__}: {err}", path) from None
    shape = _squeeze_to_3d(tuple(image.shape))
    if shape is None:
        raise ReadError(_dimension_error(tuple(image.shape)), path)
    return image.reshape(shape)


def _load(path: Path, cfg: VolumeModality) -> MetaTensor:
    name = path.name.lower()
    if path.is_dir():
        if not any(p.is_file() for p in path.iterdir()):
            raise ReadError("the DICOM series folder is empty", path)
        return _load_with_monai(path, "PydicomReader")
    if name.endswith(_NIFTI_SUFFIXES):
        return _load_with_monai(path, "NibabelReader")
    if name.endswith((".npy", ".npz")):
        return _load_numpy(path, cfg)
    if name.endswith((".dcm", ".dicom")):
        raise ReadError(
            "a single DICOM file is not a volume; point the column at the series folder", path
        )
    raise ReadError(
        f"unsupported volume format {path.suffix!r}; use NIfTI, a DICOM series folder, "
        ".npy or .npz",
        path,
    )


def read_volume(path: Path, cfg: VolumeModality) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read and preprocess one volume.

    Returns:
        voxels: float32 ``(1, D, H, W)`` after orientation, resampling, window and crop/pad.
        spacing: voxel size in mm after preprocessing, in the same axis order as ``D, H, W``.

    Raises:
        ReadError: missing or unreadable file, wrong dimensionality, unknown npz key.
    """
    from monai.data.utils import affine_to_spacing
    from monai.transforms import Orientation, ResizeWithPadOrCrop, ScaleIntensityRange, Spacing

    path = Path(path)
    if not path.exists():
        raise ReadError("file not found", path)
    image = _load(path, cfg)[None]  # (1, D, H, W): MONAI transforms want a channel axis
    if cfg.orientation:
        image = Orientation(axcodes=cfg.orientation, labels=_RAS_LABELS)(image)
    if cfg.spacing is not None:
        image = Spacing(pixdim=cfg.spacing, mode="bilinear")(image)
    if cfg.window is not None:
        low, high = cfg.window
        image = ScaleIntensityRange(a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)(image)
    if cfg.size is not None:
        image = ResizeWithPadOrCrop(spatial_size=cfg.size)(image)
    spacing = affine_to_spacing(image.affine, r=3).tolist()
    voxels = np.ascontiguousarray(image.as_tensor().numpy(), dtype=np.float32)
    return voxels, (float(spacing[0]), float(spacing[1]), float(spacing[2]))
