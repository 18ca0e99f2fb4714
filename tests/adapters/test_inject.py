"""Pattern injection, named adapter sets on one shared backbone, and save → load of adapters alone."""

from __future__ import annotations

import copy
import json

import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer

from polymodal.adapters import (
    LoRAConfig,
    MoRConfig,
    adapter_state_dict,
    freeze_except_adapters,
    inject_adapters,
    list_adapters,
    load_adapters,
    read_adapter_config,
    save_adapters,
    set_active_adapter,
)
from polymodal.errors import ModelError

CONFIGS = {
    "lora": LoRAConfig(r=4, alpha=8.0, target_modules=("attn.qkv", "mlp.fc2")),
    "mor": MoRConfig(target_modules=("attn.qkv", "mlp.fc1", "mlp.fc2")),
}


def _tiny_vit(**options) -> VisionTransformer:
    torch.manual_seed(0)
    settings = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=3)
    return VisionTransformer(**(settings | options)).eval()


def _train_one_step(vit: VisionTransformer, names: list[str], images: torch.Tensor) -> None:
    """One SGD step through one pass per adapter name, each pass with its own target."""
    trainable = [p for p in vit.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.5)
    loss = torch.zeros(())
    for index, name in enumerate(names):
        set_active_adapter(vit, name)
        loss = loss + (vit(images) - float(index)).pow(2).mean()
    loss.backward()
    optimizer.step()


def test_patterns_match_module_name_suffixes_in_blocks_of_a_vit_with_registers():
    vit = _tiny_vit(reg_tokens=4, no_embed_class=True)

    names = inject_adapters(vit, MoRConfig(target_modules=("attn.proj", "mlp.fc1")))

    assert names == [
        "blocks.0.attn.proj",
        "blocks.0.mlp.fc1",
        "blocks.1.attn.proj",
        "blocks.1.mlp.fc1",
    ]
    assert list_adapters(vit) == ["default"]


def test_a_pattern_that_matches_nothing_names_the_patterns_and_some_linear_layers():
    with pytest.raises(
        ModelError, match=r"matches target_modules \['mlp.fc3'\].*blocks.0.attn.qkv"
    ):
        inject_adapters(_tiny_vit(), MoRConfig(target_modules=("mlp.fc3",)))


def test_a_pattern_that_matches_a_non_linear_module_is_refused():
    with pytest.raises(ModelError, match=r"'blocks\.0\.mlp' matches target_modules but is a Mlp"):
        inject_adapters(_tiny_vit(), MoRConfig(target_modules=("mlp",)))


def test_an_adapter_name_can_be_used_once_and_methods_do_not_stack_on_one_module():
    vit = _tiny_vit()
    inject_adapters(vit, MoRConfig(), adapter_name="first")

    with pytest.raises(ModelError, match="already has an adapter named 'first'"):
        inject_adapters(vit, MoRConfig(), adapter_name="first")
    with pytest.raises(ModelError, match=r"'blocks\.0\.mlp\.fc1' already carries mor adapters"):
        inject_adapters(vit, LoRAConfig(), adapter_name="other")
    with pytest.raises(ModelError, match="without dots"):
        inject_adapters(vit, MoRConfig(), adapter_name="a.b")
    with pytest.raises(ModelError, match=r"no adapter named 'third'; it has \['first'\]"):
        set_active_adapter(vit, "third")


def test_freezing_without_adapters_is_refused():
    with pytest.raises(ModelError, match="call inject_adapters before freezing"):
        freeze_except_adapters(_tiny_vit())


@pytest.mark.parametrize("method", ["lora", "mor"])
def test_two_adapter_sets_share_the_frozen_backbone_and_diverge_after_one_step(method):
    vit = _tiny_vit(reg_tokens=4, no_embed_class=True)
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        frozen = vit(images)
    backbone = {name: p.data_ptr() for name, p in vit.named_parameters()}
    inject_adapters(vit, CONFIGS[method], adapter_name="first")
    inject_adapters(vit, CONFIGS[method], adapter_name="second")
    freeze_except_adapters(vit)

    _train_one_step(vit, ["first", "second"], images)
    with torch.no_grad():
        set_active_adapter(vit, "first")
        first = vit(images)
        set_active_adapter(vit, "second")
        second = vit(images)
        set_active_adapter(vit, None)
        unadapted = vit(images)

    assert not torch.allclose(first, second, atol=1e-4)
    assert not torch.allclose(first, frozen, atol=1e-4)
    assert torch.equal(unadapted, frozen)
    # One copy of every frozen weight, at the same address, wherever the adapters moved it.
    after = {name.replace(".base_layer", ""): p.data_ptr() for name, p in vit.named_parameters()}
    assert all(after[name] == pointer for name, pointer in backbone.items())
    assert sum(p.numel() for p in vit.parameters() if not p.requires_grad) == sum(
        p.numel() for p in _tiny_vit(reg_tokens=4, no_embed_class=True).parameters()
    )


@pytest.mark.parametrize("method", ["lora", "mor"])
def test_save_then_load_adapters_alone_gives_identical_outputs_and_a_small_file(method, tmp_path):
    # ViT-Ti (5.7 M parameters, 12 blocks of width 192) at 32 px: big enough for the size check.
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=3)
    vit.eval()
    pristine = copy.deepcopy(vit)
    images = torch.randn(3, 3, 32, 32)
    injected = inject_adapters(vit, CONFIGS[method], adapter_name="first")
    freeze_except_adapters(vit)
    _train_one_step(vit, ["first"], images)
    with torch.no_grad():
        trained = vit(images)

    folder = save_adapters(vit, tmp_path / "adapters", "first")
    restored = copy.deepcopy(pristine)
    names = load_adapters(restored, folder, adapter_name="loaded")
    with torch.no_grad():
        reloaded = restored(images)

    assert torch.equal(reloaded, trained)
    assert names == injected
    assert read_adapter_config(folder) == CONFIGS[method]
    assert json.loads((folder / "adapter_config.json").read_text())["method"] == method
    backbone_bytes = sum(p.numel() * p.element_size() for p in pristine.parameters())
    assert (folder / "adapter.safetensors").stat().st_size < backbone_bytes / 5
    assert not any("base_layer" in key for key in adapter_state_dict(vit, "first"))


def test_loading_adapters_into_another_architecture_names_the_misfit(tmp_path):
    vit = _tiny_vit()
    inject_adapters(vit, MoRConfig(), adapter_name="first")
    folder = save_adapters(vit, tmp_path / "adapters", "first")

    with pytest.raises(ModelError, match=r"tensor blocks.0.mlp.fc1.0.lora_A has shape \(14, 32\)"):
        load_adapters(_tiny_vit(embed_dim=64), folder)
    with pytest.raises(ModelError, match=r"does not fit.*unexpected \['blocks.1"):
        load_adapters(_tiny_vit(depth=1), folder)
    with pytest.raises(ModelError, match=r"adapter_config\.json not found"):
        load_adapters(_tiny_vit(), tmp_path / "nowhere")


def test_an_unknown_field_in_a_saved_config_is_named(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"method": "mor", "rank": 4}))

    with pytest.raises(ModelError, match=r"unknown mor config fields \['rank'\]"):
        read_adapter_config(tmp_path)
