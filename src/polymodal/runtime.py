"""Per-process runtime settings: torch's thread count beside loader workers, allocator buffers.

Threads: torch starts one intra-op thread per core in every process. Beside DataLoader worker
processes that oversubscribes the cores (measured on 2 shared cores: a whole epoch 3.35× slower
than with one thread per process), so the main process takes ``cores // (1 + workers)`` threads
(at least 1) and each worker one. ``train.num_threads`` or the environment variable
``POLYMODAL_NUM_THREADS`` overrides the choice (the config value wins over the variable).

Allocator: on Linux with glibc, ``free`` hands blocks above the mmap threshold back to the
kernel at once, and trims the heap's top above the trim threshold. A backbone batch allocates
and frees the same large activation buffers every step, so each batch paid about 1.4 million
page faults (kernel time about equal to user time); keeping the buffers made a batch 0.43× as
long. :func:`keep_allocator_buffers` raises both thresholds once per process.
``POLYMODAL_KEEP_ALLOCATOR_BUFFERS=0`` turns it off (e.g. where memory is tighter than time).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

import torch

logger = logging.getLogger(__name__)

THREADS_ENV = "POLYMODAL_NUM_THREADS"
KEEP_BUFFERS_ENV = "POLYMODAL_KEEP_ALLOCATOR_BUFFERS"

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit); the trim
# threshold is an int.
_MMAP_THRESHOLD = 32 << 20
_TRIM_THRESHOLD = (1 << 31) - 1

_buffers_kept: bool | None = None


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def choose_num_threads(
    num_workers: int,
    requested: int | None = None,
    cores: int | None = None,
    processes: int = 1,
) -> tuple[int, str]:
    """Torch intra-op threads for the main process, and where the number came from.

    ``requested`` (``train.num_threads``) wins, then ``POLYMODAL_NUM_THREADS``, then
    ``cores // (processes × (1 + num_workers))``, at least 1: ``processes`` training processes
    on this machine (DDP ranks of one node) share its cores, each with its loader workers.
    """
    if requested is not None:
        return max(1, int(requested)), "train.num_threads"
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            from polymodal.errors import PolymodalError

            raise PolymodalError(
                f"{THREADS_ENV}={env!r} is not a whole number; set it to a thread count such as 1"
            ) from None
        return max(1, value), THREADS_ENV
    cores = available_cores() if cores is None else cores
    processes = max(1, processes)
    share = max(1, cores // (processes * (1 + max(0, num_workers))))
    where = f"{cores} cores, {num_workers} workers"
    return share, where if processes == 1 else f"{where}, {processes} processes on this machine"


def configure_threads(
    num_workers: int = 0, requested: int | None = None, processes: int = 1
) -> int:
    """Set torch's intra-op threads for this process (see :func:`choose_num_threads`), log it."""
    threads, why = choose_num_threads(num_workers, requested, processes=processes)
    torch.set_num_threads(threads)
    logger.info("torch threads: %d in the main process, 1 per loader worker (%s)", threads, why)
    return threads


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one torch thread per worker, then Lightning's worker seeding
    when ``seed_everything(workers=True)`` asked for it (it installs its own only when a loader
    has none)."""
    torch.set_num_threads(1)
    if os.environ.get("PL_SEED_WORKERS") == "1":
        from lightning.fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id)


def keep_allocator_buffers() -> bool:
    """Raise glibc's mmap and trim thresholds once per process (see the module docstring).

    Returns whether they are raised; False off glibc or when ``POLYMODAL_KEEP_ALLOCATOR_BUFFERS``
    is ``0``/``false``/``no``/``off``.
    """
    global _buffers_kept
    if _buffers_kept is not None:
        return _buffers_kept
    _buffers_kept = False
    if os.environ.get(KEEP_BUFFERS_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 when glibc refuses the value.
    ok = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1 and ok
    _buffers_kept = ok
    logger.info("allocator buffers kept across batches: %s", "yes" if ok else "no (refused)")
    return ok


def setup_process(num_workers: int = 0, num_threads: int | None = None, processes: int = 1) -> int:
    """Both settings for a process that trains or runs a model (one of ``processes`` on this
    machine); returns the thread count."""
    keep_allocator_buffers()
    return configure_threads(num_workers, num_threads, processes)
