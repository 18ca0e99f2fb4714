"""``conformal:``: split-conformal prediction sets or intervals calibrated on the validation
split (:mod:`polymodal.calibration.conformal`), kept in the model folder."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from polymodal.calibration.conformal import (
    ConformalConfig,
    calibrate,
    conformal_targets,
    save_conformal,
)
from polymodal.training.plugins.base import (
    Exported,
    FitContext,
    FitPlugin,
    PluginParts,
    register_plugin,
)


@register_plugin("conformal")
class ConformalPlugin(FitPlugin):
    config = ConformalConfig
    summary = (
        "Split-conformal prediction sets (classes) or intervals (values) with the chosen "
        "coverage, calibrated on the validation split after training (and any calibration)."
    )
    fits_on_validation = True

    @classmethod
    def build(cls, config: ConformalConfig, context: FitContext) -> PluginParts:
        chosen, skipped = conformal_targets(context.target_infos)
        for target, why in skipped.items():
            warnings.warn(f"conformal: target {target!r} gets no set: {why}", stacklevel=2)

        def calibrate_thresholds(exported: Exported) -> None:
            _calibrate(exported, config, chosen, skipped)

        return PluginParts(after_export=[calibrate_thresholds])

    @classmethod
    def example(cls, trained_model: Path) -> dict[str, Any]:
        return {"conformal": {"coverage": 0.8}}


def _calibrate(exported: Exported, config: ConformalConfig, chosen: list[str], skipped: dict):
    """Thresholds from the (recalibrated) validation predictions; writes ``conformal.json``."""
    from polymodal.predictor import Predictor

    predictor = Predictor.load(
        exported.model_dir,
        device=exported.device,
        cache_dir=exported.cache_dir,
        feature_store=exported.feature_store,
    )
    collector, _ = predictor.collect(exported.cohort, split="val")
    records = {}
    for target in chosen:
        labels, labelled = collector.labels(target)
        outputs = {n: v[labelled] for n, v in collector.predictions(target).items()}
        info = predictor.loaded.target_infos[target]
        _, records[target] = calibrate(target, info, outputs, labels[labelled], config)
        if "note" in records[target]:
            warnings.warn(f"conformal: target {target!r}: {records[target]['note']}", stacklevel=2)
    save_conformal(exported.model_dir, config, records, skipped)
