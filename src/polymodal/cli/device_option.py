"""The ``--device`` option that ``evaluate``, ``predict`` and ``serve`` share (its help text)."""

from __future__ import annotations

DEVICE_HELP = (
    "Where the model runs: auto (a CUDA GPU, else Apple MPS, else the CPU), cpu, cuda, cuda:N "
    "or mps."
)
