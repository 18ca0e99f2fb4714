"""2D image reader: PNG/JPEG (8 and 16 bit) through Pillow, single-file DICOM through pydicom.

:func:`read_image` is a pure function of (path, config) so the dataset and the cache can call it
again for the same sample and get the same array.

Non-finite values: an image with a NaN or infinite pixel (a float TIFF, a DICOM whose
RescaleSlope or RescaleIntercept is NaN or infinite) is refused with a :class:`ReadError` that
counts them; no NaN ever leaves this reader. The image size is checked against
``max_pixels`` before the pixels are decoded.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from polymodal.data.readers._checks import refuse_over_limit, require_finite
from polymodal.data.remote import reads_local
from polymodal.errors import ReadError


class ImageSettings(Protocol):
    """What the image reader uses of an image modality's spec section."""

    channels: int
    size: tuple[int, int]
    normalize: str
    max_pixels: int


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ITU-R BT.601 luma weights, the same Pillow uses for RGB -> L.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_DICOM_SUFFIXES = {".dcm", ".dicom"}


def _is_dicom(path: Path) -> bool:
    """DICOM by suffix, or by the "DICM" marker after the 128-byte preamble."""
    if path.suffix.lower() in _DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError as err:
        raise ReadError(f"cannot read the file: {err.strerror or err}", path) from None
    return head[128:132] == b"DICM"


