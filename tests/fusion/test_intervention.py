"""The ``intervention`` core (Early Intervention): one shared frozen ViT, adapters per pass,
intervention tokens per ordered pair, a router over the present target branches."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from polymodal.adapters import adapter_state_dict, list_adapters
from polymodal.errors import ModelError
from polymodal.fusion import create_core
from polymodal.training.adapter_source import init_core_adapters, read_adapter_weights

DIM = 16
VIT_OPTIONS = {"img_size": 32, "embed_dim": 32, "depth": 2, "num_heads": 2}
TINY_VIT = {"backbone": "vit_tiny_patch16_224", "backbone_options": VIT_OPTIONS}
TWO_IMAGES = {"derm": "image", "clinical": "image", "labs": "tabular"}


def make_core(modalities: dict[str, str], seed: int = 0, **options) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_core("intervention", modalities=modalities, dim=DIM, **{**TINY_VIT, **options})


def make_batch(seed: int = 1) -> tuple[dict, dict, dict]:
    """4 samples: everything; clinical image missing; labs missing; only labs."""
    g = torch.Generator().manual_seed(seed)
    tokens = {
        "derm": torch.randn(4, 2, 3, 32, 32, generator=g),  # (B, V, C, H, W)
        "clinical": torch.randn(4, 1, 1, 32, 32, generator=g),  # grayscale, repeated to RGB
        "labs": torch.randn(4, 3, DIM, generator=g),
    }
    available = {
        "derm": torch.tensor([True, True, True, False]),
        "clinical": torch.tensor([True, False, True, False]),
        "labs": torch.tensor([True, True, False, True]),
    }
    masks = {
        "derm": torch.tensor([[True, True], [True, False], [True, True], [True, True]]),
        "clinical": torch.ones(4, 1, dtype=torch.bool),
        "labs": torch.ones(4, 3, dtype=torch.bool),
    }
    masks = {m: masks[m] & available[m][:, None] for m in masks}
    return tokens, masks, available


def frozen_numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if not p.requires_grad)


def test_every_pass_runs_on_one_shared_frozen_backbone() -> None:
    core = make_core(TWO_IMAGES).eval()
    assert list_adapters(core.backbone) == ["ref_derm", "ref_clinical", "tgt_derm", "tgt_clinical"]
    qkv = core.backbone.vit.blocks[0].attn.qkv
    fc1_base = core.backbone.vit.blocks[0].mlp.fc1.base_layer
    seen: list[tuple[int, int]] = []
    for layer in (qkv, fc1_base):
        layer.register_forward_hook(
            lambda module, args, out: seen.append((id(module), module.weight.data_ptr()))
        )
    core(*make_batch())
    # Two reference passes + two target passes through the very same frozen tensors.
    assert len(seen) == 8
    assert {ptr for module, ptr in seen if module == id(qkv)} == {qkv.weight.data_ptr()}
    assert {ptr for module, ptr in seen if module == id(fc1_base)} == {fc1_base.weight.data_ptr()}
    # The frozen weights exist once, whatever the number of image modalities.
    bare = timm.create_model("vit_tiny_patch16_224", num_classes=0, **VIT_OPTIONS)
    one_image = make_core({"derm": "image", "labs": "tabular"})
    bare_numel = sum(p.numel() for p in bare.parameters())
    assert frozen_numel(core) == frozen_numel(one_image) == bare_numel
    total = sum(p.numel() for p in core.parameters())
    total_one = sum(p.numel() for p in one_image.parameters())
    assert total - total_one == sum(p.numel() for p in core.parameters() if p.requires_grad) - sum(
        p.numel() for p in one_image.parameters() if p.requires_grad
    )


def test_trainable_parameters_are_adapters_mlps_router_and_heads_only() -> None:
    core = make_core(TWO_IMAGES)
    adapters = sum(
        t.numel()
        for name in list_adapters(core.backbone)
        for t in adapter_state_dict(core.backbone, name).values()
    )
    own = sum(
        p.numel()
        for part in (core.intervention, core.router, core.branch_heads)
        for p in part.parameters()
    )
    trainable = sum(p.numel() for p in core.parameters() if p.requires_grad)
    assert trainable == adapters + own
    # One MLP per ordered pair: every other modality intervenes in each image target.
    assert sorted(core.intervention) == [
        "clinical_to_derm",
        "derm_to_clinical",
        "labs_to_clinical",
        "labs_to_derm",
    ]
    # Only the 1-image core has no router and no reference pass (nothing to weigh or refer to).
    single = make_core({"derm": "image", "labs": "tabular"})
    assert single.router is None and list_adapters(single.backbone) == ["tgt_derm"]


def test_missing_reference_equals_core_built_without_it() -> None:
    full = make_core(TWO_IMAGES).eval()
    without = make_core({"derm": "image", "clinical": "image"}, seed=5).eval()
    result = without.load_state_dict(full.state_dict(), strict=False)
    assert not result.missing_keys
    assert {k.split(".")[1] for k in result.unexpected_keys} == {"labs_to_derm", "labs_to_clinical"}
    tokens, masks, available = make_batch()
    expected = without(
        {m: tokens[m] for m in without.modalities},
        {m: masks[m] for m in without.modalities},
        {m: available[m] for m in without.modalities},
    )
    out = full(tokens, masks, available)
    # Sample 2 has no labs: its token is masked out of every attention.
    assert torch.allclose(out[2], expected[2], atol=1e-6)
    # Samples 0 and 1 have labs, and its intervention token changes their prediction.
    assert not torch.allclose(out[:2], expected[:2], atol=1e-4)
    # A reference absent from the batch altogether gives no token at all: bitwise equal.
    absent = {m: tokens[m] for m in without.modalities}
    absent_masks = {m: masks[m] for m in without.modalities}
    absent_available = {m: available[m] for m in without.modalities}
    assert torch.equal(full(absent, absent_masks, absent_available), expected)


def test_missing_target_skips_its_branch_and_the_router_weighs_the_rest() -> None:
    core = make_core(TWO_IMAGES).eval()
    tokens, masks, available = make_batch()
    branches = core.forward_branches(tokens, masks, available)
    fused, weights = branches["fused"], branches["router_weights"]  # (B, D), (B, M)
    assert torch.isfinite(fused).all()
    assert torch.allclose(weights.sum(dim=1), torch.tensor([1.0, 1.0, 1.0, 0.0]))
    assert weights[1].tolist() == [1.0, 0.0]  # clinical missing: only the derm branch
    assert torch.allclose(fused[1], branches["branch_features"]["derm"][1])
    assert torch.equal(fused[3], torch.zeros(DIM))  # no image at all: no branch
    # The missing target's pixels (and a missing view) are never read.
    garbage = dict(tokens)
    garbage["clinical"] = tokens["clinical"].clone()
    garbage["clinical"][1] = float("nan")
    garbage["derm"] = tokens["derm"].clone()
    garbage["derm"][1, 1] = 1e4
    garbage["derm"][3] = float("nan")
    assert torch.equal(core(garbage, masks, available), fused)


@pytest.mark.parametrize("insert_at", [0, 1])
def test_intervention_tokens_reach_the_blocks_from_insert_at_on(insert_at: int) -> None:
    core = make_core({"derm": "image", "labs": "tabular"}, insert_at=insert_at).eval()
    tokens, masks, available = make_batch()
    base_length = 1 + 4  # CLS + 2x2 patches
    outputs: list[torch.Tensor] = []
    for block in core.backbone.vit.blocks:
        block.register_forward_hook(lambda m, a, out: outputs.append(out[:, :base_length]))
    core(tokens, masks, available)
    with_token = list(outputs)
    outputs.clear()
    no_labs = {**available, "labs": torch.zeros(4, dtype=torch.bool)}
    core(tokens, {**masks, "labs": masks["labs"] & False}, no_labs)
    pairs = zip(with_token, outputs, strict=True)
    changed = [not torch.allclose(a[0], b[0], atol=1e-6) for a, b in pairs]
    assert changed == [index >= insert_at for index in range(len(changed))]


def test_detach_branches_leaves_only_the_router_to_the_fused_loss() -> None:
    core = make_core(TWO_IMAGES, detach_branches=True).train()
    core(*make_batch()).sum().backward()
    assert all(p.grad is not None for p in core.router.parameters())
    assert all(p.grad is None for p in core.branch_heads.parameters())
    assert all(p.grad is None for p in core.intervention.parameters())


def test_lora_adapters_train_and_the_backbone_stays_frozen() -> None:
    core = make_core(TWO_IMAGES, adapter="lora", adapter_options={"r": 2}).train()
    fused, auxiliary = core.forward_with_auxiliary(*make_batch())
    fused.square().sum().backward()
    trainable = [n for n, p in core.named_parameters() if p.requires_grad]
    backbone = [n for n in trainable if n.startswith("backbone.")]
    assert backbone and all("lora_" in n for n in backbone)
    assert set(auxiliary) == set(core.auxiliary_outputs)
    assert set(auxiliary["reference_cls"]) == {"derm", "clinical"}
    assert all(p.grad is not None for n, p in core.named_parameters() if p.requires_grad)


def test_pretrained_backbone_loads_from_a_local_file(tmp_path) -> None:
    torch.manual_seed(3)
    vit = timm.create_model("vit_tiny_patch16_224", num_classes=0, **VIT_OPTIONS)
    save_file(vit.state_dict(), str(tmp_path / "vit.safetensors"))
    core = make_core(TWO_IMAGES, pretrained=str(tmp_path / "vit.safetensors"))
    assert torch.equal(core.backbone.vit.pos_embed, vit.pos_embed)
    assert torch.equal(
        core.backbone.vit.blocks[1].mlp.fc2.base_layer.weight, vit.blocks[1].mlp.fc2.weight
    )


@pytest.mark.parametrize(
    ("modalities", "options", "message"),
    [
        (
            {"labs": "tabular"},
            {},
            r"needs at least one image modality \(a kind of 2D pixels: image\)",
        ),
        (TWO_IMAGES, {"adapter": "prefix"}, "adapter='prefix' is not one of mor, lora"),
        (TWO_IMAGES, {"backbone": "vit_nonexistent"}, "unknown timm backbone 'vit_nonexistent'"),
        (TWO_IMAGES, {"insert_at": 5}, r"insert_at must lie in 0\.\.2"),
    ],
)
def test_bad_options_are_model_errors(modalities: dict, options: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        make_core(modalities, **options)


def test_images_of_the_wrong_size_name_the_modality_and_the_fix() -> None:
    core = make_core(TWO_IMAGES).eval()
    tokens, masks, available = make_batch()
    tokens["derm"] = torch.randn(4, 2, 3, 48, 48)
    with pytest.raises(ModelError, match=r"'derm' has images of 48x48.*img_size=48"):
        core(tokens, masks, available)
    tokens["derm"] = torch.randn(4, 2, 2, 32, 32)
    with pytest.raises(ModelError, match=r"'derm' has 2 channels.*in_chans=2"):
        core(tokens, masks, available)


def _saved_single_adapters(folder, seed: int, **mor_options):
    """A single-image ViT (the core's shape and frozen weights) with trained-looking MoR adapters,
    saved as an adapter folder; returns its adapter tensors keyed by ViT module name."""
    from polymodal.adapters import MoRConfig, inject_adapters, save_adapters

    core = make_core({"derm": "image"})  # seed 0: the same frozen ViT as make_core's
    vit = core.backbone.vit
    inject_adapters(vit, MoRConfig(**mor_options), adapter_name="single")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in adapter_state_dict(vit, "single").values():
            tensor.copy_(torch.randn(tensor.shape, generator=g))
    save_adapters(vit, folder, "single")
    return {k: v.clone() for k, v in adapter_state_dict(vit, "single").items()}


def test_both_adapter_sets_of_a_modality_start_from_a_single_image_model(tmp_path) -> None:
    trained = _saved_single_adapters(tmp_path / "derm_mor", seed=3)
    core = make_core(TWO_IMAGES)
    before_other = {
        k: v.clone() for k, v in adapter_state_dict(core.backbone, "tgt_clinical").items()
    }

    weights = read_adapter_weights("derm", tmp_path / "derm_mor")
    assert core.init_adapters("derm", weights) == ["ref_derm", "tgt_derm"]

    for name in ("ref_derm", "tgt_derm"):
        loaded = {
            k.removeprefix("vit."): v for k, v in adapter_state_dict(core.backbone, name).items()
        }
        assert loaded.keys() == trained.keys()
        assert all(torch.equal(loaded[k], trained[k]) for k in trained)
    after_other = adapter_state_dict(core.backbone, "tgt_clinical")
    assert all(torch.equal(after_other[k], before_other[k]) for k in before_other)


def test_single_model_adapters_that_do_not_fit_are_model_errors(tmp_path) -> None:
    _saved_single_adapters(tmp_path / "other_ranks", seed=3, ranks=(2, 4), alphas=(4, 8))
    core = make_core(TWO_IMAGES)
    weights = read_adapter_weights("derm", tmp_path / "other_ranks")
    with pytest.raises(ModelError, match=r"do not fit adapter set 'ref_derm'.*same adapter"):
        core.init_adapters("derm", weights)
    with pytest.raises(ModelError, match="'labs', which is not an image modality"):
        core.init_adapters("labs", weights)
    with pytest.raises(ModelError, match="neither a polymodal model folder"):
        init_core_adapters(core, {"derm": tmp_path})
