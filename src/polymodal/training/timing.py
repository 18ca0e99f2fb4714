"""Time per training epoch, logged as ``train/epoch_seconds`` beside the other metrics.

Lightning runs the validation loop inside the training epoch (``on_train_epoch_end`` comes after
it), so the validation time is measured separately and subtracted: the logged value is the time
of the optimisation steps alone, which is what comparing recipes (plain training against
distillation or gradient modulation) needs. ``val/epoch_seconds`` holds the rest.

:class:`EpochLog` writes one line per epoch (loss, validation metric, seconds, ETA) to the log.
"""

from __future__ import annotations

import logging
import time

import lightning as L
import torch

from polymodal.progress import PlainProgress, format_seconds

logger = logging.getLogger(__name__)


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


class EpochLog(L.Callback):
    """One log line per epoch: ``epoch k/N: train loss, val metric, seconds, ETA``.

    Goes through the ``polymodal`` logger, so ``fit``'s log file (``OUT/logs/fit.log``) and a
    redirected stderr get it as well as a terminal. The ETA assumes the remaining epochs take
    the mean time of those run so far (early stopping may end sooner).

    Args:
        monitor: the validation metric used for selection (printed beside the loss).
        batches: also log plain progress lines within each training and validation epoch (on
            when the output is not a terminal, where no progress bar can be read).
    """

    def __init__(self, monitor: str, *, batches: bool = False) -> None:
        self.monitor = monitor
        self.batches = batches
        self._start = 0.0
        self._losses: list[float] = []
        self._seconds: list[float] = []
        self._progress: PlainProgress | None = None

    def _epoch_name(self, trainer: L.Trainer) -> str:
        return f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()
        self._losses = []
        if self.batches:
            total = int(trainer.num_training_batches)
            self._progress = PlainProgress(total, f"{self._epoch_name(trainer)} training")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self._losses.append(float(loss.detach()))
        if self._progress is not None:
            self._progress.update()

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.batches and not trainer.sanity_checking:
            total = int(sum(trainer.num_val_batches))
            self._progress = PlainProgress(total, f"{self._epoch_name(trainer)} validation")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *_) -> None:
        if self._progress is not None and not trainer.sanity_checking:
            self._progress.update()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._progress = None
        seconds = time.perf_counter() - self._start
        self._seconds.append(seconds)
        left = trainer.max_epochs - trainer.current_epoch - 1
        eta = sum(self._seconds) / len(self._seconds) * max(0, left)
        loss = sum(self._losses) / len(self._losses) if self._losses else float("nan")
        metric = trainer.callback_metrics.get(self.monitor)
        metric_text = "n/a" if metric is None else f"{float(metric):.4f}"
        logger.info(
            "%s: train loss %.4f, %s %s, %.1f s, ETA %s",
            self._epoch_name(trainer),
            loss,
            self.monitor,
            metric_text,
            seconds,
            format_seconds(eta),
        )
