"""Pruning on the validation metric: a Lightning callback between a fit and its Optuna trial."""

from __future__ import annotations

import math
from typing import Any

import lightning as L


class ReportToTrial(L.Callback):
    """After each validation epoch, report ``trainer.callback_metrics[monitor]`` to ``trial``
    (step = the epoch) and raise ``optuna.TrialPruned`` when the study's pruner says so.

    The fit stops there (its folder keeps the logs and checkpoints so far, no model folder) and
    the study records the trial as pruned. Non-finite values (an AUROC undefined on a
    one-class validation epoch) are not reported.
    """

    def __init__(self, trial: Any, monitor: str) -> None:
        self.trial = trial
        self.monitor = monitor

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import optuna

        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None or not math.isfinite(float(value)):
            return
        epoch = trainer.current_epoch
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(
                f"pruned after epoch {epoch}: {self.monitor} = {float(value):.4g}"
            )
