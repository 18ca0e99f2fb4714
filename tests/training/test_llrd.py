"""train.layer_decay: lr ratios by timm's backbone layers, weight decay split, warm-up and cycles."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import timm
import torch
from torch import nn

from polymodal.encoders import create_encoder
from polymodal.training.config import TrainConfig
from polymodal.training.module import PolymodalModule, warmup_cosine
from polymodal.training.param_groups import layered_backbones


class BackboneAndHead(nn.Module):
    """A timm backbone under ``encoder.backbone`` and a head beside it, as in a polymodal model."""

    def __init__(self, backbone: str) -> None:
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.backbone = timm.create_model(backbone, pretrained=False, num_classes=0)
        self.head = nn.Linear(self.encoder.backbone.num_features, 2)


def configured(model: nn.Module, cfg: TrainConfig, steps_per_epoch: int = 5, total: int = 20):
    module = PolymodalModule(model, {}, cfg, steps_per_epoch=steps_per_epoch)
    module.trainer = SimpleNamespace(estimated_stepping_batches=total)
    return module.configure_optimizers()


def lr_and_decay_of(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, tuple]:
    """``{parameter name: (lr, weight decay)}`` from the optimiser's groups."""
    names = {id(p): n for n, p in model.named_parameters()}
    return {
        names[id(p)]: (group["lr"], group["weight_decay"])
        for group in optimizer.param_groups
        for p in group["params"]
    }


def test_efficientnet_blocks_get_lr_times_powers_of_the_decay() -> None:
    torch.manual_seed(0)
    model = BackboneAndHead("test_efficientnet")
    cfg = TrainConfig(lr=1.0, weight_decay=0.05, layer_decay=0.5, warmup_epochs=0)
    optimizer = configured(model, cfg)["optimizer"]
    settings = lr_and_decay_of(optimizer, model)
    assert len(settings) == len(list(model.parameters()))  # every parameter, once
    # Named groups: the lr monitor logs one column per depth below the head.
    names = [group["name"] for group in optimizer.param_groups]
    assert names[:4] == [
        "layer_decay_0",
        "layer_decay_0_no_wd",
        "layer_decay_1",
        "layer_decay_1_no_wd",
    ]
    assert len(set(names)) == len(names) and names[-1] == "layer_decay_6_no_wd"
    # test_efficientnet: stem (layer 0), then blocks.0 … blocks.4 (layers 1–5).
    assert settings["head.weight"] == (1.0, 0.05)
    assert settings["head.bias"] == (1.0, 0.0)
    assert settings["encoder.backbone.blocks.4.0.conv_pw.weight"] == (0.5, 0.05)
    assert settings["encoder.backbone.blocks.3.0.conv_pw.weight"] == (0.25, 0.05)
    assert settings["encoder.backbone.blocks.0.0.conv.weight"] == (0.5**5, 0.05)
    assert settings["encoder.backbone.conv_stem.weight"] == (0.5**6, 0.05)
    # Norms and biases are never weight-decayed.
    assert settings["encoder.backbone.bn1.weight"] == (0.5**6, 0.0)
    assert settings["encoder.backbone.blocks.4.0.bn1.bias"] == (0.5, 0.0)
    assert max(lr for lr, _ in settings.values()) == 1.0


def test_vit_blocks_decay_and_its_position_embedding_is_not_weight_decayed() -> None:
    model = BackboneAndHead("test_vit")
    cfg = TrainConfig(lr=2.0, weight_decay=0.1, layer_decay=0.75, warmup_epochs=0)
    settings = lr_and_decay_of(configured(model, cfg)["optimizer"], model)
    depth = len(model.encoder.backbone.blocks)  # layers: embeddings 0, blocks 1..depth
    for i in range(depth):
        lr, decay = settings[f"encoder.backbone.blocks.{i}.mlp.fc1.weight"]
        assert lr == pytest.approx(2.0 * 0.75 ** (depth - i)) and decay == 0.1
    assert settings["encoder.backbone.norm.weight"] == pytest.approx((2.0 * 0.75, 0.0))
    # The ViT's own no_weight_decay() names (3-D tensors) follow timm's recipe.
    assert settings["encoder.backbone.pos_embed"] == pytest.approx((2.0 * 0.75 ** (depth + 1), 0.0))
    assert settings["encoder.backbone.cls_token"][1] == 0.0
    assert settings["head.weight"] == (2.0, 0.1)


def test_frozen_parameters_stay_out_of_the_optimiser() -> None:
    model = BackboneAndHead("test_efficientnet")
    model.encoder.backbone.conv_stem.weight.requires_grad_(False)
    cfg = TrainConfig(layer_decay=0.5)
    settings = lr_and_decay_of(configured(model, cfg)["optimizer"], model)
    assert "encoder.backbone.conv_stem.weight" not in settings
    assert "encoder.backbone.blocks.0.0.conv.weight" in settings


def test_warmup_and_cosine_scale_every_group_alike() -> None:
    model = BackboneAndHead("test_efficientnet")
    cfg = TrainConfig(lr=1e-2, layer_decay=0.5, warmup_epochs=1.0, min_lr_ratio=0.1)
    setup = configured(model, cfg, steps_per_epoch=4, total=12)
    optimizer, scheduler = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    peaks = [group["lr_scale"] * 1e-2 for group in optimizer.param_groups]
    assert sorted(set(peaks), reverse=True)[:3] == pytest.approx([1e-2, 5e-3, 2.5e-3])
    for step in range(12):
        factor = warmup_cosine(step, warmup_steps=4, total_steps=12, min_ratio=0.1)
        lrs = [group["lr"] for group in optimizer.param_groups]
        assert lrs == pytest.approx([peak * factor for peak in peaks])
        optimizer.step()
        scheduler.step()


def test_the_cyclic_schedule_scales_its_bounds_per_group() -> None:
    model = BackboneAndHead("test_efficientnet")
    cfg = TrainConfig(
        optimizer="sgd",
        schedule="cyclic",
        lr=1e-2,
        cyclic_base_lr=1e-4,
        cyclic_step_epochs=1,
        layer_decay=0.5,
    )
    setup = configured(model, cfg, steps_per_epoch=3)
    optimizer, scheduler = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    scales = [group["lr_scale"] for group in optimizer.param_groups]
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-4 * s for s in scales])
    for _ in range(3):  # to the peak
        optimizer.step()
        scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-2 * s for s in scales])


def test_an_image_timm_encoders_backbone_is_found_inside_a_model() -> None:
    info = {"kind": "image", "channels": 3, "size": [32, 32], "views": 1}
    encoder = create_encoder("image_timm", input_info=info, dim=8, backbone="test_resnet")
    model = nn.ModuleDict({"lesion": encoder})
    assert list(layered_backbones(model)) == ["lesion.backbone"]
    cfg = TrainConfig(lr=1.0, layer_decay=0.5, warmup_epochs=0)
    settings = lr_and_decay_of(configured(model, cfg)["optimizer"], model)
    assert settings["lesion.proj.weight"][0] == 1.0
    assert settings["lesion.backbone.layer4.0.conv1.weight"][0] == 0.5
    assert settings["lesion.backbone.conv1.0.weight"][0] == 0.5**5
