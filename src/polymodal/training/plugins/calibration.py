"""``calibration:``: recalibrate the exported model's probabilities on the validation split
(:mod:`polymodal.calibration.recalibration`) and keep the fit in its model folder."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from polymodal.calibration.recalibration import (
    CalibrationConfig,
    calibrated_targets,
    fit_target,
    save_calibration,
)
from polymodal.training.plugins.base import (
    Exported,
    FitContext,
    FitPlugin,
    PluginParts,
    register_plugin,
)


@register_plugin("calibration")
class CalibrationPlugin(FitPlugin):
    config = CalibrationConfig
    summary = (
        "Recalibrate the probabilities on the validation split after training (temperature, "
        "platt, isotonic), saved in the model folder and applied by the predictor."
    )
    fits_on_validation = True

    @classmethod
    def build(cls, config: CalibrationConfig, context: FitContext) -> PluginParts:
        if config.method == "none":
            return PluginParts()
        # Refused before training when no target takes the method.
        chosen, skipped = calibrated_targets(config.method, context.target_infos)
        for target, why in skipped.items():
            warnings.warn(
                f"calibration: target {target!r} is not recalibrated: {why}", stacklevel=2
            )

        def recalibrate(exported: Exported) -> None:
            _recalibrate(exported, config.method, chosen, skipped)

        return PluginParts(after_export=[recalibrate])

    @classmethod
    def example(cls, trained_model: Path) -> dict[str, Any]:
        return {"calibration": {"method": "platt"}}


def _recalibrate(exported: Exported, method: str, chosen: list[str], skipped: dict) -> None:
    """Fit ``method`` on the model's own validation logits, write ``calibration.json``."""
    from polymodal.predictor import Predictor

    predictor = Predictor.load(
        exported.model_dir,
        device=exported.device,
        calibrated=False,
        cache_dir=exported.cache_dir,
        feature_store=exported.feature_store,
    )
    collector, _ = predictor.collect(exported.cohort, split="val", logits=True)
    records = {}
    for target in chosen:
        labels, labelled = collector.labels(target)
        logits = torch.from_numpy(collector.predictions(target)["logits"][labelled])
        kind = predictor.loaded.target_infos[target]["kind"]
        _, records[target] = fit_target(
            target, kind, method, logits, torch.from_numpy(labels[labelled])
        )
    save_calibration(exported.model_dir, method, records, skipped)
