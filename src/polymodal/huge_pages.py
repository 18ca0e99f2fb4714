"""Transparent huge pages for large tensors, switched on before torch is imported.

On Linux, PyTorch's CPU allocator can back every tensor of 2 MiB or more with transparent huge
pages (``THP_MEM_ALLOC_ENABLE=1``, read once, when torch first allocates). A batch of frozen image
features (64 × 35 × 1280 float32, 11.5 MB) then costs a few page faults instead of about 2,800;
measured on the 2-core machine, stacking such batches took 4.7 s instead of 10.2 s per 512 rows
(see docs/benchmarks.md). The ``polymodal`` command imports this module first; a Python user
sets the variable before importing torch. ``POLYMODAL_KEEP_ALLOCATOR_BUFFERS=0`` (which also
turns off :func:`polymodal.runtime.keep_allocator_buffers`) or an explicit
``THP_MEM_ALLOC_ENABLE`` leaves it alone. The kernel decides in the end: with THP ``never``
nothing changes.
"""

from __future__ import annotations

import os
import sys

ENV = "THP_MEM_ALLOC_ENABLE"


def prefer_huge_pages() -> bool:
    """Ask torch's CPU allocator for huge pages; False when it is too late (torch already
    imported) or turned off."""
    if "torch" in sys.modules or os.environ.get("POLYMODAL_KEEP_ALLOCATOR_BUFFERS") == "0":
        return False
    os.environ.setdefault(ENV, "1")
    return os.environ[ENV] == "1"


prefer_huge_pages()
