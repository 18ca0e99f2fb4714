"""Tiny untrained models on the shared tiny demo cohort, for the export tests.

Weights need not be trained for a parity test: ONNX Runtime and PyTorch must agree on whatever
the weights are. Every model is dim 16 with one layer, so an export takes seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from polymodal.config import ModelConfig
from polymodal.data.collate import collate_samples
from polymodal.data.dataset import CohortDataset
from polymodal.data.manifest import load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.spec import CohortSpec, load_spec
from polymodal.model import build_model
from polymodal.model_folder import LoadedModel, save_model_folder
from training.conftest import tiny_cohort

torch.set_num_threads(1)

# Image (timm CNN), tabular, word-level text from scratch, series.
MODALITIES = ["lesion", "labs", "note", "vitals"]
ENCODERS = {
    "lesion": {"name": "image_timm", "options": {"backbone": "test_resnet"}},
    "note": {"options": {"depth": 1, "heads": 2}},
    "ct": {"options": {"patch_size": 8, "depth": 0}},
}
CORE_OPTIONS: dict[str, dict[str, Any]] = {
    "concat": {},
    "synergy": {"num_latents": 4, "depth": 1, "cross_dim_head": 8, "latent_heads": 2},
    "bottleneck": {"depth": 1, "num_bottlenecks": 2, "heads": 2},
    "attention": {"depth": 1, "heads": 2},
    "gated": {},
    "prompted": {"depth": 1, "heads": 2, "prompt_buckets": 16},
    "intervention": {
        "backbone": "vit_tiny_patch16_224",
        "backbone_options": {"img_size": 32, "embed_dim": 32, "depth": 1, "num_heads": 2},
    },
}


@dataclass
class Cohort:
    """The fitted preprocessing state, spec and a few collated rows of the tiny cohort."""

    spec: CohortSpec
    preprocessor: Preprocessor
    dataset: CohortDataset

    def batch(self, rows: int) -> dict[str, Any]:
        samples = [self.dataset[i] for i in range(rows)]
        return collate_samples(samples, pad_ids=self.preprocessor.pad_ids())


@pytest.fixture(scope="session")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    spec = load_spec(tiny_cohort(tmp_path_factory.getbasetemp()))
    rows = load_cohort(spec)
    preprocessor = Preprocessor.fit(rows)
    return Cohort(spec, preprocessor, CohortDataset(rows, preprocessor, "val"))


def tiny_model(
    cohort: Cohort, core: str, modalities: list[str] = MODALITIES, seed: int = 0
) -> LoadedModel:
    """An untrained ``core`` model (dim 16) over ``modalities``, in eval mode, as a loaded folder."""
    torch.manual_seed(seed)
    config = ModelConfig(
        core=core,
        dim=16,
        core_options=CORE_OPTIONS[core],
        modalities=modalities,
        encoders={m: e for m, e in ENCODERS.items() if m in modalities},
    )
    prep = cohort.preprocessor
    input_infos = {m: prep.input_info(m) for m in prep.modalities}
    target_infos = {t: prep.target_info(t) for t in prep.targets}
    model = build_model(config, input_infos, target_infos).eval()
    return LoadedModel(model, config, prep, cohort.spec, input_infos, target_infos, Path("unsaved"))


def save_tiny_model(loaded: LoadedModel, folder: Path) -> Path:
    """Write ``loaded`` as a model folder (what ``polymodal export`` reads)."""
    return save_model_folder(
        folder,
        model=loaded.model,
        config=loaded.config,
        preprocessor=loaded.preprocessor,
        spec=loaded.spec,
    )
