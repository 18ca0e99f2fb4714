"""The Early Intervention run configs (configs/ei): each loads and trains on two images."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest
import timm
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from polymodal.adapters import adapter_state_dict
from polymodal.cli import app
from polymodal.data.spec import load_spec
from polymodal.datasets.demo import make_demo_cohort
from polymodal.errors import ModelError, PolymodalError
from polymodal.fusion import create_core
from polymodal.model_folder import load_model_folder
from polymodal.training.adapter_source import init_core_adapters, read_adapter_weights
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
        run,
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
    run = run.model_copy(update={"intervention_loss": None})
    with pytest.raises(PolymodalError, match="no intervention_loss section"):
        fit(load_spec(two_view_spec), tmp_path / "no_loss", run, progress=False)


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


def test_two_step_protocol_ei_starts_from_the_single_image_mor_models(
    two_view_spec: Path, tmp_path: Path
) -> None:
    # Step 1: one single-image MoR model per image, on one frozen ViT weights file.
    torch.manual_seed(0)
    vit = timm.create_model(
        "vit_tiny_patch16_224", num_classes=0, img_size=32, embed_dim=32, depth=2, num_heads=2
    )
    weights = tmp_path / "vit.safetensors"
    save_file(vit.state_dict(), str(weights))
    singles = {}
    for image in ("lesion", "closeup"):
        run = load_run_config(
            EI_CONFIGS / "mor.yaml",
            [
                *tiny("single"),
                f"model.core_options.modality={image}",
                f"model.encoders.{image}.options.pretrained={weights}",
            ],
        )
        singles[image] = fit(
            load_spec(two_view_spec),
            tmp_path / f"mor_{image}",
            run,
            progress=False,
        ).model_dir

    # Step 2: EI from those checkpoints. A learning rate of ~0 keeps the adapters where they
    # started, so the exported EI model shows its initial adapters.
    run = load_run_config(
        EI_CONFIGS / "ei_mor.yaml",
        [
            *tiny("intervention"),
            f"model.core_options.pretrained={weights}",
            f"intervention_loss.init_from={{lesion: {singles['lesion']}, closeup: "
            f"{singles['closeup']}}}",
            "train.lr=1e-20",
            "train.cyclic_base_lr=1e-20",
        ],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # same frozen weights: no mismatch warning
        warnings.filterwarnings("ignore", message="(?!.*frozen backbone weights differ)")
        result = fit(
            load_spec(two_view_spec),
            tmp_path / "ei",
            run,
            progress=False,
        )
    assert json.loads((tmp_path / "ei" / "run.json").read_text())["intervention_loss"][
        "init_from"
    ] == {m: str(p) for m, p in singles.items()}
    core = load_model_folder(result.model_dir).model.core
    for image, model_dir in singles.items():
        encoder = load_model_folder(model_dir).model.encoders[image]
        single = adapter_state_dict(encoder.backbone, "mor")
        for adapter_set in (f"ref_{image}", f"tgt_{image}"):
            ei = adapter_state_dict(core.backbone, adapter_set)
            for key, tensor in single.items():
                torch.testing.assert_close(ei[f"vit.{key}"], tensor, atol=1e-6, rtol=0)
        # The single model's adapters trained: this is not the identity initialisation.
        assert any(t.abs().sum() > 0 for k, t in single.items() if "lora_B" in k)


def test_single_models_on_other_frozen_weights_are_flagged(
    two_view_spec: Path, tmp_path: Path
) -> None:
    run = load_run_config(
        EI_CONFIGS / "mor.yaml", [*tiny("single"), "model.core_options.modality=lesion"]
    )
    single = fit(
        load_spec(two_view_spec),
        tmp_path / "mor_lesion",
        run,
        progress=False,
    ).model_dir
    torch.manual_seed(1)  # another random ViT than the single model's
    core = create_core(
        "intervention",
        modalities={"lesion": "image", "closeup": "image"},
        dim=16,
        backbone="vit_tiny_patch16_224",
        backbone_options={"img_size": 32, "embed_dim": 32, "depth": 2, "num_heads": 2},
    )
    with pytest.warns(UserWarning, match="frozen backbone weights differ"):
        assert init_core_adapters(core, {"lesion": single}) == {
            "lesion": ["ref_lesion", "tgt_lesion"]
        }
    with pytest.raises(ModelError, match="no adapted image encoder for modality 'closeup'"):
        read_adapter_weights("closeup", single)
