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

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from polymodal.errors import ModelError

CoreFactory = TypeVar("CoreFactory", bound=Callable[..., nn.Module])

_CORES: dict[str, Callable[..., nn.Module]] = {}


def register_core(name: str) -> Callable[[CoreFactory], CoreFactory]:
    """Class decorator: make a fusion core buildable by ``create_core(name, ...)``.

    The factory must accept keyword-only ``modalities`` (name -> kind) and ``dim`` plus its own
    options.
    """

    def decorator(factory: CoreFactory) -> CoreFactory:
        if name in _CORES and _CORES[name] is not factory:
            raise ValueError(f"a fusion core named {name!r} is already registered")
        _CORES[name] = factory
        return factory

    return decorator


def list_cores() -> list[str]:
    """Names of the registered fusion cores, sorted."""
    return sorted(_CORES)


def create_core(name: str, *, modalities: dict[str, str], dim: int, **options: Any) -> nn.Module:
    """Build the fusion core ``name`` for ``modalities`` (name -> kind) with token width ``dim``.

    Raises:
        ModelError: unknown core name (the message lists the known ones) or an option the core
            does not accept (the message lists the accepted ones).
    """
    if name not in _CORES:
        raise ModelError(
            f"unknown fusion core {name!r}; known cores: {', '.join(list_cores())}. "
            "Set 'core' in the model config to one of them."
        )
    factory = _CORES[name]
    accepted = [
        p.name
        for p in inspect.signature(factory).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in ("modalities", "dim")
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ModelError(
            f"fusion core {name!r} got unknown option(s) {', '.join(map(repr, unknown))}; "
            f"it accepts: {', '.join(accepted) or 'no options'}"
        )
    if not modalities:
        raise ModelError(f"fusion core {name!r} needs at least one modality, got none")
    return factory(modalities=dict(modalities), dim=dim, **options)
