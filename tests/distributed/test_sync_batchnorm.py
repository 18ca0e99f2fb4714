"""BatchNorm across processes: synchronised by default on several CUDA processes only, since
PyTorch's SyncBatchNorm refuses CPU modules (a CPU DDP fit with an image or volume encoder
failed at setup with "SyncBatchNorm layers only work with GPU modules")."""

from __future__ import annotations

import pytest
import torch

from polymodal.errors import ModelError
from polymodal.training.config import TrainConfig
from polymodal.training.distributed import trainer_options

TWO_PROCESSES = {"devices": 2, "strategy": "ddp"}


@pytest.mark.parametrize("accelerator", ["cpu", "auto"])
def test_cpu_processes_keep_batchnorm_per_process(monkeypatch, accelerator: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = TrainConfig(accelerator=accelerator, **TWO_PROCESSES)
    assert trainer_options(cfg)["sync_batchnorm"] is False


def test_cuda_processes_synchronise_batchnorm_by_default(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert trainer_options(TrainConfig(accelerator="gpu", **TWO_PROCESSES))["sync_batchnorm"]
    # One process, or a CPU run on a machine that has a GPU: nothing to synchronise with.
    assert not trainer_options(TrainConfig(accelerator="gpu"))["sync_batchnorm"]
    assert not trainer_options(TrainConfig(accelerator="cpu", **TWO_PROCESSES))["sync_batchnorm"]


def test_sync_batchnorm_asked_for_on_cpu_processes_is_refused_naming_the_key(
    monkeypatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = TrainConfig(accelerator="cpu", sync_batchnorm=True, **TWO_PROCESSES)
    with pytest.raises(ModelError, match=r"train\.sync_batchnorm: true needs CUDA GPUs"):
        trainer_options(cfg)
    off = TrainConfig(accelerator="cpu", sync_batchnorm=False, **TWO_PROCESSES)
    assert trainer_options(off)["sync_batchnorm"] is False
