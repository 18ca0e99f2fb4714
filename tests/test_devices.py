"""``--device auto|cpu|cuda|mps``: auto picks what is there; a device that is not there is a
message naming what is."""

from __future__ import annotations

import pytest
import torch

from polymodal.devices import available_devices, resolve_device
from polymodal.errors import PolymodalError


def test_auto_takes_a_gpu_when_there_is_one_else_the_cpu() -> None:
    found = available_devices()
    expected = "cuda" if "cuda" in found else "mps" if "mps" in found else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(" CPU ") == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "cpu:0", "cuda:x", ""])
def test_an_unknown_device_names_the_choices(name: str) -> None:
    with pytest.raises(PolymodalError, match="auto, cpu, cuda, mps"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_a_missing_gpu_says_what_is_available() -> None:
    with pytest.raises(PolymodalError, match=r"no cuda device .*available: cpu"):
        resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_index_past_the_last_is_refused() -> None:
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(PolymodalError, match="numbered from 0"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")
