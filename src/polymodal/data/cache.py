"""On-disk cache of decoded, preprocessed files, so the second epoch decodes no DICOM or NIfTI.

An entry holds the tensors made from one file (an image view, a volume, a series) and is keyed
by the file's **content** (blake2b of its bytes; a DICOM series folder hashes its files' names
and bytes in sorted order) together with the preprocessing fingerprint of the modality (reader
settings and fitted values). A moved file still hits; an edited file or a changed setting
misses. Each file is hashed once: :class:`polymodal.data.file_index.FileIndex`
(``file_index.sqlite`` in the cache folder) remembers the hash under the file's size and
modification time, and hashes again only when those change. Entries are safetensors files written to a temporary name and renamed into place, so
two DataLoader workers writing the same key never leave half a file; an entry that cannot be
read back is rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from polymodal.data.file_index import INDEX_NAME, FileIndex, content_hash

__all__ = ["SampleCache", "content_hash"]

logger = logging.getLogger(__name__)


class SampleCache:
    """Tensors per (file content, preprocessing fingerprint) under ``folder``.

    Args:
        folder: where entries live (created when missing); safe to share between processes.

    Counters ``hits``, ``misses`` and ``rebuilt`` (corrupted entries) are per process.
    """

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self.rebuilt = 0
        self.files = FileIndex(self.folder / INDEX_NAME)

    def __getstate__(self) -> dict:
        # DataLoader workers start with fresh counters (the index opens its own connection).
        return {**self.__dict__, "hits": 0, "misses": 0, "rebuilt": 0}

    def content_key(self, path: Path | str) -> str:
        """The content hash of ``path`` (a file or a DICOM series folder), from the file index."""
        return self.files.content_key(path)

    def key(self, path: Path | str, fingerprint: str) -> str:
        """The entry key of ``path`` (a file or a DICOM series folder) under ``fingerprint``."""
        return hashlib.blake2b(
            f"{self.content_key(path)}:{fingerprint}".encode(), digest_size=20
        ).hexdigest()

    def entry_path(self, key: str) -> Path:
        # Two-character shards keep any one folder from holding every entry.
        return self.folder / key[:2] / f"{key}.safetensors"

    def get(self, key: str, fields: Iterable[str] = ()) -> dict[str, torch.Tensor] | None:
        """The entry's tensors, or None when absent or unreadable (an unreadable one is removed).

        ``fields`` that must be present; an entry missing one counts as corrupted.
        """
        entry = self.entry_path(key)
        if not entry.is_file():
            return None
        try:
            tensors = load_file(entry)
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            return self._discard(entry, f"unreadable ({type(err).__name__}: {err})")
        missing = [f for f in fields if f not in tensors]
        if missing:
            return self._discard(entry, f"lacks {missing}")
        return tensors

    def put(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        """Store ``tensors`` under ``key``: write a temporary file, then rename it into place."""
        entry = self.entry_path(key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=entry.parent, prefix=f".{key}.", suffix=".tmp")
        os.close(handle)
        try:
            save_file({k: v.contiguous() for k, v in tensors.items()}, temp)
            # Atomic on one file system: a concurrent reader sees the old entry or the new one.
            os.replace(temp, entry)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def load_or_compute(
        self,
        path: Path | str,
        fingerprint: str,
        compute: Callable[[], dict[str, torch.Tensor]],
        fields: Iterable[str] = (),
    ) -> dict[str, torch.Tensor]:
        """The cached tensors of ``path``, or ``compute()`` stored for next time.

        ``fields``: tensor names a valid entry holds. A path that does not exist is not cached:
        ``compute`` runs (and its reader reports the missing file).
        """
        if not Path(path).exists():
            return compute()
        key = self.key(path, fingerprint)
        cached = self.get(key, fields)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        tensors = compute()
        self.put(key, tensors)
        return tensors

    def _discard(self, entry: Path, why: str) -> None:
        logger.warning("sample cache entry %s is %s; rebuilding it", entry, why)
        self.rebuilt += 1
        entry.unlink(missing_ok=True)
        return None
