"""Sample-cache entries on disk: plain safetensors, or the same bytes compressed losslessly.

A compressed entry (``train.cache_compress: true``) is the safetensors file's bytes, byte-shuffled
in groups of four (the first bytes of every float32, then the second bytes, …, as Blosc does:
the exponent bytes of neighbouring values repeat, which zlib then finds) and deflated with zlib
at level 1. Decompressing gives the very bytes that were written, so every tensor comes back bit
for bit, whatever its dtype. Measured ratios are in ``bench/results/cache_compression.md``:
about 1.4× on decoded photographs, far more on volumes with air or padding.

Layout: ``PMZ1`` + the payload's length (8 bytes, little-endian) + the zlib stream.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from safetensors.torch import load, save

MAGIC = b"PMZ1"
_GROUP = 4  # bytes of a float32: the dtype of almost every decoded tensor
_LEVEL = 1  # level 6 saves a few per cent more at twice the time


def encode(tensors: dict[str, torch.Tensor], compress: bool) -> bytes:
    """The entry file's bytes for ``tensors``."""
    payload = save({k: v.contiguous() for k, v in tensors.items()})
    if not compress:
        return payload
    size = len(payload)
    padded = np.frombuffer(payload + b"\0" * (-size % _GROUP), dtype=np.uint8)
    shuffled = padded.reshape(-1, _GROUP).T.tobytes()
    return MAGIC + size.to_bytes(8, "little") + zlib.compress(shuffled, _LEVEL)


def decode(data: bytes) -> dict[str, torch.Tensor]:
    """The tensors of an entry file's bytes, compressed or not.

    Raises:
        ValueError, zlib.error, SafetensorError: the bytes are damaged.
    """
    if not data.startswith(MAGIC):
        return load(data)
    size = int.from_bytes(data[4:12], "little")
    shuffled = np.frombuffer(zlib.decompress(data[12:]), dtype=np.uint8)
    if shuffled.size != size + (-size % _GROUP):
        raise ValueError(f"the entry holds {shuffled.size} bytes, its header says {size}")
    payload = shuffled.reshape(_GROUP, -1).T.tobytes()[:size]
    return load(payload)
