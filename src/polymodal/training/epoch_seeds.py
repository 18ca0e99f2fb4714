"""Randomness derived from (seed, epoch), so a resumed run draws what an uninterrupted one would.

Lightning's checkpoint restores weights, optimiser, schedule and counters, not random number
generators. Every draw of a training epoch (the order of rows, the weighted sampler's draws,
augmentation, modality dropout, dropout, the DataLoader workers' seeds) therefore starts from a
state that depends only on ``train.seed`` and the epoch number:

* :class:`SeedEachEpoch` reseeds Python's, NumPy's and torch's global generators at the start of
  every training epoch, and the training DataLoader's own generator, which seeds its workers
  (the DataLoader draws nothing from the global generators);
* :class:`EpochShuffle` orders the rows by a permutation of its own (seed, epoch) generator;
  :class:`polymodal.training.sampling.EpochWeightedSampler` draws the same way.

Lightning calls a sampler's ``set_epoch(epoch)`` before each training epoch.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler


def epoch_seed(seed: int, epoch: int) -> int:
    """A 32-bit seed for ``epoch`` of a run seeded with ``seed`` (any int, negative too)."""
    entropy = [seed % 2**64, epoch]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint32)[0])


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A fresh torch generator seeded for ``epoch``."""
    return torch.Generator().manual_seed(epoch_seed(seed, epoch))


class SeedEachEpoch(L.Callback):
    """Reseed the global generators from (seed, epoch) at the start of every training epoch.

    Args:
        seed: ``train.seed``.
        loader: the training DataLoader; its ``generator`` seeds its workers when an epoch's
            iterator is created, and its sampler has ``set_epoch``. Lightning creates the first
            epoch's iterator (and worker processes take their first rows from the sampler)
            before ``on_train_epoch_start`` and before it sets the sampler's epoch: both are
            prepared here for ``first_epoch``; Lightning's later iterators come after both.
        first_epoch: the first epoch this run trains (0, or the epoch a resumed run starts with).
    """

    def __init__(self, seed: int, loader: DataLoader, first_epoch: int = 0) -> None:
        if loader.generator is None:
            raise ValueError("the training DataLoader needs a generator of its own")
        self.seed = seed
        self.loader_generator = loader.generator
        self.loader_generator.manual_seed(epoch_seed(seed, first_epoch))
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(first_epoch)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seed = epoch_seed(self.seed, trainer.current_epoch)
        # Random choices inside the step (modality dropout, dropout) differ between ranks,
        # which see different rows; rank 0 draws what a single process would.
        step_seed = seed + trainer.global_rank
        random.seed(step_seed)
        np.random.seed(step_seed)
        torch.manual_seed(step_seed)  # CUDA's generators too
        self.loader_generator.manual_seed(seed)


class EpochShuffle(Sampler[int]):
    """All ``n`` row positions in a random order that depends on (seed, epoch) only."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(self.n, generator=epoch_generator(self.seed, self.epoch))
        return iter(order.tolist())
