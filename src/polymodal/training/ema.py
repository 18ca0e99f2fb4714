"""An exponential moving average (EMA) of the weights, for validation, selection and export.

Built on Lightning's :class:`~lightning.pytorch.callbacks.WeightAveraging` (torch's
:class:`~torch.optim.swa_utils.AveragedModel` underneath): after every optimiser step the
average moves towards the current weights; validation runs on the average (so early stopping and
the best checkpoint judge it), and every checkpoint holds the average as its ``state_dict`` and
the raw weights as ``current_model_state``, the average's counter in ``averaging_state``. So
``fit``'s exported model (the best checkpoint's ``state_dict``) is the average, and a resumed run
restores both the raw weights and the average exactly.

What is averaged: every floating-point parameter and buffer of the training module, BatchNorm
running statistics included (they follow the averaged weights, as in timm's ``ModelEmaV3``).
Integer buffers (BatchNorm's batch counter) are copied. Frozen parts never change, and the update
is a ``lerp``, which leaves a value that equals its target bit for bit: their average is them.
The average is a copy of the whole training module (a distillation teacher too): memory for one
more model, on the training device.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import WeightAveraging
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor


class EMAConfig(BaseModel):
    """``ema:`` in a run config (``train.ema_decay`` in earlier run configs, still read)."""

    model_config = ConfigDict(extra="forbid")

    decay: float = Field(
        0.999,
        gt=0,
        lt=1,
        description="Decay d per optimiser step, warmed up as min(d, (1+n)/(10+n)) over the first "
        "n updates; the average is used for validation, checkpoint selection and the exported "
        "model.",
    )


class EMAUpdate:
    """``ema ← ema + (1 − d)·(current − ema)`` with ``d = min(decay, (1 + n)/(10 + n))``.

    ``n`` counts the updates so far, so the first ones follow the weights closely instead of
    holding on to the initial (mostly random-head) weights for ~1/(1 − decay) steps; the warm-up
    of TensorFlow's ``ExponentialMovingAverage(num_updates=…)``. Called by AveragedModel with
    lists of tensors of one device and dtype.
    """

    def __init__(self, decay: float) -> None:
        self.decay = decay

    def rate(self, updates: int) -> float:
        """The decay used for the update that follows ``updates`` earlier ones."""
        return min(self.decay, (1 + updates) / (10 + updates))

    @torch.no_grad()
    def __call__(self, averages: list[Tensor], currents: list[Tensor], updates: Tensor) -> None:
        if torch.is_floating_point(averages[0]):
            torch._foreach_lerp_(averages, currents, 1.0 - self.rate(int(updates)))
        else:
            for average, current in zip(averages, currents, strict=True):
                average.copy_(current)


class WeightEMA(WeightAveraging):
    """``ema.decay``: keep, validate on and checkpoint an EMA of the weights.

    The average lives on the device the trainer trains on (Lightning's default would be the
    module's device at set-up, the CPU, costing a device-to-host copy of the weights per step).
    """

    def __init__(self, decay: float) -> None:
        super().__init__(use_buffers=True, multi_avg_fn=EMAUpdate(decay))
        self.decay = decay

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._device is None:
            self._device = trainer.strategy.root_device
        super().setup(trainer, pl_module, stage)
