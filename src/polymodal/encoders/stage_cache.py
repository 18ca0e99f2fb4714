"""Outputs of a frozen backbone prefix, per image and dihedral view, in memory and on disk.

Partial fine-tuning (``image_timm`` with ``freeze: "stages:K"`` and ``feature_cache: true``)
runs the frozen prefix (stem + first K stages) once per image and view, and afterwards only the
trainable suffix. Entries are **float16** (half the memory and disk of float32; the suffix sees
the same rounded values whether an entry was just computed or read back, so training and
evaluation agree): EfficientNet-Lite0 cut after 5 of 7 stages holds 112×10×13 values per view
of a 150×200 image, 29 KB.

An entry is keyed by

* the prefix's weights (and the cut, the dtype and :data:`STAGE_CACHE_VERSION`): one cache per
  prefix, shared by every encoder built on it, in ``folder/<prefix hash>/``;
* the image's content: a hash of its pixels as the encoder receives them (after decoding,
  resizing and normalisation), so a file replaced under the same name, or preprocessed another
  way, has another key and is never served an old entry;
* the view (0..7, :mod:`polymodal.data.views`).

On disk an entry is one safetensors file whose metadata repeat its key and hold a checksum of
its bytes; a file that cannot be read, belongs to another key, has another shape or dtype, or
fails its checksum is computed again and rewritten, never used.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from polymodal.errors import ModelError
from polymodal.freezing import is_kept_in_eval
from polymodal.slabs import Slabs

STAGE_CACHE_VERSION = 1
DTYPE = torch.float16
Key = tuple[bytes, int]  # (image content hash, view)


def content_key(image: Tensor) -> bytes:
    """A 16-byte hash of one image's pixels (C, H, W), its shape and dtype included."""
    array = image.detach().cpu().contiguous()
    digest = hashlib.blake2b(f"{tuple(array.shape)} {array.dtype}".encode(), digest_size=16)
    digest.update(array.numpy().tobytes())
    return digest.digest()


