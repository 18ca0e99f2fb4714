"""The ViT token-insertion hook: fidelity to timm, tokens before block k, masks, views, two passes."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from polymodal.adapters import (
    MoRConfig,
    freeze_except_adapters,
    inject_adapters,
    set_active_adapter,
)
from polymodal.errors import ModelError
from polymodal.layers.vit_insertion import ViTWithInsertion


def _tiny_vit(**options) -> VisionTransformer:
    torch.manual_seed(0)
    settings = dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2, num_classes=3)
    return VisionTransformer(**(settings | options)).eval()


def _block_outputs(hooked: ViTWithInsertion, images, extra=None, extra_mask=None) -> list:
    """Each block's output on the image positions (CLS, registers, patches)."""
    base_length = hooked.num_prefix_tokens + hooked.vit.patch_embed.num_patches
    outputs = []
    handles = [
        block.register_forward_hook(lambda _m, _i, out: outputs.append(out[:, :base_length]))
        for block in hooked.blocks
    ]
    with torch.no_grad():
        hooked(images, extra, extra_mask)
    for handle in handles:
        handle.remove()
    return outputs


@pytest.mark.parametrize("registers", [0, 4])
def test_without_extra_tokens_the_hook_returns_timms_own_features(registers):
    vit = _tiny_vit(reg_tokens=registers, no_embed_class=registers > 0)
    hooked = ViTWithInsertion(vit)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = vit.forward_features(images)  # (B, 1 + R + 16, D)
        out = hooked(images)

    assert out["cls"].shape == (2, 32)
    assert out["patches"].shape == (2, 16, 32)
    assert out["extra"].shape == (2, 0, 32)
    assert torch.equal(out["cls"], features[:, 0])
    assert torch.equal(out["patches"], features[:, 1 + registers :])


def test_tokens_inserted_before_block_0_reach_every_block():
    hooked = ViTWithInsertion(_tiny_vit(reg_tokens=4, no_embed_class=True), insert_at=0)
    images = torch.randn(2, 3, 32, 32)
    extra = torch.randn(2, 2, 32)

    plain = _block_outputs(hooked, images)
    intervened = _block_outputs(hooked, images, extra)

    assert len(plain) == 3
    assert all(not torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, intervened, strict=True))


def test_tokens_inserted_before_block_k_leave_earlier_blocks_alone():
    hooked = ViTWithInsertion(_tiny_vit(), insert_at=2)
    images = torch.randn(2, 3, 32, 32)

    plain = _block_outputs(hooked, images)
    intervened = _block_outputs(hooked, images, torch.randn(2, 1, 32))

    assert torch.equal(plain[0], intervened[0]) and torch.equal(plain[1], intervened[1])
    assert not torch.allclose(plain[2], intervened[2], atol=1e-6)


@pytest.mark.parametrize("insert_at", [0, 1])
def test_a_masked_extra_token_changes_nothing(insert_at):
    hooked = ViTWithInsertion(_tiny_vit(reg_tokens=4, no_embed_class=True), insert_at=insert_at)
    images = torch.randn(2, 3, 32, 32)
    extra = torch.randn(2, 2, 32)
    mask = torch.tensor([[True, False], [True, False]])
    with torch.no_grad():
        masked = hooked(images, extra, mask)
        other_garbage = hooked(images, torch.cat([extra[:, :1], 1e3 * extra[:, 1:]], 1), mask)
        only_valid = hooked(images, extra[:, :1])

    for key in ("cls", "patches"):
        torch.testing.assert_close(masked[key], only_valid[key], atol=1e-6, rtol=0)
        torch.testing.assert_close(masked[key], other_garbage[key], atol=1e-6, rtol=0)
    torch.testing.assert_close(masked["extra"][:, :1], only_valid["extra"], atol=1e-6, rtol=0)
    assert torch.equal(masked["extra"][:, 1], torch.zeros(2, 32))


def test_a_sample_whose_extra_tokens_are_all_masked_matches_the_plain_pass():
    hooked = ViTWithInsertion(_tiny_vit())
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = hooked(images)
        mixed = hooked(images, torch.randn(2, 1, 32), torch.tensor([[True], [False]]))

    torch.testing.assert_close(mixed["cls"][1], plain["cls"][1], atol=1e-6, rtol=0)
    assert not torch.allclose(mixed["cls"][0], plain["cls"][0], atol=1e-6)


