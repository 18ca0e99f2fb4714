"""``ema:``: validate, select and export a moving average of the weights
(:mod:`polymodal.training.ema`)."""

from __future__ import annotations

from polymodal.training.ema import EMAConfig, WeightEMA
from polymodal.training.plugins.base import FitContext, FitPlugin, PluginParts, register_plugin


@register_plugin("ema")
class EMAPlugin(FitPlugin):
    config = EMAConfig
    summary = (
        "Validate, select and export an exponential moving average of the weights "
        "(train.ema_decay in earlier run configs)."
    )

    @classmethod
    def build(cls, config: EMAConfig, context: FitContext) -> PluginParts:
        # Validation, the best checkpoint and the export see the average; last.ckpt keeps both.
        return PluginParts(callbacks=[WeightEMA(config.decay)])
