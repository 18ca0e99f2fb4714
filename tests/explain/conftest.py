"""A tiny cohort where one tabular field decides the label, and a model fitted on it.

``key`` alone decides ``label`` (positive exactly when key > 0); ``noise_a``, ``noise_b`` and
``colour`` are random, and the free-text ``note`` says nothing about the label. The model (the
``attention`` core, so rollout applies) is fitted once per test process and shared read-only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from polymodal.config import EncoderChoice, ModelConfig
from polymodal.data.spec import load_spec
from polymodal.training.config import TrainConfig
from polymodal.training.fit import fit
from polymodal.training.run_config import RunConfig

torch.set_num_threads(1)

ROWS = 160
SPEC = {
    "name": "key_decides",
    "manifest": "manifest.csv",
    "id_column": "sample_id",
    "split": {"column": "split"},
    "targets": {"label": {"kind": "binary", "column": "label", "positive": "1"}},
    "modalities": {
        "labs": {
            "kind": "tabular",
            "numeric": ["key", "noise_a", "noise_b"],
            "categorical": ["colour"],
        },
        "note": {"kind": "text", "column": "note", "max_tokens": 32, "vocab_size": 64},
    },
}
WEATHER = ["sunny", "rainy", "windy", "cloudy"]


def write_key_cohort(folder: Path, rows: int = ROWS, seed: int = 0) -> Path:
    """Manifest + spec of the cohort under ``folder``; returns the spec path."""
    rng = np.random.default_rng(seed)
    key = rng.normal(size=rows)
    frame = pd.DataFrame(
        {
            "sample_id": [f"P{i:03d}" for i in range(rows)],
            "split": np.where(np.arange(rows) < int(rows * 0.75), "train", "val"),
            "label": (key > 0).astype(int),
            "key": key.round(3),
            "noise_a": rng.normal(size=rows).round(3),
            "noise_b": rng.normal(size=rows).round(3),
            "colour": rng.choice(["red", "green", "blue"], size=rows),
            "note": [
                f"Seen in clinic. The weather was {rng.choice(WEATHER)}. "
                f"Follow up in {rng.integers(1, 5)} weeks."
                for _ in range(rows)
            ],
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "manifest.csv", index=False)
    (folder / "spec.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    return folder / "spec.yaml"


@pytest.fixture(scope="session")
def key_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Spec path of the cohort (its manifest beside it)."""
    return write_key_cohort(tmp_path_factory.mktemp("key_cohort"))


@pytest.fixture(scope="session")
def key_model(key_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Model folder of the ``attention`` core fitted on :func:`key_cohort`."""
    out = tmp_path_factory.mktemp("key_run")
    model = ModelConfig(
        core="attention",
        dim=16,
        core_options={"depth": 1, "heads": 2},
        encoders={"note": EncoderChoice(options={"depth": 1, "heads": 2})},
    )
    train = TrainConfig(
        max_epochs=12,
        batch_size=30,
        lr=5e-3,
        warmup_epochs=0,
        early_stopping_patience=None,
        cache=False,
        # Validation AUROC reaches 1.0 within an epoch or two, long before the probabilities
        # separate: selecting on the loss keeps the trained model, not the first perfect ranking.
        monitor="val/loss",
    )
    fit(load_spec(key_cohort), out, RunConfig(model=model, train=train), progress=False)
    return out / "model"
