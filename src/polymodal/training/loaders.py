"""DataLoaders of a fit: polymodal's collate, (seed, epoch) shuffling, one thread per worker."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Sampler

from polymodal.data.collate import collate_samples
from polymodal.data.dataset import CohortDataset
from polymodal.runtime import worker_init
from polymodal.training.config import TrainConfig
from polymodal.training.epoch_seeds import EpochShuffle


def make_loader(
    dataset: CohortDataset, cfg: TrainConfig, *, shuffle: bool, sampler: Sampler | None = None
) -> DataLoader:
    """A DataLoader with polymodal's collate; shuffling depends on (seed, epoch) only.

    With a ``sampler`` (``train.sampling``) rows are drawn by it instead of shuffled. Workers
    run one torch thread each (:func:`polymodal.runtime.worker_init`).
    """
    if shuffle and sampler is None:
        sampler = EpochShuffle(len(dataset), cfg.seed)
    workers = cfg.num_workers
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_samples,
        worker_init_fn=worker_init if workers > 0 else None,
        # The training workers' seeds come from a generator of their own (see SeedEachEpoch).
        generator=torch.Generator() if shuffle else None,
        # Training workers start afresh each epoch, seeded from the generators SeedEachEpoch
        # has just reset: their augmentation is the same after a resume.
        persistent_workers=workers > 0 and not shuffle,
        # Batches ready ahead of the step; only meaningful with workers.
        prefetch_factor=2 if workers > 0 else None,
        # A last training batch of one sample breaks BatchNorm (one value per channel on a 1×1
        # feature map); shuffling leaves a different sample out of each epoch.
        drop_last=shuffle and len(dataset) % cfg.batch_size == 1,
    )
