"""LoRA adapters through PEFT: identity at start, exact counts, several named adapters that train."""

from __future__ import annotations

import pytest
import torch
from peft.tuners.lora import Linear as PeftLoraLinear
from timm.models.vision_transformer import VisionTransformer

from polymodal.adapters import (
    LoRAConfig,
    count_trainable_parameters,
    freeze_except_adapters,
    inject_adapters,
    set_active_adapter,
)
from polymodal.errors import ModelError


def _tiny_vit(**options) -> VisionTransformer:
    torch.manual_seed(0)
    settings = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=3)
    return VisionTransformer(**(settings | options)).eval()


def test_lora_adapted_vit_with_registers_starts_identical_to_the_frozen_one():
    vit = _tiny_vit(reg_tokens=4, no_embed_class=True)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        frozen = vit(images)
        inject_adapters(
            vit, LoRAConfig(target_modules=("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"))
        )
        adapted = vit(images)

    assert isinstance(vit.blocks[0].mlp.fc1, PeftLoraLinear)
    assert torch.equal(adapted, frozen)


def test_lora_trainable_parameter_count_is_rank_times_in_plus_out():
    vit = _tiny_vit()
    inject_adapters(vit, LoRAConfig(r=4, alpha=8.0))
    freeze_except_adapters(vit)

    # fc1 32→128 and fc2 128→32: 4·(32+128) = 640 each, two blocks.
    assert count_trainable_parameters(vit) == 2 * 2 * 640
    assert vit.blocks[0].mlp.fc1.scaling["default"] == 2.0


def test_injecting_lora_leaves_the_models_own_trainability_alone():
    vit = _tiny_vit()
    inject_adapters(vit, LoRAConfig())

    # PEFT alone would freeze the head; freezing is freeze_except_adapters' job.
    assert vit.head.weight.requires_grad
    assert vit.blocks[0].mlp.fc1.base_layer.weight.requires_grad


def test_two_named_lora_adapters_both_get_gradients_from_one_two_pass_step():
    vit = _tiny_vit()
    inject_adapters(vit, LoRAConfig(), adapter_name="first")
    inject_adapters(vit, LoRAConfig(), adapter_name="second")
    freeze_except_adapters(vit)
    images = torch.randn(2, 3, 32, 32)

    set_active_adapter(vit, "first")
    first = vit(images)
    set_active_adapter(vit, "second")  # PEFT's own switch would stop "first" from learning
    second = vit(images)
    (first.sum() - second.sum()).backward()

    layer = vit.blocks[0].mlp.fc1
    assert layer.lora_B["first"].weight.grad.abs().sum() > 0
    assert layer.lora_B["second"].weight.grad.abs().sum() > 0
    assert layer.base_layer.weight.grad is None


def test_lora_config_rejects_a_rank_below_one():
    with pytest.raises(ModelError, match="rank r must be at least 1"):
        LoRAConfig(r=0)
