"""``image_timm`` with adapters: a frozen backbone whose MoR or LoRA adapters alone train."""

from __future__ import annotations

import pytest
import torch

from polymodal.adapters import list_adapters
from polymodal.encoders import create_encoder
from polymodal.errors import ModelError

INFO = {"kind": "image", "channels": 3, "size": [32, 32], "views": 1}
VIT = {
    "backbone": "vit_tiny_patch16_224",
    "backbone_options": {"embed_dim": 32, "depth": 2, "num_heads": 2},
}


def make(**options) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_encoder("image_timm", input_info=INFO, dim=8, **{**VIT, **options})


def batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"pixels": torch.randn(2, 1, 3, 32, 32, generator=g), "view_mask": torch.ones(2, 1)}


@pytest.mark.parametrize(
    ("adapter", "options", "marker"),
    [("mor", {}, "mor_adapters"), ("lora", {"r": 2}, "lora_")],
)
def test_only_the_adapters_train_in_the_backbone(adapter: str, options: dict, marker: str) -> None:
    plain = make().eval()
    adapted = make(adapter=adapter, adapter_options=options).eval()
    assert list_adapters(adapted.backbone) == [adapter]
    trainable = [n for n, p in adapted.backbone.named_parameters() if p.requires_grad]
    assert trainable and all(marker in n for n in trainable)
    # Adapters start as the identity (B = 0): the same output as the plain encoder.
    tokens, _ = adapted(batch())
    expected, _ = plain(batch())
    assert torch.allclose(tokens, expected, atol=1e-6)
    # Projection and view embedding train too; the backbone's own weights never.
    tokens.square().sum().backward()
    assert adapted.proj.weight.grad is not None
    assert adapted.backbone.blocks[0].attn.qkv.weight.grad is None
    grads = [p.grad for n, p in adapted.backbone.named_parameters() if p.requires_grad]
    assert all(g is not None for g in grads)


def test_adapters_refuse_a_freeze_mode_and_a_backbone_without_linear_mlps() -> None:
    with pytest.raises(ModelError, match=r"already freezes the backbone.*leave freeze at 'none'"):
        make(adapter="mor", freeze="all")
    with pytest.raises(ModelError, match="adapter must be 'mor' or 'lora', got 'prefix'"):
        make(adapter="prefix")
    with pytest.raises(ModelError, match=r"adapter_options .* do not fit lora"):
        make(adapter="lora", adapter_options={"rank": 4})
    with pytest.raises(ModelError, match="no module of the model matches target_modules"):
        create_encoder("image_timm", input_info=INFO, dim=8, backbone="test_resnet", adapter="lora")
