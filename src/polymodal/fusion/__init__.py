"""Fusion cores: turn per-modality tokens into one feature vector per sample.

Build one with :func:`create_core`; see :mod:`polymodal.fusion.registry` for the interface.
Importing this package registers the built-in cores: ``synergy``, ``single``, ``concat``,
``attention``, ``bottleneck``, ``intervention`` and ``prompted``.
"""

from polymodal.fusion import (  # noqa: F401  (registers cores)
    attention,
    bottleneck,
    concat,
    intervention,
    prompted,
    single,
    synergy,
)
from polymodal.fusion.registry import create_core, list_cores, register_core

__all__ = ["create_core", "list_cores", "register_core"]
