"""Speed switches of a training run that change no result beyond float rounding.

* ``train.channels_last``: 2D convolution weights in channels-last layout. A convolution whose weight is
  channels-last runs channels-last (cuDNN and oneDNN pick the layout from input *or* weight), so
  the image encoders' activations follow without touching the batch.
* ``train.compile``: :meth:`torch.nn.Module.compile` in place. Unlike ``torch.compile(model)`` it
  keeps the module and its parameter names, so checkpoints, the weight EMA and the exported
  model folder stay as they are.
* Mixed precision (``train.precision``, e.g. ``bf16-mixed``) is Lightning's own switch.
"""

from __future__ import annotations

import torch
from torch import nn

from polymodal.training.config import TrainConfig


def accelerate(model: nn.Module, cfg: TrainConfig) -> nn.Module:
    """``model`` (the same object) laid out and compiled as ``cfg`` asks."""
    if cfg.channels_last:
        # Per 2D convolution: Module.to(memory_format=...) also meets 5D volume weights, for
        # which channels-last (a 4D layout) fails.
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.to(memory_format=torch.channels_last)
    if cfg.compile:
        model.compile()
    return model
