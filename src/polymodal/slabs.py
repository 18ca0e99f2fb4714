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


class _Block:
    """One block: ``data`` (slots, *shape), how many slots were handed out, how many are live."""

    __slots__ = ("data", "kind", "live", "used")

    def __init__(self, data: Tensor, kind: Kind) -> None:
        self.data, self.kind, self.used, self.live = data, kind, 0, 0


class Slabs:
    """Copies of tensors, each a view into a block of slots of its shape and dtype.

    A block lives while any of its views does (a dropped cache frees its blocks); at most one
    partly filled block per shape and dtype is unused memory. A cache that evicts gives a slot
    back with :meth:`free`: the next copy of that shape and dtype reuses it, and a block whose
    slots are all given back is let go, so shapes that stop coming (series of one length, say)
    do not keep memory.

    Args:
        per_block: slots per block.
        block_bytes: also at most this many bytes per block (at least one slot): keeps a block
            of large tensors (volumes) from being ``per_block`` of them at once. None: no limit.
        first_block: the first block of a shape and dtype has this many slots, and each next
            one twice as many, up to ``per_block``: a shape seen once then costs one slot, not
            a block. None: every block has ``per_block`` slots.
    """

    def __init__(
        self, per_block: int = 256, block_bytes: int | None = None, first_block: int | None = None
    ) -> None:
        if per_block < 1:
            raise ValueError(f"per_block must be ≥ 1, got {per_block}")
        self.per_block = per_block
        self.block_bytes = block_bytes
        self.first_block = first_block
        self.blocks = 0  # blocks alive
        self._open: dict[Kind, _Block] = {}  # the block being filled, per shape and dtype
        self._made: dict[Kind, int] = {}  # blocks of a kind alive, for the next one's size
        self._free: dict[Kind, list[tuple[Tensor, _Block]]] = {}
        self._owner: dict[int, _Block] = {}  # a slot's data pointer -> its block

    def copy(self, tensor: Tensor) -> Tensor:
        """A copy of ``tensor`` (any shape, on the CPU) in a free slot: same values, own
        memory, not shared with ``tensor``."""
        if tensor.numel() == 0:  # nothing to keep; no address to tell its slot by
            return tensor.clone()
        kind = (tuple(tensor.shape), tensor.dtype)
        freed = self._free.get(kind)
        if freed:
            slot, block = freed.pop()
            block.live += 1
            return slot.copy_(tensor)
        block = self._open.get(kind)
        if block is None or block.used == len(block.data):
            slots = self._slots_for_next_block(kind, tensor)
            block = self._open[kind] = _Block(torch.empty((slots, *kind[0]), dtype=kind[1]), kind)
            self._made[kind] = self._made.get(kind, 0) + 1
            self.blocks += 1
        slot = block.data[block.used]
        block.used += 1
        block.live += 1
        self._owner[slot.data_ptr()] = block
        return slot.copy_(tensor)

    def free(self, slot: Tensor) -> None:
        """Give back a slot :meth:`copy` returned; its memory is reused, so ``slot`` must not
        be read afterwards."""
        block = self._owner.get(slot.data_ptr()) if slot.numel() else None
        if block is None:
            return
        block.live -= 1
        if block.live > 0:
            self._free.setdefault(block.kind, []).append((slot, block))
            return
        self._release(block)

    def _release(self, block: _Block) -> None:
        """Forget a block none of whose slots is live: its memory goes when the views do."""
        kind = block.kind
        others = [(s, b) for s, b in self._free.get(kind, []) if b is not block]
        if others:
            self._free[kind] = others
        else:
            self._free.pop(kind, None)
        for index in range(block.used):
            self._owner.pop(block.data[index].data_ptr(), None)
        if self._open.get(kind) is block:
            del self._open[kind]
        self.blocks -= 1
        self._made[kind] -= 1
        if self._made[kind] == 0:
            del self._made[kind]

    def _slots_for_next_block(self, kind: Kind, tensor: Tensor) -> int:
        slots = self.per_block
        if self.first_block is not None:
            slots = min(slots, self.first_block * 2 ** self._made.get(kind, 0))
        if self.block_bytes is not None:
            size = max(1, tensor.numel() * tensor.element_size())
            slots = min(slots, self.block_bytes // size)
        return max(1, slots)