def _decode_pil(path: Path, max_pixels: int) -> tuple[np.ndarray, float]:
    """Pixels ``(H, W, C)`` float32 and the largest value the file's sample type can hold."""
    try:
        with Image.open(path) as img:
            # open() reads only the header: refuse a huge image before its pixels are decoded.
            width, height = img.size
            refuse_over_limit(width * height, max_pixels, "pixels", "max_pixels", path)
            # load() forces the full decode, so a truncated file fails here and not later.
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
                array, full_scale = np.asarray(img, dtype=np.uint16), 65535.0
            elif img.mode == "I":
                # 16-bit greyscale PNGs may arrive as 32-bit ints; their scale is still 16 bit.
                array, full_scale = np.asarray(img, dtype=np.int32), 65535.0
            elif img.mode == "F":
                array = np.asarray(img, dtype=np.float32)
                full_scale = float(max(array.max(), 1.0))
            else:
                if img.mode not in ("L", "RGB"):
                    # Palette, 1-bit, CMYK, alpha: drop to the plain 8-bit layout they display as.
                    img = img.convert("RGB" if img.mode not in ("1", "LA") else "L")
                array, full_scale = np.asarray(img, dtype=np.uint8), 255.0
    except UnidentifiedImageError:
        raise ReadError("not an image Pillow can open (expected PNG/JPEG or DICOM)", path) from None
    except Image.DecompressionBombError as err:
        # Pillow's own guard, above ~179 megapixels whatever max_pixels says.
        raise ReadError(f"Pillow refuses to decode so large an image: {err}", path) from None
    except (OSError, SyntaxError, ValueError, TypeError, IndexError, struct.error) as err:
        # Pillow's decoders raise these (TypeError, IndexError and struct.error from damaged
        # headers of the rarer formats) for files they cannot decode.
        raise ReadError(f"not a decodable PNG/JPEG image (truncated?): {err}", path) from None
    array = array.astype(np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    return array, full_scale


def _decode_dicom(path: Path, max_pixels: int) -> tuple[np.ndarray, tuple[float, float]]:
    """Pixels ``(H, W, C)`` float32 after rescale slope/intercept, and their possible range."""
    import pydicom

    try:
        return _dicom_pixels(pydicom.dcmread(path), path, max_pixels)
    except ReadError:
        raise
    except Exception as err:  # pydicom raises many types for a damaged file or element
        raise ReadError(f"not a readable DICOM file: {type(err).__name__}: {err}", path) from None


def _dicom_number(ds: Any, keyword: str, default: float, path: Path) -> float:
    """A numeric header value (e.g. RescaleSlope); ReadError unless it is a finite number."""
    raw = getattr(ds, keyword, None)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ReadError(f"DICOM {keyword} {raw!r} is not a number", path) from None
    if not np.isfinite(value):
        raise ReadError(
            f"DICOM {keyword} is {value}, so every pixel would be NaN or infinite; "
            "the file's header is damaged",
            path,
        )
    return value


def _dicom_pixels(ds: Any, path: Path, max_pixels: int) -> tuple[np.ndarray, tuple[float, float]]:
    if "PixelData" not in ds:
        modality = getattr(ds, "Modality", None) or getattr(ds, "SOPClassUID", "unknown type")
        raise ReadError(f"DICOM has no pixel data; it is not an image (Modality {modality})", path)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ReadError(
            f"expected a single 2D image, got a DICOM with {frames} frames; "
            "declare it as a volume modality",
            path,
        )
    rows, columns = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
    refuse_over_limit(rows * columns, max_pixels, "pixels", "max_pixels", path)
    slope = _dicom_number(ds, "RescaleSlope", 1.0, path) or 1.0
    intercept = _dicom_number(ds, "RescaleIntercept", 0.0, path)
    try:
        array = ds.pixel_array.astype(np.float32)
    except Exception as err:  # pydicom raises many types for bad or unsupported pixel data
        raise ReadError(f"DICOM pixel data cannot be decoded: {err}", path) from None
    bits = int(getattr(ds, "BitsStored", 8) or 8)
    signed = int(getattr(ds, "PixelRepresentation", 0) or 0) == 1
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    array = array * slope + intercept
    low, high = sorted((low * slope + intercept, high * slope + intercept))
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        # MONOCHROME1 shows low values as white: flip so bright means dense, as in MONOCHROME2.
        array = high + low - array
    if array.ndim == 2:
        array = array[:, :, None]
    return array, (low, high)


def _to_channels(array: np.ndarray, channels: int) -> np.ndarray:
    """``(H, W, C_in)`` -> ``(H, W, channels)``: grey repeated to RGB, RGB to luma."""
    c_in = array.shape[2]
    if c_in == channels:
        return array
    if channels == 3:
        return np.repeat(array[:, :, :1], 3, axis=2)
    return (array[:, :, :3] @ _LUMA)[:, :, None]


def _normalize(array: np.ndarray, cfg: ImageSettings, value_range: tuple[float, float]) -> None:
    """Normalise ``(C, H, W)`` in place as ``cfg.normalize`` says."""
    if cfg.normalize == "imagenet":
        low, high = value_range
        array -= low
        array /= max(high - low, 1e-6)
        mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
        std = np.asarray(IMAGENET_STD, dtype=np.float32)
        if cfg.channels == 1:
            mean, std = mean.mean(keepdims=True), std.mean(keepdims=True)
        array -= mean[:, None, None]
        array /= std[:, None, None]
    elif cfg.normalize == "minmax":
        low, high = float(array.min()), float(array.max())
        array -= low
        array /= max(high - low, 1e-6)
    elif cfg.normalize == "zscore":
        array -= float(array.mean())
        array /= max(float(array.std()), 1e-6)


@reads_local  # a URL (polymodal.data.remote) is read from a local copy
def read_image(path: Path, cfg: ImageSettings) -> np.ndarray:
    """Read one 2D image as float32 ``(C, H, W)`` with ``C = cfg.channels``, ``(H, W) = cfg.size``.

    Every value returned is finite: NaN or infinite pixels are an error, not passed on.

    Raises:
        ReadError: the file is missing, not an image, truncated, larger than ``cfg.max_pixels``,
            a DICOM without pixel data or with several frames, or its pixels (after DICOM
            rescaling, or after normalisation) are not all finite.
    """
    path = Path(path)
    if not path.is_file():
        raise ReadError("file not found" if not path.exists() else "not a file", path)
    if _is_dicom(path):
        array, value_range = _decode_dicom(path, cfg.max_pixels)
    else:
        array, full_scale = _decode_pil(path, cfg.max_pixels)
        value_range = (0.0, full_scale)
    if array.size == 0:
        raise ReadError(f"the image holds no pixels (shape {array.shape[:2]})", path)
    require_finite(array, "pixels", path)
    array = _to_channels(array, cfg.channels)  # (H, W, C)
    chw = np.ascontiguousarray(array.transpose(2, 0, 1))  # (C, H, W)
    if chw.shape[1:] != tuple(cfg.size):
        # Antialiased bilinear (Pillow's filter) averages over the pixels an output pixel covers
        # when shrinking, so fine texture doesn't alias; plain interpolation when enlarging.
        resized = F.interpolate(
            torch.from_numpy(chw)[None],  # (1, C, H_in, W_in)
            size=tuple(cfg.size),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        chw = resized[0].numpy()  # (C, H, W)
    chw = np.ascontiguousarray(chw, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported just below
        _normalize(chw, cfg, value_range)
    # Finite pixels can still overflow float32 when normalised (a float image near 3e38).
    require_finite(chw, "pixels after normalisation", path, "the image's values are too large")
    return chw
