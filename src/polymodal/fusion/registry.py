"""One registry, one factory for fusion cores (the timm pattern).

A core is a :class:`~polymodal.fusion.base.FusionCore` registered under a name with
:func:`register_core` and built with :func:`create_core`. Every core has the same interface::

    core = create_core("synergy", modalities={"xray": "image", "labs": "tabular"}, dim=128)
    features = core(tokens, masks, available)   # (B, core.out_dim)

where ``tokens[m]`` is ``(B, N_m, D)``, ``masks[m]`` is ``(B, N_m)`` bool (True = valid token) and
``available[m]`` is ``(B,)`` bool. A modality absent from ``tokens`` is unavailable for every
sample. Each core also has ``modalities`` (the names it reads, in order), ``out_dim`` and the
capabilities of :class:`~polymodal.fusion.base.FusionCore`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from polymodal.errors import ModelError
from polymodal.fusion.base import FusionCore
from polymodal.registry import Registry

CoreClass = TypeVar("CoreClass", bound=type[FusionCore])

CORES: Registry[type[FusionCore]] = Registry("fusion core", config_key="model.core")


def register_core(name: str) -> Callable[[CoreClass], CoreClass]:
    """Class decorator: make a :class:`FusionCore` subclass buildable by ``create_core(name, ...)``.

    The class must accept keyword-only ``modalities`` (name -> kind) and ``dim`` plus its own
    options; it learns its name as ``core_name``.
    """
    register = CORES.register(name)

    def decorate(cls: CoreClass) -> CoreClass:
        if not (isinstance(cls, type) and issubclass(cls, FusionCore)):
            raise TypeError(f"fusion core {name!r} must be a subclass of FusionCore, got {cls!r}")
        cls.core_name = name
        return register(cls)

    return decorate


def list_cores(**capabilities: Any) -> list[str]:
    """Names of the registered fusion cores, sorted; those whose class capabilities equal the
    given ones, e.g. ``list_cores(supports_rollout=True)``."""
    for capability in capabilities:
        if not hasattr(FusionCore, capability):
            raise ModelError(f"fusion cores have no capability {capability!r}")
    return [
        name
        for name, cls in CORES.items()
        if all(getattr(cls, c) == v for c, v in capabilities.items())
    ]


def create_core(name: str, *, modalities: dict[str, str], dim: int, **options: Any) -> FusionCore:
    """Build the fusion core ``name`` for ``modalities`` (name -> kind) with token width ``dim``.

    Raises:
        ModelError: unknown core name (the message lists the known ones) or an option the core
            does not accept (the message lists the accepted ones).
    """
    CORES.check_options(name, options, exclude=("modalities", "dim"))
    if not modalities:
        raise ModelError(f"fusion core {name!r} needs at least one modality, got none")
    return CORES.get(name)(modalities=dict(modalities), dim=dim, **options)
