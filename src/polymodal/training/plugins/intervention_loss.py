"""``intervention_loss:``: the Early Intervention loss (:mod:`polymodal.training.intervention_loss`)
of a core with per-branch outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polymodal.fusion import CORES
from polymodal.training.intervention_loss import (
    BRANCH_OUTPUTS,
    InterventionLoss,
    InterventionLossConfig,
)
from polymodal.training.plugins.base import FitContext, FitPlugin, PluginParts, register_plugin


@register_plugin("intervention_loss")
class InterventionLossPlugin(FitPlugin):
    config = InterventionLossConfig
    summary = (
        "The Early Intervention loss (per-branch losses, router supervision) of a core with "
        "per-branch outputs (polymodal.training.intervention_loss)."
    )
    # The per-branch losses and the router's target read each sample's own label.
    reads_labels = True

    @classmethod
    def build(cls, config: InterventionLossConfig, context: FitContext) -> PluginParts:
        plugin = InterventionLoss.from_config(
            config, model=context.model, target_infos=context.target_infos
        )
        return PluginParts(modules=[plugin])

    @classmethod
    def example(cls, trained_model: Path) -> dict[str, Any]:
        name, core = next(
            (n, c) for n, c in CORES.items() if set(BRANCH_OUTPUTS) <= set(c.auxiliary_outputs)
        )
        return {
            "model": {"core": name, "core_options": core.example_options()},
            "intervention_loss": {},
        }
