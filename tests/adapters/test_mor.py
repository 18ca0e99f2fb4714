"""MoR adapters: the EI paper's parameter count, identity at start, the relaxed router, the update."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer

from polymodal.adapters import (
    MixtureOfRanks,
    MoRConfig,
    MoRLinear,
    count_trainable_parameters,
    freeze_except_adapters,
    inject_adapters,
)
from polymodal.errors import ModelError


def _tiny_vit(**options) -> VisionTransformer:
    torch.manual_seed(0)
    settings = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=3)
    return VisionTransformer(**(settings | options)).eval()


def test_mor_on_vit_b_fc1_fc2_has_the_papers_trainable_parameter_count():
    vit = timm.create_model("vit_base_patch16_224", pretrained=False)
    names = inject_adapters(vit, MoRConfig())
    freeze_except_adapters(vit)

    assert names == [f"blocks.{i}.mlp.{fc}" for i in range(12) for fc in ("fc1", "fc2")]
    # fc1 768→3072: experts (2+4+8)·(768+3072) = 53,760, router 768·4+4 = 3,076.
    # fc2 3072→768: experts 53,760, router 3072·4+4 = 12,292.
    fc1 = sum(p.numel() for p in vit.blocks[0].mlp.fc1.mor_adapters.parameters())
    fc2 = sum(p.numel() for p in vit.blocks[0].mlp.fc2.mor_adapters.parameters())
    assert (fc1, fc2) == (56_836, 66_052)
    assert fc1 + fc2 == 122_888  # methods.md §3.2, per block
    assert count_trainable_parameters(vit) == 1_474_656  # methods.md: 1.475 M per ViT-B


@pytest.mark.parametrize("router", ["relaxed", "softmax"])
def test_mor_adapted_vit_with_registers_starts_identical_to_the_frozen_one(router):
    vit = _tiny_vit(reg_tokens=4, no_embed_class=True)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        frozen = vit(images)
        inject_adapters(
            vit,
            MoRConfig(
                router=router, target_modules=("mlp.fc1", "mlp.fc2", "attn.qkv", "attn.proj")
            ),
        )
        adapted = vit(images)

    assert isinstance(vit.blocks[1].attn.qkv, MoRLinear)
    assert torch.equal(adapted, frozen)


def test_relaxed_router_weights_sum_to_at_most_one_and_softmax_router_to_one():
    torch.manual_seed(0)
    tokens = 3.0 * torch.randn(4, 50, 16)
    relaxed = MixtureOfRanks(16, 8, MoRConfig(router="relaxed"))
    softmax = MixtureOfRanks(16, 8, MoRConfig(router="softmax"))

    relaxed_sums = relaxed.gates(tokens).sum(dim=-1)
    assert relaxed.gates(tokens).shape == (4, 50, 3)
    assert bool((relaxed_sums <= 1.0).all())
    # The bypass slot takes part of the mass, so a relaxed token is never fully adapted.
    assert bool((relaxed_sums < 1.0).all())
    torch.testing.assert_close(softmax.gates(tokens).sum(dim=-1), torch.ones(4, 50))


def test_a_token_routed_to_the_bypass_slot_gets_no_update():
    adapter = MixtureOfRanks(16, 8, MoRConfig())
    torch.nn.init.normal_(adapter.lora_B)
    with torch.no_grad():
        adapter.router.weight.zero_()
        adapter.router.bias.copy_(torch.tensor([50.0, 0.0, 0.0, 0.0]))

    update = adapter(torch.randn(5, 16))

    assert update.abs().max() < 1e-12


def test_mor_update_is_the_gated_sum_of_scaled_low_rank_experts():
    torch.manual_seed(0)
    config = MoRConfig(ranks=(2, 4, 8), alphas=(4.0, 8.0, 16.0))
    adapter = MixtureOfRanks(16, 8, config)
    torch.nn.init.normal_(adapter.lora_B)
    tokens = torch.randn(3, 7, 16)

    gates = adapter.gates(tokens)  # (3, 7, K)
    expected = torch.zeros(3, 7, 8)
    start = 0
    for expert, (rank, alpha) in enumerate(zip(config.ranks, config.alphas, strict=True)):
        a = adapter.lora_A[start : start + rank]  # (r_i, d_in)
        b = adapter.lora_B[:, start : start + rank]  # (d_out, r_i)
        expected += gates[..., expert : expert + 1] * (alpha / rank) * (tokens @ a.T @ b.T)
        start += rank

    torch.testing.assert_close(adapter(tokens), expected)
    assert config.scales == (2.0, 2.0, 2.0)


def test_split_qkv_gives_q_k_v_their_own_experts_and_router():
    split = _tiny_vit()
    inject_adapters(split, MoRConfig(target_modules=("attn.qkv",)))
    freeze_except_adapters(split)
    fused = _tiny_vit()
    inject_adapters(fused, MoRConfig(target_modules=("attn.qkv",), split_qkv=False))
    freeze_except_adapters(fused)

    assert len(split.blocks[0].attn.qkv.mor_adapters["default"]) == 3
    # Split, per block: 3 × [A 14·32 + B 32·14 + router 32·4+4] = 3 × 1,028.
    assert count_trainable_parameters(split) == 2 * 3 * 1_028
    # Fused: A 14·32 + B 96·14 + router 132 = 1,924 per block.
    assert count_trainable_parameters(fused) == 2 * 1_924


def test_mor_config_rejects_mismatched_alphas_and_unknown_router():
    with pytest.raises(ModelError, match="one alpha per expert"):
        MoRConfig(ranks=(2, 4), alphas=(4.0,))
    with pytest.raises(ModelError, match="router must be one of"):
        MoRConfig(router="hard")
