"""Fusion cores: turn per-modality tokens into one feature vector per sample.

Build one with :func:`create_core`; see :mod:`polymodal.fusion.registry` for the interface and
:class:`~polymodal.fusion.base.FusionCore` for the capabilities a core declares. Importing this
package registers the built-in cores (``list_cores()`` names them); a new core is one module
here with a ``@register_core`` class, imported below.
"""

from polymodal.fusion import (  # noqa: F401  (registers cores)
    attention,
    bottleneck,
    concat,
    gated,
    intervention,
    prompted,
    single,
    synergy,
)
from polymodal.fusion.base import AdapterWeights, FusionCore
from polymodal.fusion.registry import CORES, create_core, list_cores, register_core

__all__ = [
    "CORES",
    "AdapterWeights",
    "FusionCore",
    "create_core",
    "list_cores",
    "register_core",
]
