"""What a benchmark ran on, in the words its reports use."""

from __future__ import annotations

import torch


def device_name() -> str:
    """The GPU's name when one is in use, else "cpu"."""
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