def _checksum(tensor: Tensor) -> str:
    return hashlib.blake2b(tensor.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


class StageCache:
    """Frozen-prefix outputs keyed by (image content, view); see the module docstring.

    Keeps new entries in memory until ``max_bytes`` are held (then only on disk, or recomputed).
    Counters: ``hits`` (memory), ``disk_hits``, ``misses`` (computed), ``rebuilt`` (bad disk
    entries replaced).
    """

    _caches: ClassVar[dict[str, StageCache]] = {}

    def __init__(self, folder: Path | None = None, max_bytes: int = 4 << 30) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.held_bytes = 0
        self.entries: dict[Key, Tensor] = {}
        # Entries are copied into large blocks: kept one by one they fragment the heap (slabs.py).
        self._slabs = Slabs()
        self.hits = self.disk_hits = self.misses = self.rebuilt = 0

    @classmethod
    def for_prefix(
        cls, backbone: nn.Module, prefix: tuple[str, ...], folder: Path | None = None
    ) -> StageCache:
        """The cache of ``backbone``'s frozen modules ``prefix`` (frozen for good: no gradient,
        held in eval mode by :func:`polymodal.freezing.freeze`)."""
        modules = [backbone.get_submodule(name) for name in prefix]
        if any(p.requires_grad for m in modules for p in m.parameters()) or not all(
            is_kept_in_eval(m) for m in modules
        ):
            raise ModelError(
                "the stage cache needs a frozen prefix (polymodal.freezing.freeze); its outputs "
                "would change as it trains"
            )
        digest = hashlib.blake2b(type(backbone).__name__.encode(), digest_size=16)
        digest.update(f"stage cache v{STAGE_CACHE_VERSION} {DTYPE} {prefix}".encode())
        for name in prefix:
            for tensor_name, tensor in backbone.get_submodule(name).state_dict().items():
                digest.update(f"{name}.{tensor_name}".encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        name = digest.hexdigest()
        cache = cls._caches.setdefault(name, cls())
        if folder is not None and cache.folder is None:
            cache.folder = Path(folder) / f"stages-{name}"
        return cache

    def _path(self, key: Key) -> Path:
        assert self.folder is not None
        content = key[0].hex()
        return self.folder / content[:2] / f"{content}-v{key[1]}.safetensors"

    def _read(self, key: Key, shape: tuple[int, ...]) -> Tensor | None:
        """The entry saved for ``key``, or None when absent or not to be trusted (see module)."""
        if self.folder is None:
            return None
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as entry:
                meta = entry.metadata() or {}
                tensor = entry.get_tensor("prefix")
            valid = (
                meta.get("content") == key[0].hex()
                and meta.get("view") == str(key[1])
                and tensor.dtype == DTYPE
                and tuple(tensor.shape) == shape
                and meta.get("checksum") == _checksum(tensor)
            )
        except Exception:  # truncated or foreign: recomputing repairs it
            valid = False
        if not valid:
            self.rebuilt += 1
            return None
        return tensor

    def _write(self, key: Key, tensor: Tensor) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"content": key[0].hex(), "view": str(key[1]), "checksum": _checksum(tensor)}
        # Write then rename: a reader in another process never sees half a file.
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        save_file({"prefix": tensor.contiguous()}, str(partial), metadata=meta)
        partial.replace(path)

    def _remember(self, key: Key, tensor: Tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if self.held_bytes + size <= self.max_bytes:
            self.entries[key] = self._slabs.copy(tensor)
            self.held_bytes += size

    @torch.no_grad()
    def features(
        self,
        images: Tensor,
        views: Tensor,
        compute: Callable[[Tensor, Tensor], Tensor],
        shape: tuple[int, ...],
        fill_views: Sequence[int] = (),
    ) -> Tensor:
        """Prefix outputs (M, C', h, w) float16 of ``images`` (M, C, H, W) in ``views`` (M,).

        ``compute(images, views)`` runs the prefix on the entries not held yet; ``shape`` is
        one entry's (C', h, w), for checking disk entries. ``fill_views``: when an image misses,
        also compute and keep these other views of it (training with random views: the cache
        is complete after one epoch instead of filling over the next several).
        """
        keys = [
            (content_key(image), int(v)) for image, v in zip(images, views.tolist(), strict=True)
        ]
        found: dict[int, Tensor] = {}
        for i, key in enumerate(keys):
            if key in self.entries:
                found[i] = self.entries[key]
                self.hits += 1
            elif (tensor := self._read(key, shape)) is not None:
                found[i] = tensor
                self.disk_hits += 1
                self._remember(key, tensor)
        todo = [i for i in range(len(keys)) if i not in found]
        if todo and fill_views:
            self._fill_other_views(images[todo], keys, todo, compute, fill_views)
        if todo:
            index = torch.tensor(todo, device=images.device)
            computed = compute(images[index], views.to(images.device)[index]).to(DTYPE).cpu()
            self.misses += len(todo)
            for i, tensor in zip(todo, computed.unbind(0), strict=True):
                found[i] = tensor  # a view of this batch's output, used once below
                if self.folder is not None:
                    self._write(keys[i], tensor)
                self._remember(keys[i], tensor)
        return torch.stack([found[i] for i in range(len(keys))]).to(images.device)

    def _fill_other_views(
        self,
        images: Tensor,
        keys: list[Key],
        todo: list[int],
        compute: Callable[[Tensor, Tensor], Tensor],
        fill_views: Sequence[int],
    ) -> None:
        """Compute and keep every view in ``fill_views`` of the missed ``images`` (M, C, H, W)
        (positions ``todo`` of ``keys``) other than the one asked for."""
        pairs = [
            (j, (keys[i][0], v))
            for j, i in enumerate(todo)
            for v in fill_views
            if v != keys[i][1] and (keys[i][0], v) not in self.entries
        ]
        for start in range(0, len(pairs), len(todo)):  # batches the size of the missed ones
            chunk = pairs[start : start + len(todo)]
            index = torch.tensor([j for j, _ in chunk], device=images.device)
            views = torch.tensor([key[1] for _, key in chunk], device=images.device)
            computed = compute(images[index], views).to(DTYPE).cpu()
            self.misses += len(chunk)
            for (_, key), tensor in zip(chunk, computed.unbind(0), strict=True):
                if self.folder is not None:
                    self._write(key, tensor)
                self._remember(key, tensor)
