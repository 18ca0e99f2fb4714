"""3D volume reader: NIfTI, a DICOM series folder, or ``.npy``/``.npz``, through MONAI transforms.

The voxel spacing comes from the file (NIfTI header, DICOM geometry) or from
``cfg.default_spacing`` for numpy arrays, which carry none. Preprocessing order: orientation,
resampling to ``cfg.spacing``, intensity window (scaled to [0, 1]), then centred crop/pad to
``cfg.size``, so the window is applied to real intensities before any padding is added.

Non-finite values: a volume with a NaN or infinite voxel (a float NIfTI or numpy array, a DICOM
series whose rescale slope or intercept is NaN) or a non-finite voxel spacing is refused with a
:class:`ReadError` that counts them; no NaN ever leaves this reader. Size: the voxel count a
file declares, and the count resampling to ``cfg.spacing`` would produce, are checked against
``cfg.max_voxels`` before that memory is allocated.
"""

from __future__ import annotations

import functools
import logging
import math
import tokenize
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

import numpy as np
import torch

from polymodal.data.readers._checks import refuse_over_limit, require_finite
from polymodal.data.remote import reads_local
from polymodal.errors import ReadError

if TYPE_CHECKING:
    from monai.data import MetaTensor
    from monai.transforms import LoadImage


class VolumeSettings(Protocol):
    """What the volume reader uses of a volume modality's spec section."""

    npz_key: str | None
    orientation: str | None
    spacing: list[float] | None
    window: tuple[float, float] | None
    size: list[int] | None
    default_spacing: list[float]
    max_voxels: int


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


# What numpy and zipfile raise for a damaged header, archive or data block (the header is a
# Python literal: a damaged one fails to tokenize or parse; zipfile raises NotImplementedError
# for an unknown compression method and RuntimeError for an encrypted member).
_NUMPY_FILE_ERRORS = (
    NotImplementedError,
    RuntimeError,
    ValueError,
    TypeError,
    OSError,
    EOFError,
    KeyError,
    SyntaxError,
    tokenize.TokenError,
    zipfile.BadZipFile,
    zlib.error,
)


def _npy_shape(handle: IO[bytes]) -> tuple[int, ...]:
    """The array shape in a ``.npy`` header, read without reading the data."""
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, _, _ = np.lib.format.read_array_header_1_0(handle)
    else:
        shape, _, _ = np.lib.format.read_array_header_2_0(handle)
    return tuple(shape)


def _declared_numpy_shape(path: Path, key: str | None) -> tuple[int, ...]:
    """Shape of the ``.npy`` file, or of the ``.npz`` member ``key``, from its header."""
    if key is None:
        with path.open("rb") as handle:
            return _npy_shape(handle)
    with zipfile.ZipFile(path) as archive:
        # numpy lists a member "x.npy" as key "x"; a member without the suffix keeps its name.
        member = key if key in archive.namelist() else f"{key}.npy"
        with archive.open(member) as handle:
            return _npy_shape(handle)


