"""Time per training epoch, logged as ``train/epoch_seconds`` beside the other metrics.

Lightning runs the validation loop inside the training epoch (``on_train_epoch_end`` comes after
it), so the validation time is measured separately and subtracted: the logged value is the time
of the optimisation steps alone, which is what comparing recipes (plain training against
distillation or gradient modulation) needs. ``val/epoch_seconds`` holds the rest.
"""

from __future__ import annotations

import time

import lightning as L


class EpochTimer(L.Callback):
    """Logs ``train/epoch_seconds`` (steps only) and ``val/epoch_seconds`` once per epoch."""

    def __init__(self) -> None:
        self._epoch_start = 0.0
        self._val_start = 0.0
        self._val_seconds = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()
        self._val_seconds = 0.0

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_start = time.perf_counter()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._val_seconds += time.perf_counter() - self._val_start

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        total = time.perf_counter() - self._epoch_start
        pl_module.log("train/epoch_seconds", total - self._val_seconds, on_epoch=True)
        pl_module.log("val/epoch_seconds", self._val_seconds, on_epoch=True)
