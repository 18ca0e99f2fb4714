"""Many small long-lived tensors copied into a few large blocks ("slabs").

A cache that keeps one small tensor per image (a frozen prefix's 29 KB output) while a training
loop allocates and frees large transient ones (decoded images, batches) fragments the C heap:
each kept entry lands between freed transient buffers and pins that stretch, so the heap grows by
about one transient buffer per entry. Measured on HAM10000's CPU recipe (6,408 training images,
EfficientNet-Lite0 cut after 5 stages): the process grew about 400 KB per kept 29 KB entry, to
13 GB after six epochs and 24 GB after fourteen, whatever glibc's mmap and trim thresholds.
Copying each entry into a slot of a block allocated once per ``per_block`` entries leaves the
heap nothing to fragment: the blocks are the only long-lived allocations.
"""

from __future__ import annotations

import torch
from torch import Tensor

Kind = tuple[tuple[int, ...], torch.dtype]


class Slabs:
    """Copies of tensors, each a view into a block of ``per_block`` slots of its shape and dtype.

    A block lives while any of its views does (a dropped cache frees its blocks); at most one
    partly filled block per shape and dtype is unused memory. A cache that evicts gives a slot
    back with :meth:`free`, and the next copy of that shape and dtype reuses it.

    Args:
        per_block: slots per block.
        block_bytes: also at most this many bytes per block (at least one slot): keeps a block
            of large tensors (volumes) from being ``per_block`` of them at once. None: no limit.
    """

    def __init__(self, per_block: int = 256, block_bytes: int | None = None) -> None:
        if per_block < 1:
            raise ValueError(f"per_block must be ≥ 1, got {per_block}")
        self.per_block = per_block
        self.block_bytes = block_bytes
        self.blocks = 0
        # (shape, dtype) -> (the block being filled, slots used in it)
        self._open: dict[Kind, tuple[Tensor, int]] = {}
        self._free: dict[Kind, list[Tensor]] = {}

    def copy(self, tensor: Tensor) -> Tensor:
        """A copy of ``tensor`` (any shape, on the CPU) in a free slot: same values, own
        memory, not shared with ``tensor``."""
        kind = (tuple(tensor.shape), tensor.dtype)
        freed = self._free.get(kind)
        if freed:
            slot = freed.pop()
            return slot.copy_(tensor)
        slots = self._slots_per_block(tensor)
        block, used = self._open.get(kind, (None, slots))
        if block is None or used == slots:
            block, used = torch.empty((slots, *kind[0]), dtype=kind[1]), 0
            self.blocks += 1
        slot = block[used]
        slot.copy_(tensor)
        self._open[kind] = (block, used + 1)
        return slot

    def free(self, slot: Tensor) -> None:
        """Give back a slot :meth:`copy` returned; its memory is reused, so ``slot`` must not
        be read afterwards."""
        self._free.setdefault((tuple(slot.shape), slot.dtype), []).append(slot)

    def _slots_per_block(self, tensor: Tensor) -> int:
        if self.block_bytes is None:
            return self.per_block
        size = max(1, tensor.numel() * tensor.element_size())
        return max(1, min(self.per_block, self.block_bytes // size))
