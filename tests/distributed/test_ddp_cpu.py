"""Two CPU processes (DDP, gloo) train what one process trains, and resume each other.

The command line is run as a user runs it: Lightning's launcher re-runs the same command for
rank 1. One process with batch 16 and two with batch 8 each see the same rows per step (every
sampler is a function of seed and epoch, sharded by rank), so the weights agree to float
rounding and the validation metrics, gathered over both ranks, are equal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch.distributed as dist
from safetensors.torch import load_file

from polymodal.frames.spec_from_frame import spec_from_frame, with_row_ids, write_cohort
from polymodal.frames.text_table import as_text_table
from polymodal.training.resume import config_differences

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch without distributed")

# No random choice inside a step (modality dropout, dropout), so one and two processes agree.
SETTINGS = [
    "model.core=concat",
    "model.dim=16",
    "model.modality_dropout=0",
    "train.seed=0",
    "train.accelerator=cpu",
    "train.early_stopping_patience=null",
    "train.num_threads=1",
]
ONE = ["train.batch_size=16"]
TWO = ["train.batch_size=8", "train.devices=2", "train.strategy=ddp"]


def polymodal_fit(spec: Path, out: Path, *settings: str, resume: bool = False) -> str:
    command = [sys.executable, "-m", "polymodal", "fit", str(spec), "-o", str(out)]
    for item in settings:
        command += ["--set", item]
    if resume:
        command.append("--resume")
    env = {**os.environ, "POLYMODAL_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory, make_patients) -> Path:
    frame, id_column = with_row_ids(make_patients(96), None)
    data = spec_from_frame(as_text_table(frame), "outcome", id_column=id_column)
    folder = tmp_path_factory.mktemp("ddp") / "cohort"
    write_cohort(frame, data, folder)
    return folder / "spec.yaml"


def weights_gap(a: Path, b: Path) -> float:
    first, second = (
        load_file(a / "model" / "model.safetensors"),
        load_file(b / "model" / "model.safetensors"),
    )
    assert first.keys() == second.keys()
    return max(float((first[k].float() - second[k].float()).abs().max()) for k in first)


def val_metrics(run: Path) -> pd.DataFrame:
    metrics = pd.read_csv(run / "logs" / "metrics.csv")
    columns = [c for c in metrics.columns if c.startswith("val/") and "seconds" not in c]
    return metrics[["epoch", *columns]].dropna(subset=columns, how="all").reset_index(drop=True)


@pytest.fixture(scope="module")
def one_process(spec: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three epochs on one process, batch 16."""
    run = tmp_path_factory.mktemp("one") / "run"
    polymodal_fit(spec, run, *SETTINGS, *ONE, "train.max_epochs=3")
    return run


def test_two_processes_train_what_one_does(spec: Path, one_process: Path, tmp_path: Path) -> None:
    two = tmp_path / "two"
    printed = polymodal_fit(spec, two, *SETTINGS, *TWO, "train.max_epochs=3")
    assert weights_gap(one_process, two) < 1e-4
    # Every validation metric (AUROC, loss, ...) of the whole split, epoch by epoch.
    pd.testing.assert_frame_equal(val_metrics(one_process), val_metrics(two), atol=1e-6)
    assert printed.count("model folder:") == 1  # rank 1 writes and reports nothing
    assert json.loads((two / "run.json").read_text())["train"]["devices"] == 2


def test_a_checkpoint_resumes_across_process_counts(
    spec: Path, one_process: Path, tmp_path: Path
) -> None:
    # Epoch 1 on two processes, epoch 2 on one, epoch 3 on two again.
    run = tmp_path / "switching"
    polymodal_fit(spec, run, *SETTINGS, *TWO, "train.max_epochs=1")
    polymodal_fit(spec, run, *SETTINGS, *ONE, "train.max_epochs=2", resume=True)
    polymodal_fit(spec, run, *SETTINGS, *TWO, "train.max_epochs=3", resume=True)
    assert weights_gap(one_process, run) < 1e-4


def test_another_global_batch_cannot_resume() -> None:
    saved = {"train": {"batch_size": 16, "devices": 1}}
    assert config_differences(saved, {"train": {"batch_size": 8, "devices": 2}}) == []
    (difference,) = config_differences(saved, {"train": {"batch_size": 16, "devices": 2}})
    assert difference.startswith("global batch") and difference.endswith("16 → 32")
