"""The Early Intervention run configs (configs/ei): each loads and trains on two images."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from polymodal.cli import app
from polymodal.data.demo import make_demo_cohort
from polymodal.data.spec import load_spec
from polymodal.errors import PolymodalError
from polymodal.model_folder import load_model_folder
from polymodal.training.fit import fit
from polymodal.training.run_config import load_run_config

EI_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "ei"
CORES = {
    "ei_mor": "intervention",
    "ei_mor_adamw": "intervention",
    "full_finetune": "single",
    "linear_probe": "single",
    "lora": "single",
    "mor": "single",
    "late_fusion": "concat",
}
TINY_VIT = "{embed_dim: 32, depth: 2, num_heads: 2}"


def tiny(core: str) -> list[str]:
    """Overrides that shrink a config's ViT (ViT-B) to 2 blocks of width 32 on 32-pixel images."""
    common = ["model.dim=16", "train.max_epochs=1", "train.batch_size=64"]
    if core == "intervention":
        return [
            *common,
            "model.core_options.backbone=vit_tiny_patch16_224",
            "model.core_options.backbone_options={img_size: 32, embed_dim: 32, depth: 2, num_heads: 2}",
        ]
    encoders = [
        f"model.encoders.{m}.options.{key}={value}"
        for m in ("lesion", "closeup")
        for key, value in (("backbone", "vit_tiny_patch16_224"), ("backbone_options", TINY_VIT))
    ]
    return [*common, *encoders]


@pytest.fixture(scope="module")
def two_view_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ei_configs") / "cohort"
    make_demo_cohort(folder, n=48, seed=0, image_size=32, volume_size=16, second_view=True)
    return folder / "two_view.yaml"


def test_every_config_is_there_and_says_what_it_is() -> None:
    assert {p.stem for p in EI_CONFIGS.glob("*.yaml")} == set(CORES)
    for name, core in CORES.items():
        text = (EI_CONFIGS / f"{name}.yaml").read_text()
        assert text.startswith("#") and "polymodal fit" in text  # how to run it
        run = load_run_config(EI_CONFIGS / f"{name}.yaml")
        assert run.model.core == core
        assert (run.intervention_loss is not None) == (core == "intervention")
        assert run.train.monitor == "auprc_macro" and run.train.early_stopping_patience == 10
        assert run.train.sampling == "class_balanced"
    paper = load_run_config(EI_CONFIGS / "ei_mor.yaml")
    assert (paper.train.optimizer, paper.train.momentum, paper.train.schedule) == (
        "sgd",
        0.95,
        "cyclic",
    )
    assert (paper.train.lr, paper.train.cyclic_base_lr, paper.train.batch_size) == (1e-3, 1e-5, 8)
    assert paper.model.core_options["adapter"] == "mor"
    assert paper.model.core_options["detach_branches"] is True
    loss = paper.intervention_loss
    weights = (
        loss.mm_loss_weight,
        loss.first_single_loss_weight,
        loss.second_single_loss_weight,
        loss.route_sup_loss_weight,
    )
    assert weights == (1.0, 0.3, 1.0, 0.1)
    adamw = load_run_config(EI_CONFIGS / "ei_mor_adamw.yaml")
    assert (adamw.train.optimizer, adamw.train.schedule) == ("adamw", "cosine")
    assert adamw.model == paper.model


@pytest.mark.parametrize("name", list(CORES))
def test_each_config_trains_on_a_tiny_two_image_cohort(
    name: str, two_view_spec: Path, tmp_path: Path
) -> None:
    run = load_run_config(EI_CONFIGS / f"{name}.yaml", tiny(CORES[name]))
    result = fit(
        load_spec(two_view_spec),
        tmp_path / name,
        model_config=run.model,
        train_config=run.train,
        intervention_loss=run.intervention_loss,
        progress=False,
    )
    assert result.monitor == "val/lesion_type/auprc_macro"
    metrics = pd.read_csv(tmp_path / name / "logs" / "metrics.csv")
    logged = set(metrics.columns)
    assert "train/loss" in logged and result.monitor in logged
    if CORES[name] == "intervention":
        assert {"train/ei/first", "train/ei/second", "train/ei/route"} <= logged
    loaded = load_model_folder(result.model_dir)
    assert loaded.config.core == CORES[name]


def test_detached_branches_without_the_ei_loss_are_refused(
    two_view_spec: Path, tmp_path: Path
) -> None:
    run = load_run_config(EI_CONFIGS / "ei_mor.yaml", tiny("intervention"))
    with pytest.raises(PolymodalError, match="no intervention_loss section"):
        fit(
            load_spec(two_view_spec),
            tmp_path / "no_loss",
            model_config=run.model,
            train_config=run.train,
            progress=False,
        )


def test_polymodal_fit_passes_the_ei_loss_section(two_view_spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    args = ["fit", str(two_view_spec), "-o", str(out), "-c", str(EI_CONFIGS / "ei_mor.yaml")]
    args += [a for item in tiny("intervention") for a in ("--set", item)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "train/ei/route" in pd.read_csv(out / "logs" / "metrics.csv").columns
    assert (
        json.loads((out / "run.json").read_text())["intervention_loss"]["route_sup_loss_weight"]
        == 0.1
    )
