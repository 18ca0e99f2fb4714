"""Registered training plugins: one run-config section each, built into a fit when present.

=====================  ===========================================================================
``distill``            knowledge distillation from a frozen teacher model folder
``modulation``         gradient modulation (OGM-GE) against a dominant modality
``intervention_loss``  the Early Intervention loss of a core with per-branch outputs
``ema``                an exponential moving average of the weights for validation and export
``calibration``        recalibrated probabilities, fitted on the validation split after export
``conformal``          split-conformal prediction sets or intervals, calibrated on validation
=====================  ===========================================================================

``PLUGINS.names()`` lists them; :mod:`polymodal.training.plugins.base` says what a plugin is.
Importing this package registers the built-in plugins; a new plugin is one module here that
subclasses :class:`FitPlugin` with :func:`register_plugin`, plus its import below.
"""

from polymodal.training.plugins import (
    calibration,
    conformal,
    distill,
    ema,
    intervention_loss,
    modulation,
)
from polymodal.training.plugins.base import (
    PLUGINS,
    Exported,
    FitContext,
    FitPlugin,
    PluginParts,
    active_sections,
    build_plugins,
    register_plugin,
)

__all__ = [
    "PLUGINS",
    "Exported",
    "FitContext",
    "FitPlugin",
    "PluginParts",
    "active_sections",
    "build_plugins",
    "calibration",
    "conformal",
    "distill",
    "ema",
    "intervention_loss",
    "modulation",
    "register_plugin",
]
