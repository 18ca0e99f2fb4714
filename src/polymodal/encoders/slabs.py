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


class Slabs:
    """Copies of tensors, each a view into a block of ``per_block`` slots of its shape and dtype.

    A block lives while any of its views does (a dropped cache frees its blocks); at most one
    partly filled block per shape and dtype is unused memory.
    """

    def __init__(self, per_block: int = 256) -> None:
        if per_block < 1:
            raise ValueError(f"per_block must be ≥ 1, got {per_block}")
        self.per_block = per_block
        self.blocks = 0
        # (shape, dtype) -> (the block being filled, slots used in it)
        self._open: dict[tuple[tuple[int, ...], torch.dtype], tuple[Tensor, int]] = {}

    def copy(self, tensor: Tensor) -> Tensor:
        """A copy of ``tensor`` (any shape, on the CPU) in the next free slot: same values, own
        memory, not shared with ``tensor``."""
        kind = (tuple(tensor.shape), tensor.dtype)
        block, used = self._open.get(kind, (None, self.per_block))
        if block is None or used == self.per_block:
            block, used = torch.empty((self.per_block, *kind[0]), dtype=kind[1]), 0
            self.blocks += 1
        slot = block[used]
        slot.copy_(tensor)
        self._open[kind] = (block, used + 1)
        return slot
