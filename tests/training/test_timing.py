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
