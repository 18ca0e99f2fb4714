"""Decoded images kept in the sample cache as the 8-bit pixels they came from, when exact.

A decoded image is float32 ``(C, H, W)`` after normalisation (``cfg.normalize``): four bytes a
pixel where the file held one (HAM10000's 54 MB of JPEGs made a cache of gigabytes). When the
float pixels are exactly an 8-bit image put through the spec's normalisation (an 8-bit file
read at its own size with ``imagenet`` or ``none`` normalisation), the cache keeps the uint8
pixels instead and normalises them again on the way out, with the reader's own arithmetic.
:func:`pack_pixels` checks that the round trip gives the same float32 bits before choosing
uint8, so what a model sees never changes; anything else (a resized image, 16-bit or DICOM
pixels, ``minmax``/``zscore``) stays float32.
"""

from __future__ import annotations

import numpy as np
import torch

from polymodal.data.readers.image import IMAGENET_MEAN, IMAGENET_STD, _normalize
from polymodal.data.spec import ImageModality

# The 8-bit scale a PIL-decoded L or RGB image is normalised from (readers.image).
_FULL_SCALE = (0.0, 255.0)


def normalized(pixels_u8: np.ndarray, cfg: ImageModality) -> np.ndarray:
    """``(C, H, W)`` uint8 -> float32 exactly as the image reader normalises an 8-bit file."""
    array = pixels_u8.astype(np.float32)
    _normalize(array, cfg, _FULL_SCALE)
    return array


def _as_8bit(pixels: np.ndarray, cfg: ImageModality) -> np.ndarray | None:
    """The uint8 image whose normalisation gives ``pixels`` bit for bit, or None."""
    if cfg.normalize == "none":
        raw = pixels
    elif cfg.normalize == "imagenet":
        mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
        std = np.asarray(IMAGENET_STD, dtype=np.float32)
        if cfg.channels == 1:
            mean, std = mean.mean(keepdims=True), std.mean(keepdims=True)
        raw = (pixels * std[:, None, None] + mean[:, None, None]) * 255.0
    else:  # per-image statistics: no fixed inverse
        return None
    rounded = np.rint(raw)
    if rounded.min() < 0 or rounded.max() > 255:
        return None
    candidate = rounded.astype(np.uint8)
    again = normalized(candidate, cfg)
    if not np.array_equal(again.view(np.uint32), pixels.view(np.uint32)):
        return None
    return candidate


def pack_pixels(pixels: torch.Tensor, cfg: ImageModality) -> dict[str, torch.Tensor]:
    """A cache entry for float32 ``(C, H, W)`` pixels: ``{"pixels_u8": uint8}`` when exact,
    else ``{"pixels": float32}``."""
    array = np.ascontiguousarray(pixels.numpy(), dtype=np.float32)
    packed = _as_8bit(array, cfg)
    if packed is None:
        return {"pixels": pixels}
    return {"pixels_u8": torch.from_numpy(packed)}


def unpack_pixels(entry: dict[str, torch.Tensor], cfg: ImageModality) -> torch.Tensor:
    """The float32 ``(C, H, W)`` pixels of a cache entry written by :func:`pack_pixels`."""
    if "pixels_u8" in entry:
        return torch.from_numpy(normalized(entry["pixels_u8"].numpy(), cfg))
    return entry["pixels"]
