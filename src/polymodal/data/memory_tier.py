"""The sample cache's entries kept in memory, up to a byte budget, least recently used first out.

From the second epoch on every row's entry is a hit; read from disk, a hit costs a ``stat``, a
safetensors read and fresh tensors (about 0.2 ms a row on a 2-core machine, 7 % of a small
model's epoch). The memory tier keeps what was read or written under the same key (the file's
content hash and the preprocessing fingerprint, so an edited file gets a new key and never sees
the old tensors) and hands out copies, so whatever a reader does to its tensors (an in-place
augmentation, a normalisation) never reaches the kept ones.

Kept tensors are copied into slots of large blocks (:mod:`polymodal.slabs`), and an evicted
entry's slots are reused: one allocation per kept entry, between a training loop's large
transient buffers, would fragment the C heap (see there). Each process has its own tier: a
DataLoader worker starts with an empty one (pickling drops it), so the budget is per process.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from polymodal.slabs import Slabs

# Blocks of at most 16 MB: a block of small images holds many, one of volumes a few.
_BLOCK_BYTES = 16 * 2**20


def _slabs() -> Slabs:
    # Blocks of 1, 2, 4, ... slots per shape: a shape seen once (a series of its own length)
    # costs one entry, while a cohort's many same-sized images soon share large blocks.
    return Slabs(block_bytes=_BLOCK_BYTES, first_block=1)


def entry_bytes(tensors: dict[str, torch.Tensor]) -> int:
    """Bytes of an entry's tensors in memory."""
    return sum(t.numel() * t.element_size() for t in tensors.values())


class MemoryTier:
    """``key -> {name: tensor}``, at most ``max_bytes`` of tensors, least recently used evicted.

    Args:
        max_bytes: the budget; 0 keeps nothing. An entry larger than the budget is not kept.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"memory tier budget must be >= 0 bytes, got {max_bytes}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, tuple[dict[str, torch.Tensor], int]] = OrderedDict()
        self._slabs = _slabs()

    def __len__(self) -> int:
        return len(self._entries)

    def __getstate__(self) -> dict:
        # A worker process gets the budget, not the parent's tensors.
        return {
            "max_bytes": self.max_bytes,
            "bytes": 0,
            "_entries": OrderedDict(),
            "_slabs": _slabs(),
        }

    def get(self, key: str) -> dict[str, torch.Tensor] | None:
        """A copy of the entry's tensors (it becomes the most recently used), or None."""
        found = self._entries.get(key)
        if found is None:
            return None
        self._entries.move_to_end(key)
        return {name: t.clone() for name, t in found[0].items()}

    def put(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        """Keep a copy of ``tensors`` under ``key``, evicting the least recently used past the
        budget."""
        size = entry_bytes(tensors)
        if size > self.max_bytes:
            return
        self.discard(key)
        while self._entries and self.bytes + size > self.max_bytes:
            self.discard(next(iter(self._entries)))  # the least recently used
        kept = {name: self._slabs.copy(t.detach().cpu()) for name, t in tensors.items()}
        self._entries[key] = (kept, size)
        self.bytes += size

    def discard(self, key: str) -> None:
        """Forget ``key`` (nothing when absent); its slots are reused."""
        found = self._entries.pop(key, None)
        if found is None:
            return
        self.bytes -= found[1]
        for slot in found[0].values():
            self._slabs.free(slot)