def test_timm_vit_tiny_accepts_extra_tokens():
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32).eval()
    hooked = ViTWithInsertion(vit)
    with torch.no_grad():
        out = hooked(
            torch.randn(1, 3, 32, 32), torch.randn(1, 3, 192), torch.ones(1, 3, dtype=torch.bool)
        )

    assert out["cls"].shape == (1, 192) and out["patches"].shape == (1, 4, 192)
    assert out["extra"].shape == (1, 3, 192)


def test_views_are_pooled_over_present_images_and_absent_ones_never_run():
    hooked = ViTWithInsertion(_tiny_vit(reg_tokens=4, no_embed_class=True))
    images = torch.randn(3, 2, 3, 32, 32)
    view_mask = torch.tensor([[True, True], [True, False], [False, False]])
    images[~view_mask] = float("nan")  # absent views must never reach the backbone
    extra = torch.randn(3, 1, 32)
    with torch.no_grad():
        pooled_max = hooked.forward_views(images, view_mask, extra, pool="max")
        pooled_mean = hooked.forward_views(images, view_mask, extra, pool="mean")
        view_a = hooked(images[0:1, 0], extra[0:1])
        view_b = hooked(images[0:1, 1], extra[0:1])
        single = hooked(images[1:2, 0], extra[1:2])

    torch.testing.assert_close(pooled_max["cls"][0], torch.maximum(view_a["cls"], view_b["cls"])[0])
    torch.testing.assert_close(
        pooled_mean["patches"][0], ((view_a["patches"] + view_b["patches"]) / 2)[0]
    )
    torch.testing.assert_close(pooled_max["cls"][1], single["cls"][0])
    torch.testing.assert_close(pooled_mean["cls"][1], single["cls"][0])
    assert pooled_max["view_cls"].shape == (3, 2, 32)
    assert torch.equal(pooled_max["cls"][2], torch.zeros(32))
    assert pooled_mean["availability"].tolist() == [True, True, False]
    assert not torch.isnan(pooled_max["patches"]).any()


def test_two_passes_with_different_adapters_and_extra_tokens_train_both_adapter_sets():
    vit = _tiny_vit(reg_tokens=4, no_embed_class=True)
    inject_adapters(vit, MoRConfig(), adapter_name="reference")
    inject_adapters(vit, MoRConfig(), adapter_name="target")
    freeze_except_adapters(vit)
    hooked = ViTWithInsertion(vit)
    images = torch.randn(2, 3, 32, 32)

    set_active_adapter(hooked, "reference")
    reference_cls = hooked(images)["cls"]  # (B, D)
    set_active_adapter(hooked, "target")
    target = hooked(images, extra_tokens=reference_cls[:, None, :])
    target["cls"].pow(2).sum().backward()

    fc1 = vit.blocks[0].mlp.fc1
    for name in ("reference", "target"):
        assert fc1.mor_adapters[name][0].lora_B.grad.abs().sum() > 0
    assert fc1.base_layer.weight.grad is None


def test_blocks_without_attention_masks_are_refused_when_a_mask_is_needed():
    class MaskFreeBlock(nn.Module):
        def __init__(self, block: nn.Module) -> None:
            super().__init__()
            self.block = block

        def forward(self, x):
            return self.block(x)

    vit = _tiny_vit()
    vit.blocks = nn.Sequential(*[MaskFreeBlock(block) for block in vit.blocks])
    hooked = ViTWithInsertion(vit)

    with pytest.raises(
        ModelError, match="block 0 \\(MaskFreeBlock\\) of this ViT takes no attn_mask"
    ):
        hooked(torch.randn(1, 3, 32, 32), torch.randn(1, 2, 32), torch.tensor([[True, False]]))


def test_bad_backbones_and_extra_tokens_are_refused_with_the_reason():
    with pytest.raises(ModelError, match="class_token=False"):
        ViTWithInsertion(_tiny_vit(class_token=False, global_pool="avg"))
    with pytest.raises(ModelError, match=r"insert_at must lie in 0\.\.3"):
        ViTWithInsertion(_tiny_vit(), insert_at=4)
    hooked = ViTWithInsertion(_tiny_vit())
    with pytest.raises(ModelError, match="width 16 but the ViT's width is 32"):
        hooked(torch.randn(1, 3, 32, 32), torch.randn(1, 2, 16))
    with pytest.raises(ModelError, match="extra_mask must be bool of shape"):
        hooked(torch.randn(1, 3, 32, 32), torch.randn(1, 2, 32), torch.ones(1, 3, dtype=torch.bool))
