"""Which torch device a command runs on: ``--device auto|cpu|cuda|mps`` (also ``cuda:1``).

``auto`` takes a CUDA GPU when torch sees one, else Apple's MPS when available, else the CPU.
A device that was asked for by name and is not there is an error that says what is, rather
than torch's failure at the first tensor moved.
"""

from __future__ import annotations

import torch

from polymodal.errors import PolymodalError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """The device kinds usable in this process, e.g. ``["cpu", "cuda"]``."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if _mps_available():
        found.append("mps")
    return found


def resolve_device(name: str) -> torch.device:
    """The torch device for ``name`` (one of :data:`DEVICE_CHOICES`, or ``cuda:N``).

    Raises:
        PolymodalError: an unknown name, or a device this machine does not have.
    """
    text = name.strip().lower()
    if text == "auto":
        found = available_devices()
        return torch.device("cuda" if "cuda" in found else "mps" if "mps" in found else "cpu")
    kind, _, index = text.partition(":")
    if kind not in DEVICE_CHOICES or (index and (kind != "cuda" or not index.isdigit())):
        raise PolymodalError(
            f"--device {name!r} is not a device; use one of {', '.join(DEVICE_CHOICES)} "
            "(or cuda:N for the N-th GPU)"
        )
    if kind not in available_devices():
        raise PolymodalError(
            f"--device {name}: no {kind} device in this process (available: "
            f"{', '.join(available_devices())}); use --device auto or cpu"
        )
    if index and int(index) >= torch.cuda.device_count():
        raise PolymodalError(
            f"--device {name}: there are {torch.cuda.device_count()} CUDA device(s), "
            f"numbered from 0"
        )
    return torch.device(text)