def _load_numpy(path: Path, cfg: VolumeSettings) -> MetaTensor:
    """``.npy``/``.npz`` -> MetaTensor ``(D, H, W)`` with an affine of ``cfg.default_spacing``."""
    from monai.data import MetaTensor

    try:
        loaded = np.load(path, mmap_mode="r", allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                key = _npz_key(loaded, cfg, path)
                shape = _declared_numpy_shape(path, key)
                refuse_over_limit(math.prod(shape), cfg.max_voxels, "voxels", "max_voxels", path)
                array = loaded[key]
        else:
            # A memory map: the header is read, the data only when copied below.
            refuse_over_limit(loaded.size, cfg.max_voxels, "voxels", "max_voxels", path)
            array = loaded
        if not isinstance(array, np.ndarray):
            raise ReadError(f"the .npz member {key!r} is not a numpy array", path)
        if not np.issubdtype(array.dtype, np.number) and array.dtype != np.bool_:
            raise ReadError(f"expected a numeric array, got dtype {array.dtype}", path)
        shape = _squeeze_to_3d(array.shape)
        if shape is None:
            raise ReadError(_dimension_error(array.shape), path)
        with np.errstate(over="ignore", invalid="ignore"):  # inf/NaN are reported later
            voxels = np.array(array, dtype=np.float32).reshape(shape)  # a copy: reads the data
    except _NUMPY_FILE_ERRORS as err:
        raise ReadError(f"not a readable numpy file: {err}", path) from None
    affine = torch.diag(torch.tensor([*cfg.default_spacing, 1.0], dtype=torch.float64))
    return MetaTensor(torch.from_numpy(voxels), affine=affine)


def _npz_key(archive: np.lib.npyio.NpzFile, cfg: VolumeSettings, path: Path) -> str:
    """The member of an ``.npz`` to read: ``cfg.npz_key``, else the first."""
    keys = list(archive.keys())
    if not keys:
        raise ReadError("the .npz file holds no arrays", path)
    key = cfg.npz_key or keys[0]
    if key not in keys:
        raise ReadError(
            f"the .npz file has no array {key!r} (modalities.*.npz_key); "
            f"arrays present: {', '.join(keys)}",
            path,
        )
    return key


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
    loader = _loader(reader)
    try:
        # The named reader only (the last registered): LoadImage would otherwise try every
        # reader in turn and pack each one's traceback into its error.
        image = loader(str(path), reader=loader.readers[-1])
    except Exception as err:  # readers raise many types for bad files; all mean "unreadable"
        what = "DICOM series folder" if reader == "PydicomReader" else "NIfTI file"
        raise ReadError(f"not a readable {what}: {type(err).__name__}: {err}", path) from None
    shape = _squeeze_to_3d(tuple(image.shape))
    if shape is None:
        raise ReadError(_dimension_error(tuple(image.shape)), path)
    return image.reshape(shape)


def _nifti_voxels(path: Path) -> int:
    """Voxel count a NIfTI header declares, read without decompressing the data."""
    import nibabel as nib

    try:
        return math.prod(nib.load(str(path)).shape)
    except Exception as err:  # nibabel raises many types for a damaged header or archive
        raise ReadError(f"not a readable NIfTI file: {type(err).__name__}: {err}", path) from None


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(_NIFTI_SUFFIXES)


def _check_series_folder(path: Path) -> None:
    """A volume folder must be one DICOM series; a folder of NIfTI files is a common mistake."""
    files = [p for p in path.iterdir() if p.is_file()]
    if not files:
        raise ReadError("the DICOM series folder is empty", path)
    nifti = sorted(p.name for p in files if _is_nifti(p))
    if nifti:
        shown = ", ".join(nifti[:3]) + (f" and {len(nifti) - 3} more" if len(nifti) > 3 else "")
        raise ReadError(
            f"the folder holds {len(nifti)} NIfTI file(s) ({shown}); a volume cell must name "
            "one NIfTI file (a folder is read as one DICOM series)",
            path,
        )
    if not any(_has_dicom_marker(p) for p in files):
        shown = ", ".join(sorted(p.name for p in files)[:3])
        raise ReadError(
            f"the folder holds no DICOM file (none has the 'DICM' marker; found {shown}); "
            "a volume cell must name a NIfTI or numpy file, or a folder of one DICOM series",
            path,
        )


def _has_dicom_marker(path: Path) -> bool:
    """True for a DICOM Part 10 file: "DICM" after the 128-byte preamble."""
    try:
        with path.open("rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _load(path: Path, cfg: VolumeSettings) -> MetaTensor:
    name = path.name.lower()
    if path.is_dir():
        _check_series_folder(path)
        return _load_with_monai(path, "PydicomReader")
    if _is_nifti(path):
        refuse_over_limit(_nifti_voxels(path), cfg.max_voxels, "voxels", "max_voxels", path)
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


def _check_source(image: MetaTensor, cfg: VolumeSettings, path: Path) -> None:
    """Finite voxels and geometry, and a voxel count within ``cfg.max_voxels``."""
    if image.numel() == 0:
        raise ReadError(f"the volume holds no voxels (shape {tuple(image.shape[1:])})", path)
    refuse_over_limit(image.numel(), cfg.max_voxels, "voxels", "max_voxels", path)
    hint = (
        "check the RescaleSlope/RescaleIntercept of its files"
        if path.is_dir()
        else "replace them with a real value (e.g. the background intensity) before use"
    )
    require_finite(image.as_tensor().numpy(), "voxels", path, hint)
    affine = image.affine.numpy()
    if not np.isfinite(affine).all() or np.linalg.matrix_rank(affine[:3, :3]) < 3:
        raise ReadError(
            "the file's geometry (voxel spacing / orientation) is not usable: its affine "
            f"holds NaN, infinite or zero values ({affine[:3, :3].diagonal().tolist()})",
            path,
        )


def _resample(image: MetaTensor, cfg: VolumeSettings, path: Path) -> MetaTensor:
    """``image`` resampled to ``cfg.spacing``, refused before allocation when too large."""
    from monai.data import MetaTensor
    from monai.data.utils import affine_to_spacing
    from monai.transforms import Spacing

    spacing = Spacing(pixdim=cfg.spacing, mode="bilinear")
    # Planned on a zero-stride stand-in of the same shape: the output shape without the data.
    probe = MetaTensor(torch.zeros(()).expand(image.shape), affine=image.affine)
    shape = tuple(
        int(n) for n in Spacing(pixdim=cfg.spacing, lazy=True)(probe).peek_pending_shape()
    )
    source = [round(float(v), 4) for v in affine_to_spacing(image.affine, r=3)]
    refuse_over_limit(
        math.prod(shape),
        cfg.max_voxels,
        f"voxels after resampling (shape {shape}: the file's spacing {source} mm to "
        f"spacing {list(cfg.spacing)})",
        "max_voxels",
        path,
    )
    return spacing(image)


@reads_local  # a URL (polymodal.data.remote) is read from a local copy
def read_volume(path: Path, cfg: VolumeSettings) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read and preprocess one volume.

    Every value returned is finite: NaN or infinite voxels are an error, not passed on.

    Returns:
        voxels: float32 ``(1, D, H, W)`` after orientation, resampling, window and crop/pad.
        spacing: voxel size in mm after preprocessing, in the same axis order as ``D, H, W``.

    Raises:
        ReadError: missing or unreadable file, a folder of NIfTI files, wrong dimensionality,
            unknown npz key, NaN or infinite voxels or geometry, or more voxels (in the file or
            after resampling) than ``cfg.max_voxels``.
    """
    from monai.data.utils import affine_to_spacing
    from monai.transforms import Orientation, ResizeWithPadOrCrop, ScaleIntensityRange

    path = Path(path)
    if not path.exists():
        raise ReadError("file not found", path)
    image = _load(path, cfg)[None]  # (1, D, H, W): MONAI transforms want a channel axis
    _check_source(image, cfg, path)
    if cfg.orientation:
        image = Orientation(axcodes=cfg.orientation, labels=_RAS_LABELS)(image)
    if cfg.spacing is not None:
        image = _resample(image, cfg, path)
    if cfg.window is not None:
        low, high = cfg.window
        image = ScaleIntensityRange(a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)(image)
    if cfg.size is not None:
        image = ResizeWithPadOrCrop(spatial_size=cfg.size)(image)
    spacing = affine_to_spacing(image.affine, r=3).tolist()
    voxels = np.ascontiguousarray(image.as_tensor().numpy(), dtype=np.float32)
    require_finite(voxels, "voxels after preprocessing", path, "the volume's values are too large")
    return voxels, (float(spacing[0]), float(spacing[1]), float(spacing[2]))
