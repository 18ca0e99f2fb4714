"""One registry, one factory for fusion cores (the timm pattern).

A core is registered under a name with :func:`register_core` and built with :func:`create_core`.
Every core has the same interface::

    core = create_core("synergy", modalities={"xray": "image", "labs": "tabular"}, dim=128)
    features = core(tokens, masks, available)   # (B, core.out_dim)

where ``tokens[m]`` is ``(B, N_m, D)``, ``masks[m]`` is ``(B, N_m)`` bool (True = valid token) and
``available[m]`` is ``(B,)`` bool. A modality absent from ``tokens`` is unavailable for every
sample. Each core also has ``modalities`` (the names it reads, in order) and ``out_dim``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from polymodal.errors import ModelError
from polymodal.registry import Registry

CoreFactory = TypeVar("CoreFactory", bound=Callable[..., nn.Module])

CORES: Registry[Callable[..., nn.Module]] = Registry("fusion core", config_key="model.core")


def register_core(name: str) -> Callable[[CoreFactory], CoreFactory]:
    """Class decorator: make a fusion core buildable by ``create_core(name, ...)``.

    The factory must accept keyword-only ``modalities`` (name -> kind) and ``dim`` plus its own
    options.
    """
    return CORES.register(name)


def list_cores() -> list[str]:
    """Names of the registered fusion cores, sorted."""
    return CORES.names()


def create_core(name: str, *, modalities: dict[str, str], dim: int, **options: Any) -> nn.Module:
    """Build the fusion core ``name`` for ``modalities`` (name -> kind) with token width ``dim``.

    Raises:
        ModelError: unknown core name (the message lists the known ones) or an option the core
            does not accept (the message lists the accepted ones).
    """
    CORES.check_options(name, options, exclude=("modalities", "dim"))
    if not modalities:
        raise ModelError(f"fusion core {name!r} needs at least one modality, got none")
    return CORES.get(name)(modalities=dict(modalities), dim=dim, **options)
