"""A run's sample cache as its config sets it up, and the cache's hit rate logged every epoch.

The hit rate counts every process reading through the cache folder (loader workers, DDP ranks),
since the counts live in the cache's index (:mod:`polymodal.data.cache_index`); another run
sharing the same folder at the same time would count in it too.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L

from polymodal.data.cache import SampleCache
from polymodal.training.config import TrainConfig

logger = logging.getLogger(__name__)


def sample_cache(cfg: TrainConfig, out_dir: Path) -> SampleCache | None:
    """The run's sample cache (``train.cache_dir``, default ``OUT/cache``), capped at
    ``train.cache_max_gb`` (by ``train.cache_policy``) and compressed when
    ``train.cache_compress``, with ``train.cache_memory_gb`` of entries kept in memory
    (divided among the loader workers); None when ``train.cache`` is off."""
    if not cfg.cache:
        return None
    max_bytes = None if cfg.cache_max_gb is None else int(cfg.cache_max_gb * 1e9)
    folder = cfg.cache_dir or Path(out_dir) / "cache"
    readers = max(1, cfg.num_workers)  # each worker process holds its own part
    return SampleCache(
        folder,
        max_bytes=max_bytes,
        compress=cfg.cache_compress,
        policy=cfg.cache_policy,
        memory_bytes=int(cfg.cache_memory_gb * 1e9 / readers),
    )


class CacheHitRate(L.Callback):
    """Logs ``cache/hit_rate`` (hits / reads of this epoch, training and validation) and one
    log line with the hits, misses and bytes on disk, at the end of each training epoch."""

    def __init__(self, cache: SampleCache) -> None:
        self.cache = cache
        self._start = (0, 0)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self.cache.counts()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        (hits, misses), (hits_before, misses_before) = self.cache.counts(), self._start
        hits, misses = hits - hits_before, misses - misses_before
        if hits + misses == 0:  # nothing read through the cache (e.g. frozen features only)
            return
        rate = hits / (hits + misses)
        pl_module.log("cache/hit_rate", rate, on_epoch=True)
        if trainer.is_global_zero:
            cap = self.cache.max_bytes
            logger.info(
                "epoch %d: sample cache %d hits, %d misses (hit rate %.1f%%), %s on disk%s",
                trainer.current_epoch + 1,
                hits,
                misses,
                100 * rate,
                _size(self.cache.entries.total_bytes()),
                "" if cap is None else f" of {_size(cap)}",
            )


def _size(count: int) -> str:
    return f"{count / 1e9:.2f} GB" if count >= 1e9 else f"{count / 1e6:.1f} MB"
