"""Gradient modulation (OGM-GE for M modalities): coefficients, gradient scaling, window, export."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader

from polymodal.data.spec import load_spec
from polymodal.errors import ModelError
from polymodal.fusion import create_core
from polymodal.heads import create_head
from polymodal.model import MultimodalModel
from polymodal.model_folder import load_model_folder
from polymodal.training.config import TrainConfig
from polymodal.training.fit import fit
from polymodal.training.modulation import (
    GradientModulation,
    ModulationConfig,
    modulation_coefficients,
)
from polymodal.training.module import PolymodalModule
from training.conftest import tiny_config

DIM = 8
TARGETS = {"label": {"kind": "binary", "n_outputs": 1}}


def test_balanced_modalities_get_exactly_one() -> None:
    assert modulation_coefficients({"a": 0.7, "b": 0.7}, alpha=0.5) == {"a": 1.0, "b": 1.0}
    three = modulation_coefficients({"a": 0.61, "b": 0.61, "c": 0.61}, alpha=3.0)
    assert three == {"a": 1.0, "b": 1.0, "c": 1.0}


def test_the_dominant_modality_is_damped_and_only_it() -> None:
    k = modulation_coefficients({"image": 0.9, "text": 0.3, "labs": 0.3}, alpha=0.5)
    # ρ_image = 0.9 / mean(0.3, 0.3) = 3 -> k = 1 − tanh(0.5 · 2)
    assert k["image"] == pytest.approx(1 - math.tanh(1.0))
    assert k["text"] == 1.0 and k["labs"] == 1.0
    # Stronger α, stronger damping; a modality without evidence in the batch is left alone.
    assert modulation_coefficients({"image": 0.9, "text": 0.3}, alpha=2.0)["image"] < k["image"]
    no_evidence = modulation_coefficients({"image": 0.9, "text": float("nan")}, alpha=0.5)
    assert no_evidence == {"image": 1.0, "text": 1.0}


def test_window_must_be_ordered() -> None:
    with pytest.raises(ValueError, match=r"start \(0.6\) must be before end \(0.2\)"):
        ModulationConfig(start=0.6, end=0.2)
    schema = ModulationConfig.model_json_schema()["properties"]
    assert all(
        schema[f]["provenance"] == "recon"
        for f in ("alpha", "start", "end", "gaussian_enhancement")
    )


class TokenEncoder(nn.Module):
    """A Linear over ``features (B, N, 3)``; every token valid."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, DIM)

    def forward(self, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        features = inputs["features"]
        return self.proj(features), torch.ones(features.shape[:2], dtype=torch.bool)


def synthetic_batches(n_batches: int = 6, n: int = 32) -> list[dict]:
    """``strong`` carries the label in its features; ``weak`` is noise."""
    g = torch.Generator().manual_seed(0)
    batches = []
    for b in range(n_batches):
        label = (torch.rand(n, generator=g) > 0.5).float()
        sign = (2 * label - 1)[:, None, None]
        batches.append(
            {
                "ids": [f"{b}-{i}" for i in range(n)],
                "groups": [f"{b}-{i}" for i in range(n)],
                "inputs": {
                    "strong": {"features": sign + 0.3 * torch.randn(n, 2, 3, generator=g)},
                    "weak": {"features": torch.randn(n, 2, 3, generator=g)},
                },
                "available": {
                    "strong": torch.ones(n, dtype=torch.bool),
                    "weak": torch.ones(n, dtype=torch.bool),
                },
                "targets": {"label": label},
                "target_mask": {"label": torch.ones(n, dtype=torch.bool)},
            }
        )
    return batches


class RecordingModule(PolymodalModule):
    """Keeps each step's coefficients and encoder gradients just before and after the plugins."""

    records: list[dict]

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        grads = {
            m: [p.grad.clone() for p in self.model.encoders[m].parameters()]
            for m in self.model.encoders
        }
        record = {
            "progress": self.training_progress(),
            "k": dict(self.plugins[0].pending),
            "before": grads,
        }
        super().on_before_optimizer_step(optimizer)
        record["after"] = {
            m: [p.grad.clone() for p in self.model.encoders[m].parameters()] for m in grads
        }
        self.records.append(record)


def train_synthetic(
    tmp_path: Path, config: ModulationConfig, epochs: int = 4
) -> tuple[RecordingModule, Path]:
    torch.manual_seed(0)
    modalities = {"strong": "tabular", "weak": "tabular"}
    core = create_core("concat", modalities=modalities, dim=DIM)
    model = MultimodalModel(
        nn.ModuleDict({m: TokenEncoder() for m in modalities}),
        core,
        nn.ModuleDict({"label": create_head("label", TARGETS["label"], in_dim=core.out_dim)}),
    )
    plugin = GradientModulation.from_config(config, model=model, dim=DIM, target_infos=TARGETS)
    batches = synthetic_batches()
    loader = DataLoader(batches, batch_size=None, shuffle=False)
    train = TrainConfig(lr=5e-2, warmup_epochs=0)
    module = RecordingModule(model, TARGETS, train, steps_per_epoch=len(batches), plugins=[plugin])
    module.records = []
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=CSVLogger(tmp_path, name="logs", version=""),
        log_every_n_steps=1,
        limit_val_batches=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, loader)
    return module, tmp_path / "logs" / "metrics.csv"


