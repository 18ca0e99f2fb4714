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

A URL on object storage (:class:`polymodal.data.remote.RemoteFile`) is keyed by what the storage
says of the object (ETag or checksum, else size and modification time, with the URL), looked up
once per process every ten minutes at most, so a hit downloads nothing.

Large cohorts: ``max_bytes`` caps the entries' bytes on disk (:mod:`polymodal.data.cache_index`
keeps sizes, last uses and the hit/miss counts of every process sharing the folder). Policy
``lru`` evicts the least recently used entries past it; ``keep`` stores entries until the cap is
reached and then no more. An epoch reads every row once in a new order, so under ``lru`` a cap
below one epoch's entries evicts most entries before their next read (measured: a cap at half
the epoch kept 9 % of the hits); ``keep`` holds a fixed part of the cohort and hits it every
epoch, about the cap's share of the reads. ``compress`` stores entries compressed, bit-exact
(:mod:`polymodal.data.cache_codec`).

Hits from the second epoch on: ``memory_bytes`` keeps entries in memory as well
(:mod:`polymodal.data.memory_tier`, per process), so a hit reads no file; inside
:meth:`SampleCache.hits_in_one_transaction` (a batch of a DataLoader) the hits are recorded in
one SQLite transaction at its end instead of one each. Either way every hit is counted and
refreshes its entry's last use before the batch is handed on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, get_args

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from polymodal.data.cache_codec import decode, encode
from polymodal.data.cache_index import ENTRIES_NAME, EntryIndex
from polymodal.data.file_index import INDEX_NAME, FileIndex, content_hash
from polymodal.data.memory_tier import MemoryTier
from polymodal.data.remote import RemoteFile

__all__ = ["CACHE_POLICIES", "CachePolicy", "SampleCache", "content_hash"]

CachePolicy = Literal["lru", "keep"]
CACHE_POLICIES: tuple[str, ...] = get_args(CachePolicy)

logger = logging.getLogger(__name__)

# How long a URL's looked-up version is trusted before the storage is asked again.
_REMOTE_KEY_SECONDS = 600.0


