"""DataLoaders of a fit: polymodal's collate, (seed, epoch) shuffling, workers that persist.

A training row's augmentation is a pure function of (seed, epoch, row): the sampler hands the
dataset ``(epoch, row)`` pairs (:class:`EpochRows`), so nothing depends on which worker reads a
row or on the workers' generators. Workers can therefore live across epochs
(``persistent_workers``) and a resumed run still draws what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Sampler

from polymodal.data.collate import collate_samples
from polymodal.data.dataset import CohortDataset
from polymodal.runtime import worker_init
from polymodal.training.config import TrainConfig
from polymodal.training.distributed import AllRows, RankRows, is_distributed, planned_world
from polymodal.training.epoch_seeds import EpochShuffle

# Batches each worker prepares ahead of the training step.
PREFETCH_BATCHES = 4


class EpochRows(Sampler[tuple[int, int]]):
    """``(epoch, row)`` for each row ``sampler`` draws; forwards ``set_epoch`` to it.

    The epoch is read when an epoch's iterator is created, in the main process (Lightning sets
    it before; :class:`polymodal.training.epoch_seeds.SeedEachEpoch` sets the first one).
    """

    def __init__(self, sampler: Sampler[int]) -> None:
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, int(row)) for row in self.sampler)


def make_loader(
    dataset: CohortDataset, cfg: TrainConfig, *, shuffle: bool, sampler: Sampler | None = None
) -> DataLoader:
    """A DataLoader with polymodal's collate; shuffling depends on (seed, epoch) only.

    With a ``sampler`` (``train.sampling``) rows are drawn by it instead of shuffled. Workers
    run one torch thread each (:func:`polymodal.runtime.worker_init`), persist across epochs and
    prefetch; batches are pinned when a GPU will take them.
    """
    if shuffle and sampler is None:
        sampler = EpochShuffle(len(dataset), cfg.seed)
    if shuffle:
        sampler = EpochRows(sampler)
    if is_distributed(cfg):  # each process takes its share of the rows
        sampler = RankRows(
            sampler if shuffle else AllRows(len(dataset)), pad=shuffle, world=planned_world(cfg)
        )
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
        persistent_workers=workers > 0,
        prefetch_factor=PREFETCH_BATCHES if workers > 0 else None,
        pin_memory=_on_gpu(cfg),
        # A last training batch of one sample breaks BatchNorm (one value per channel on a 1×1
        # feature map); shuffling leaves a different sample out of each epoch.
        drop_last=shuffle
        and len(sampler if sampler is not None else dataset) % cfg.batch_size == 1,
    )


def _on_gpu(cfg: TrainConfig) -> bool:
    """Whether the trainer will put batches on a CUDA device (pinned pages copy faster)."""
    return cfg.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
