"""``distill:``: knowledge distillation from a frozen teacher (:mod:`polymodal.training.distill`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polymodal.config import ModelConfig
from polymodal.training.distill import Distillation, DistillationConfig
from polymodal.training.plugins.base import FitContext, FitPlugin, PluginParts, register_plugin


@register_plugin("distill")
class DistillPlugin(FitPlugin):
    config = DistillationConfig
    summary = "Distil from a frozen full-modality teacher (polymodal fit --distill-from)."

    @classmethod
    def adjust_model_config(
        cls, config: DistillationConfig, model_config: ModelConfig
    ) -> ModelConfig:
        # Recorded in run.json and the model folder: what the student was actually trained with.
        if config.student_modality_dropout is None:
            return model_config
        return model_config.model_copy(update={"modality_dropout": config.student_modality_dropout})

    @classmethod
    def build(cls, config: DistillationConfig, context: FitContext) -> PluginParts:
        plugin = Distillation.from_config(
            config, student=context.model, preprocessor=context.preprocessor
        )
        return PluginParts(modules=[plugin], teachers=[plugin.teacher])

    @classmethod
    def example(cls, trained_model: Path) -> dict[str, Any]:
        return {"distill": {"teacher": str(trained_model)}}
