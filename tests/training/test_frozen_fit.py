"""`fit` leaves a frozen image backbone exactly as it was built, in memory and in the model folder."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from polymodal.data.spec import load_spec
from polymodal.model import MultimodalModel
from polymodal.training.fit import fit
from training.conftest import tiny_cohort, tiny_config

BACKBONE = "encoders.lesion.backbone."


def frozen_image_fit(tmp_path: Path, freeze: str) -> tuple[dict, MultimodalModel, Path]:
    """One epoch of an image-only model; (initial backbone state, the trained model, model folder)."""
    run = tiny_config(
        "model.core=single",
        "model.core_options={modality: lesion}",
        "model.encoders.lesion={name: image_timm, options: "
        f"{{backbone: test_resnet, freeze: {freeze}}}}}",
        "train.max_epochs=1",
    )
    built: list[MultimodalModel] = []
    initial: dict[str, torch.Tensor] = {}

    def remember(model: MultimodalModel) -> None:
        built.append(model)
        initial.update({k: v.clone() for k, v in model.state_dict().items() if BACKBONE in k})

    result = fit(
        load_spec(tiny_cohort(tmp_path.parent.parent)),
        tmp_path / "run",
        run,
        warm_start=remember,
        progress=False,
    )
    return initial, built[0], result.model_dir


def changed(initial: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> list[str]:
    return [k for k, v in initial.items() if not torch.equal(state[k], v)]


def test_a_frozen_backbone_comes_out_of_fit_bit_identical(tmp_path: Path) -> None:
    initial, model, model_dir = frozen_image_fit(tmp_path, "all")
    assert any(k.endswith("running_mean") for k in initial)
    assert changed(initial, model.state_dict()) == []  # parameters, statistics and counters
    assert changed(initial, load_file(model_dir / "model.safetensors")) == []
    assert not any(m.training for m in model.encoders["lesion"].backbone.modules())


def test_all_but_last_trains_only_the_last_stage_in_fit(tmp_path: Path) -> None:
    initial, model, model_dir = frozen_image_fit(tmp_path, "all_but_last")
    saved = load_file(model_dir / "model.safetensors")
    last = f"{BACKBONE}layer4."
    frozen = {k: v for k, v in initial.items() if not k.startswith(last)}
    assert frozen and changed(frozen, saved) == []
    assert changed(frozen, model.state_dict()) == []
    moved = changed({k: v for k, v in initial.items() if k.startswith(last)}, saved)
    assert any(k.endswith(".weight") for k in moved) and any(
        k.endswith("running_var") for k in moved
    )


def test_fit_with_feature_cache_keeps_the_backbone(tmp_path: Path) -> None:
    """The frozen-feature cache fills during the first epoch; the backbone still never moves."""
    run_options = "{backbone: test_resnet, freeze: all, feature_cache: true}"
    run = tiny_config(
        "model.core=single",
        "model.core_options={modality: lesion}",
        f"model.encoders.lesion={{name: image_timm, options: {run_options}}}",
        "train.max_epochs=1",
        f"train.cache_dir={tmp_path / 'cache'}",
        "train.frozen_feature_store=false",  # the in-model cache, filled inside the epoch
    )
    initial: dict[str, torch.Tensor] = {}
    result = fit(
        load_spec(tiny_cohort(tmp_path.parent.parent)),
        tmp_path / "run",
        run,
        warm_start=lambda m: initial.update(
            {k: v.clone() for k, v in m.state_dict().items() if BACKBONE in k}
        ),
        progress=False,
    )
    assert changed(initial, load_file(result.model_dir / "model.safetensors")) == []
    assert list((tmp_path / "cache").rglob("features/**/*.safetensors"))
