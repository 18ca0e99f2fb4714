"""``modulation:``: gradient modulation (OGM-GE, :mod:`polymodal.training.modulation`)."""

from __future__ import annotations

from polymodal.training.modulation import GradientModulation, ModulationConfig
from polymodal.training.plugins.base import FitContext, FitPlugin, PluginParts, register_plugin


@register_plugin("modulation")
class ModulationPlugin(FitPlugin):
    config = ModulationConfig
    summary = "Gradient modulation (OGM-GE) against a dominant modality."
    # Its auxiliary heads' loss and the confidence scores read each sample's label.
    reads_labels = True

    @classmethod
    def build(cls, config: ModulationConfig, context: FitContext) -> PluginParts:
        if not config.enabled:
            return PluginParts()
        plugin = GradientModulation.from_config(
            config,
            model=context.model,
            dim=context.model_config.dim,
            target_infos=context.target_infos,
        )
        return PluginParts(modules=[plugin])