def test_dominant_encoder_gradients_are_scaled_by_k_before_the_step(tmp_path: Path) -> None:
    config = ModulationConfig(start=0.0, end=1.0, gaussian_enhancement=False)
    module, metrics_csv = train_synthetic(tmp_path, config)
    records = module.records
    assert len(records) == 24
    for record in records:
        for modality, k in record["k"].items():
            for before, after in zip(
                record["before"][modality], record["after"][modality], strict=True
            ):
                assert torch.allclose(after, before * k, rtol=1e-6, atol=0), (modality, k)
    # Once the auxiliary heads have learned, the informative modality dominates and is damped.
    late = records[-6:]
    assert all(r["k"]["strong"] < 0.9 for r in late)
    assert all(r["k"]["weak"] == 1.0 for r in late)
    before, after = late[-1]["before"]["strong"][0], late[-1]["after"]["strong"][0]
    assert float(after.norm() / before.norm()) == pytest.approx(late[-1]["k"]["strong"], rel=1e-5)

    # Every step's coefficients are in the logged metrics.
    metrics = pd.read_csv(metrics_csv)
    for modality in ("strong", "weak"):
        logged = metrics[f"train/gm/{modality}"].dropna().to_numpy()
        assert len(logged) == len(records)
        expected = [r["k"][modality] for r in records]
        assert logged == pytest.approx(expected, rel=1e-6)
    assert metrics["train/gm_aux/loss"].notna().sum() == len(records)


def test_modulation_is_inactive_outside_its_window(tmp_path: Path) -> None:
    config = ModulationConfig(start=0.5, end=1.0, gaussian_enhancement=False)
    module, _ = train_synthetic(tmp_path, config)
    outside = [r for r in module.records if r["progress"] < 0.5]
    inside = [r for r in module.records if r["progress"] >= 0.5]
    assert len(outside) == len(inside) == 12
    for record in outside:
        assert record["k"] == {"strong": 1.0, "weak": 1.0}
        for modality in ("strong", "weak"):
            assert all(
                torch.equal(a, b)
                for a, b in zip(record["after"][modality], record["before"][modality], strict=True)
            )
    assert any(r["k"]["strong"] < 1.0 for r in inside)


def test_gaussian_enhancement_adds_noise_to_the_damped_encoder_only(tmp_path: Path) -> None:
    config = ModulationConfig(start=0.0, end=1.0, gaussian_enhancement=True)
    module, _ = train_synthetic(tmp_path, config, epochs=3)
    damped = [r for r in module.records if r["k"]["strong"] < 1.0 and r["k"]["weak"] == 1.0]
    assert damped
    for record in damped:
        k = record["k"]["strong"]
        weights_before, weights_after = record["before"]["strong"][0], record["after"]["strong"][0]
        noise = weights_after - k * weights_before
        assert noise.abs().sum() > 0
        # The noise is on the scale of the original gradient, not of anything larger.
        assert 0.2 * weights_before.std() < noise.std() < 5 * weights_before.std()
        assert all(
            torch.equal(a, b)
            for a, b in zip(record["after"]["weak"], record["before"]["weak"], strict=True)
        )


def test_one_modality_is_refused() -> None:
    with pytest.raises(ModelError, match="balances modalities against each other"):
        GradientModulation(ModulationConfig(), modalities=["labs"], dim=DIM, target_infos=TARGETS)


def test_a_gm_run_exports_a_model_folder_that_loads(cohort_spec_path: Path, tmp_path: Path) -> None:
    run = tiny_config("train.max_epochs=1")
    out = tmp_path / "gm_run"
    run = run.model_copy(update={"modulation": ModulationConfig(end=1.0)})
    fit(load_spec(cohort_spec_path), out, run, progress=False)
    loaded = load_model_folder(out / "model")
    assert set(loaded.model.modalities) == {"lesion", "ct", "labs", "note", "vitals"}
    # The auxiliary heads stay with the training checkpoint and never reach the model folder.
    exported = load_file(str(out / "model" / "model.safetensors"))
    assert not any(key.startswith("plugins") for key in exported)
    checkpoint = torch.load(
        out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    assert any(key.startswith("plugins.0.heads.labs.label") for key in checkpoint["state_dict"])
    metrics = pd.read_csv(out / "logs" / "metrics.csv")
    for modality in loaded.model.modalities:
        coefficients = metrics[f"train/gm/{modality}"].dropna()
        assert len(coefficients) > 0 and ((coefficients > 0) & (coefficients <= 1)).all()
