"""One reader per modality kind; each is a pure function of (path or cell, config).

Every reader raises :class:`polymodal.errors.ReadError` with a short, user-facing reason and the
path it was reading, e.g. ``images/a.jpg: not a decodable PNG/JPEG image (truncated?)``.
"""

from __future__ import annotations

from polymodal.data.readers.image import IMAGENET_MEAN, IMAGENET_STD, read_image
from polymodal.data.readers.series import read_series
from polymodal.data.readers.text import read_text
from polymodal.data.readers.volume import read_volume

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "read_image",
    "read_series",
    "read_text",
    "read_volume",
]