class SampleCache:
    """Tensors per (file content, preprocessing fingerprint) under ``folder``.

    Args:
        folder: where entries live (created when missing); safe to share between processes.
        max_bytes: cap on the entries' bytes on disk; the least recently used are evicted past
            it (None: no cap).
        compress: write new entries compressed (lossless); entries of either form are read.
        policy: what a cap does when full: ``"lru"`` evicts the least recently used entries,
            ``"keep"`` stores no more (see the module docstring for when each pays).
        memory_bytes: also keep up to this many bytes of entries in this process's memory
            (0: none); hits on them read no file.

    Counters ``hits``, ``misses`` and ``rebuilt`` (corrupted entries) are per process;
    :meth:`counts` gives the hits and misses of every process sharing the folder.
    """

    def __init__(
        self,
        folder: Path | str,
        max_bytes: int | None = None,
        compress: bool = False,
        policy: CachePolicy = "lru",
        memory_bytes: int = 0,
    ) -> None:
        if policy not in CACHE_POLICIES:
            raise ValueError(f"cache policy must be one of {CACHE_POLICIES}, got {policy!r}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.policy = policy
        self.compress = compress
        self.hits = 0
        self.misses = 0
        self.rebuilt = 0
        self.files = FileIndex(self.folder / INDEX_NAME)
        self.entries = EntryIndex(self.folder / ENTRIES_NAME, self.folder)
        self._remote_keys: dict[str, tuple[str, float]] = {}
        self.memory = MemoryTier(memory_bytes)
        # Hits not yet recorded in the index: (key, bytes on disk, or None when from memory).
        self._pending: list[tuple[str, int | None]] | None = None

    def __getstate__(self) -> dict:
        # DataLoader workers start with fresh counters (the index opens its own connection)
        # and an empty memory tier (MemoryTier pickles its budget only).
        return {
            **self.__dict__,
            "hits": 0,
            "misses": 0,
            "rebuilt": 0,
            "_remote_keys": {},
            "_pending": None,
        }

    @contextmanager
    def hits_in_one_transaction(self) -> Iterator[None]:
        """Record the hits made inside in one index transaction when it ends (also on error)."""
        if self._pending is not None:  # nested: the outer one records
            yield
            return
        self._pending = []
        try:
            yield
        finally:
            pending, self._pending = self._pending, None
            self.entries.used_many(pending)

    def _hit(self, key: str, size: int | None) -> None:
        if self._pending is None:
            self.entries.used_many([(key, size)])
        else:
            self._pending.append((key, size))

    def counts(self) -> tuple[int, int]:
        """``(hits, misses)`` of every process using this folder (loader workers, DDP ranks,
        other runs sharing it) since the cache was made."""
        return self.entries.counts()

    def content_key(self, path: Path | str | RemoteFile) -> str:
        """The content hash of ``path`` (a file or a DICOM series folder), from the file index;
        for a URL, the key of the object's version (:meth:`RemoteFile.content_key`).

        Raises:
            FileNotFoundError: nothing at ``path``.
        """
        if not isinstance(path, RemoteFile):
            return self.files.content_key(path)
        known = self._remote_keys.get(path.url)
        if known is not None and time.monotonic() - known[1] < _REMOTE_KEY_SECONDS:
            return known[0]
        key = path.content_key()
        self._remote_keys[path.url] = (key, time.monotonic())
        return key

    def key(self, path: Path | str | RemoteFile, fingerprint: str) -> str:
        """The entry key of ``path`` (a file or a DICOM series folder) under ``fingerprint``."""
        return hashlib.blake2b(
            f"{self.content_key(path)}:{fingerprint}".encode(), digest_size=20
        ).hexdigest()

    def entry_path(self, key: str, compressed: bool | None = None) -> Path:
        """Where the entry of ``key`` is written (compressed: as ``compress`` says when None)."""
        compressed = self.compress if compressed is None else compressed
        # Two-character shards keep any one folder from holding every entry.
        return self.folder / key[:2] / f"{key}{'.stz' if compressed else '.safetensors'}"

    def get(self, key: str, fields: Iterable[str] = ()) -> dict[str, torch.Tensor] | None:
        """The entry's tensors, or None when absent or unreadable (an unreadable one is removed).

        ``fields`` that must be present; an entry missing one counts as corrupted. A found entry
        becomes the most recently used. An entry in the other form (compressed or not) is read
        too, so turning compression on or off keeps the cache. The memory tier is asked first.
        """
        fields = tuple(fields)
        kept = self.memory.get(key)
        if kept is not None and all(f in kept for f in fields):
            self._hit(key, None)
            return kept
        for entry in (self.entry_path(key), self.entry_path(key, not self.compress)):
            try:
                size = entry.stat().st_size
                tensors = load_file(entry) if entry.suffix != ".stz" else decode(entry.read_bytes())
            except FileNotFoundError:  # absent, or evicted by another process meanwhile
                continue
            except (SafetensorError, OSError, ValueError, RuntimeError, zlib.error) as err:
                return self._discard(entry, f"unreadable ({type(err).__name__}: {err})")
            missing = [f for f in fields if f not in tensors]
            if missing:
                return self._discard(entry, f"lacks {missing}")
            self._hit(key, size)
            self.memory.put(key, tensors)
            return tensors
        return None

    def put(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        """Store ``tensors`` under ``key``: write a temporary file, then rename it into place;
        then evict the least recently used entries past ``max_bytes`` (policy ``lru``). Under
        ``keep`` an entry that would pass ``max_bytes`` is not stored."""
        entry = self.entry_path(key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        data = encode(tensors, self.compress)
        handle, temp = tempfile.mkstemp(dir=entry.parent, prefix=f".{key}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)

            def publish() -> None:
                # Atomic on one file system: a concurrent reader sees the old entry or the new.
                os.replace(temp, entry)
                self.entry_path(key, not self.compress).unlink(missing_ok=True)

            keep = self.policy == "keep" and self.max_bytes is not None
            stored = self.entries.added(
                key, len(data), publish, room=self.max_bytes if keep else None
            )
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        self.memory.put(key, tensors)
        if not stored:  # the cap is reached under "keep": the entry is not kept on disk
            Path(temp).unlink(missing_ok=True)
        elif self.max_bytes is not None and self.policy == "lru":
            self.entries.evict(self.max_bytes, self._remove)

    def _remove(self, key: str) -> None:
        for compressed in (False, True):
            self.entry_path(key, compressed).unlink(missing_ok=True)

    def load_or_compute(
        self,
        path: Path | str | RemoteFile,
        fingerprint: str,
        compute: Callable[[], dict[str, torch.Tensor]],
        fields: Iterable[str] = (),
    ) -> dict[str, torch.Tensor]:
        """The cached tensors of ``path``, or ``compute()`` stored for next time.

        ``fields``: tensor names a valid entry holds. A path that does not exist is not cached:
        ``compute`` runs (and its reader reports the missing file).
        """
        try:
            key = self.key(path, fingerprint)
        except (FileNotFoundError, NotADirectoryError):
            return compute()
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
        self.memory.discard(entry.name.split(".", 1)[0])
        entry.unlink(missing_ok=True)
        return None
