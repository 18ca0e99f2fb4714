"""``train/epoch_seconds``: time of the optimisation steps per epoch, logged with the metrics."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from training.conftest import TINY_EPOCHS


def test_every_epoch_logs_its_training_and_validation_time(run_dir: Path) -> None:
    metrics = pd.read_csv(run_dir / "logs" / "metrics.csv")
    train = metrics["train/epoch_seconds"].dropna()
    val = metrics["val/epoch_seconds"].dropna()
    assert len(train) == len(val) == TINY_EPOCHS
    assert (train > 0).all() and (val > 0).all()


def test_every_epoch_has_a_line_with_loss_metric_and_eta_in_the_log_file(run_dir: Path) -> None:
    lines = (run_dir / "logs" / "fit.log").read_text().splitlines()
    epochs = [line for line in lines if ": train loss " in line]
    assert len(epochs) == TINY_EPOCHS
    assert f"epoch 1/{TINY_EPOCHS}: train loss " in epochs[0] and "ETA" in epochs[0]
    assert epochs[-1].endswith("ETA 0s")
    # Not a terminal under pytest: plain lines with counts within the epochs too.
    assert any("training: " in line and "elapsed, ETA" in line for line in lines)
