"""A tiny demo cohort and a tiny trained run, built once per test process and shared.

Other test folders import :func:`tiny_cohort` and :func:`tiny_run` from here (``tests/`` is on
``sys.path``): both write under pytest's session base folder and return what is already there
when called again, so every test file of one worker reuses the same cohort and the same run.
Tests must treat both as read-only (copy a folder before changing it).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from polymodal.data.spec import load_spec
from polymodal.datasets.demo import make_demo_cohort
from polymodal.training.fit import fit
from polymodal.training.run_config import RunConfig, load_run_config

torch.set_num_threads(1)

# Small enough for a CPU test (about 2 s per epoch), yet every modality kind and the real
# encoders and fusion core take part.
TINY_MODEL = [
    "model.core=synergy",
    "model.dim=16",
    "model.core_options={num_latents: 4, depth: 1}",
    "model.encoders.lesion={name: image_timm, options: {backbone: test_resnet}}",
    "model.encoders.ct={options: {patch_size: 8, depth: 0}}",
    "model.encoders.note={options: {depth: 1}}",
    "model.modality_dropout=0.25",
    "train.batch_size=16",
    "train.early_stopping_patience=null",
]
TINY_EPOCHS = 2
COHORT_ROWS = 100


def tiny_config(*overrides: str) -> RunConfig:
    """The tiny model and training settings, with extra dotted overrides on top."""
    return load_run_config(None, [*TINY_MODEL, *overrides])


def tiny_cohort(base: Path) -> Path:
    """Spec path of the shared 100-row demo cohort (32 px images, 16³ volumes) under ``base``."""
    folder = base / "tiny_cohort"
    spec_path = folder / "spec.yaml"
    if not spec_path.is_file():
        make_demo_cohort(folder, n=COHORT_ROWS, seed=0, image_size=32, volume_size=16)
    return spec_path


def tiny_run(base: Path) -> Path:
    """Run folder of the shared tiny fit (2 epochs) on :func:`tiny_cohort`, under ``base``."""
    out = base / "tiny_run"
    if not (out / "model" / "config.json").is_file():
        run = tiny_config(f"train.max_epochs={TINY_EPOCHS}")
        spec = load_spec(tiny_cohort(base))
        fit(spec, out, run, progress=False)
    return out


@pytest.fixture(scope="session")
def cohort_spec_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_cohort(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory.getbasetemp())
