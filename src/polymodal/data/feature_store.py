"""A frozen image backbone's features of each file, keyed by the file's content, so a sample whose
features are stored never loads, decodes or normalises its pixels.

An image encoder with a backbone frozen for good (``image_timm`` with ``freeze: all`` and
``feature_cache: true``, no dihedral views, no adapter) computes the same features for an image
in every epoch, in training and in evaluation. The dataset then hands the model those features
instead of the pixels (:mod:`polymodal.frozen_features` decides when). An entry is keyed by

* the **feature space**: a hash of the backbone's weights (and the feature version), one folder
  ``folder/<space>/`` per backbone;
* the **sample-cache key** of the image file: its content hash (from the file index, computed
  once per file) with the modality's preprocessing fingerprint, so a file replaced under the
  same name, or read with other settings, has another key and is never served an old entry.

Missing entries are computed in batches up front (:meth:`FeatureStore.add`, from
:func:`polymodal.frozen_features.fill_feature_stores`: a frozen backbone runs far faster on a
batch than image by image), or one by one on demand when a file is met that was not there
before (:meth:`FeatureStore.get`), by ``compute`` (the frozen backbone, eval mode, no
gradient), and written to disk (temporary file, then
rename: safe across DataLoader workers and processes). On disk an entry is one safetensors file
whose metadata repeat its key and hold a checksum of its bytes: a file that cannot be read,
belongs to another key, has another shape, or fails its checksum is computed again and
rewritten, never used. Entries read or computed stay in memory up to ``max_bytes``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

logger = logging.getLogger(__name__)

# (M, C, H, W) float32 pixels -> (M, N, C') float32 backbone tokens of those images.
FeatureFn = Callable[[Tensor], Tensor]


def _checksum(tensor: Tensor) -> str:
    return hashlib.blake2b(tensor.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


class FeatureStore:
    """Backbone tokens ``(N, C')`` float32 per image file, for one frozen backbone.

    Args:
        folder: where this backbone's entries live (``<cache>/frozen_features/<space>``).
        feature_shape: ``(N, C')`` of one image's tokens (what an unavailable view gets as zeros).
        compute: the frozen backbone as a function of a batch of images' pixels.
        max_bytes: the most entry bytes kept in memory (beyond it, entries are read from disk).

    Counters (per process): ``hits`` (memory), ``disk_hits``, ``computed``, ``rebuilt`` (bad disk
    entries replaced).
    """

    def __init__(
        self,
        folder: Path | str,
        feature_shape: tuple[int, int],
        compute: FeatureFn,
        max_bytes: int = 4 << 30,
    ) -> None:
        self.folder = Path(folder)
        self.feature_shape = tuple(feature_shape)
        self.compute = compute
        self.max_bytes = max_bytes
        self.held_bytes = 0
        self.entries: dict[str, Tensor] = {}
        self.hits = self.disk_hits = self.computed = self.rebuilt = 0
        self._empty: Tensor | None = None

    def __getstate__(self) -> dict:
        # A DataLoader worker starts with its own (empty) memory and fresh counters.
        state = dict(self.__dict__)
        state.update(entries={}, held_bytes=0, hits=0, disk_hits=0, computed=0, rebuilt=0)
        return state

    def empty(self) -> Tensor:
        """Zeros ``(N, C')`` for a missing view (one shared tensor: read it, never write it)."""
        if self._empty is None:
            self._empty = torch.zeros(self.feature_shape)
        return self._empty

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.safetensors"

    def lookup(self, key: str) -> Tensor | None:
        """The stored tokens of the image file with sample-cache ``key`` (memory, then disk), or
        None when there is no valid entry."""
        if (feature := self.entries.get(key)) is not None:
            self.hits += 1
            return feature
        feature = self._read(key)
        if feature is not None:
            self.disk_hits += 1
            self._hold(key, feature)
        return feature

    def get(self, key: str, load_pixels: Callable[[], Tensor]) -> Tensor:
        """The tokens of the image file with sample-cache ``key``; computed from
        ``load_pixels()`` (``(C, H, W)`` float32) when no valid entry exists."""
        feature = self.lookup(key)
        if feature is None:
            feature = self.add([key], load_pixels()[None])[0]
        return feature

    def add(self, keys: list[str], pixels: Tensor) -> Tensor:
        """Compute, store and return the tokens ``(M, N, C')`` of images ``pixels``
        ``(M, C, H, W)`` whose files have sample-cache ``keys``."""
        with torch.no_grad():
            features = self.compute(pixels).detach().to(torch.float32)
        if tuple(features.shape) != (len(keys), *self.feature_shape):
            raise RuntimeError(
                f"frozen backbone gave features of shape {tuple(features.shape)}, expected "
                f"{(len(keys), *self.feature_shape)}"
            )
        for key, feature in zip(keys, features, strict=True):
            # Its own contiguous storage: an entry never pins the batch, and safetensors needs it.
            feature = feature.clone(memory_format=torch.contiguous_format)
            self._write(key, feature)
            self._hold(key, feature)
        self.computed += len(keys)
        return features

    def _hold(self, key: str, feature: Tensor) -> None:
        size = feature.numel() * feature.element_size()
        if key not in self.entries and self.held_bytes + size <= self.max_bytes:
            self.entries[key] = feature
            self.held_bytes += size

    def _read(self, key: str) -> Tensor | None:
        """The valid entry on disk, or None (absent; a bad one is removed and counted)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
                feature = handle.get_tensor("features")
        except Exception as err:  # truncated, foreign or not safetensors at all
            return self._discard(path, f"unreadable ({type(err).__name__})")
        if meta.get("key") != key:
            return self._discard(path, "written for another file")
        if tuple(feature.shape) != self.feature_shape or feature.dtype != torch.float32:
            return self._discard(path, f"of shape {tuple(feature.shape)} {feature.dtype}")
        if meta.get("checksum") != _checksum(feature):
            return self._discard(path, "damaged (checksum mismatch)")
        return feature

    def _write(self, key: str, feature: Tensor) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        metadata = {"key": key, "checksum": _checksum(feature)}
        save_file({"features": feature}, str(partial), metadata=metadata)
        partial.replace(path)  # atomic: another reader sees the old entry or the new one

    def _discard(self, path: Path, why: str) -> None:
        logger.warning("frozen-feature entry %s is %s; computing it again", path, why)
        self.rebuilt += 1
        path.unlink(missing_ok=True)
        return None
