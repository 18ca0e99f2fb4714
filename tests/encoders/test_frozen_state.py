"""Frozen encoder parts stay frozen through a Lightning fit: state bit-identical, eval mode.

Lightning never calls ``model.train()`` at the start of a fit and restores every submodule's
``training`` flag by assignment after each validation loop, so these tests train each encoder
inside a real :class:`lightning.Trainer` (sanity check, two epochs, validation each epoch).
"""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from polymodal.encoders import create_encoder
from polymodal.encoders.image import FrozenFeatureCache
from polymodal.errors import ModelError
from polymodal.freezing import freeze, frozen_parts, keep_in_eval, unfreeze

IMAGE_INFO = {"kind": "image", "channels": 3, "size": [32, 32], "views": 1}
TEXT_INFO = {"kind": "text", "vocab_size": 50, "pad_id": 0, "max_tokens": 12, "tokenizer": None}


class EncoderProbe(L.LightningModule):
    """An encoder, mean-pooled tokens and a linear head regressed onto a fixed target."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.dim, 1)

    def _loss(self, batch: dict) -> Tensor:
        tokens, mask = self.encoder(batch["inputs"])
        pooled = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return nn.functional.mse_loss(self.head(pooled).squeeze(-1), batch["y"])

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        return self._loss(batch)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._loss(batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        trainable = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.SGD(trainable, lr=0.1)


def image_samples(n: int = 24) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    return [
        {
            "inputs": {
                "pixels": torch.randn(1, 3, 32, 32, generator=generator),
                "view_mask": torch.ones(1, dtype=torch.bool),
            },
            "y": torch.randn((), generator=generator),
        }
        for _ in range(n)
    ]


def text_samples(n: int = 24) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    return [
        {
            "inputs": {
                "input_ids": torch.randint(1, 50, (12,), generator=generator),
                "attention_mask": torch.ones(12, dtype=torch.bool),
            },
            "y": torch.randn((), generator=generator),
        }
        for _ in range(n)
    ]


def lightning_fit(encoder: nn.Module, samples: list[dict]) -> None:
    """Two epochs of a real Lightning fit (sanity check and validation included)."""
    torch.manual_seed(0)
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader(samples, batch_size=8, shuffle=True)
    trainer.fit(EncoderProbe(encoder), loader, DataLoader(samples, batch_size=8))


def state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def assert_same_state(before: dict[str, Tensor], module: nn.Module) -> None:
    after = module.state_dict()
    changed = [k for k, v in before.items() if not torch.equal(after[k], v)]
    assert not changed, f"frozen tensors changed: {changed}"


def in_training_mode(module: nn.Module) -> list[str]:
    return [name for name, m in module.named_modules() if m.training]


@pytest.fixture()
def fresh_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    """No feature cache from another test in, none of this test's out."""
    monkeypatch.setattr(FrozenFeatureCache, "_caches", {})


def image_encoder(freeze_mode: str, **options) -> nn.Module:
    torch.manual_seed(0)
    return create_encoder(
        "image_timm",
        input_info=IMAGE_INFO,
        dim=8,
        backbone="test_resnet",
        freeze=freeze_mode,
        **options,
    )


def test_a_frozen_image_backbone_is_bit_identical_after_a_lightning_fit() -> None:
    encoder = image_encoder("all")
    before = state(encoder.backbone)
    lightning_fit(encoder, image_samples())
    assert_same_state(before, encoder.backbone)  # running statistics and batch counters too
    assert in_training_mode(encoder.backbone) == []
    assert encoder.training and encoder.proj.training  # what trains still trains


def test_all_but_last_keeps_the_frozen_stages_and_trains_the_last() -> None:
    encoder = image_encoder("all_but_last")
    frozen = {k: v for k, v in state(encoder.backbone).items() if not k.startswith("layer4.")}
    last = {k: v for k, v in state(encoder.backbone).items() if k.startswith("layer4.")}
    lightning_fit(encoder, image_samples())
    assert_same_state(frozen, encoder.backbone)
    changed = [k for k, v in last.items() if not torch.equal(encoder.backbone.state_dict()[k], v)]
    assert any(k.endswith(".weight") for k in changed)  # the last stage trained
    assert any(k.endswith("running_mean") for k in changed)  # ... its BatchNorm included
    for name in ("conv1", "bn1", "layer1", "layer2", "layer3"):
        assert in_training_mode(encoder.backbone.get_submodule(name)) == [], name
    assert encoder.backbone.layer4.training


def test_cached_features_equal_a_fresh_eval_mode_forward(fresh_caches: None) -> None:
    encoder = image_encoder("all", feature_cache=True)
    reference = copy.deepcopy(encoder.backbone).eval()
    samples = image_samples()
    lightning_fit(encoder, samples)  # fills the cache in training epochs
    images = torch.cat([s["inputs"]["pixels"] for s in samples])

    def never(x: Tensor) -> Tensor:
        raise AssertionError("every image should be cached")

    cached = encoder._feature_cache.features(images, never)
    with torch.no_grad():
        fresh = reference.forward_features(images).flatten(2).transpose(1, 2)
    # Equal up to float rounding (batches of another size); training-mode features differ by far more.
    torch.testing.assert_close(cached, fresh, rtol=1e-5, atol=1e-6)


def test_the_feature_cache_cannot_be_filled_in_training_mode(fresh_caches: None) -> None:
    encoder = image_encoder("all", feature_cache=True)
    images = torch.cat([s["inputs"]["pixels"] for s in image_samples(4)])
    with torch.no_grad():
        expected = encoder.eval().backbone.forward_features(images).flatten(2).transpose(1, 2)
    for module in encoder.modules():  # as a trainer restoring flags would
        module.training = True
    features = encoder.backbone_features(images)
    assert torch.equal(features, expected)
    # A backbone that may train has no place in the cache.
    with pytest.raises(ModelError, match="frozen"):
        FrozenFeatureCache.for_backbone(nn.BatchNorm2d(3))


@pytest.mark.parametrize("freeze_mode", ["all", "all_but_last"])
def test_a_frozen_text_backbone_stays_in_eval_mode_through_a_lightning_fit(
    freeze_mode: str,
) -> None:
    torch.manual_seed(0)
    encoder = create_encoder(
        "text_transformer",
        input_info=TEXT_INFO,
        dim=8,
        depth=2,
        heads=2,
        dropout=0.5,
        freeze=freeze_mode,
    )
    layers = encoder.backbone.layers.layers
    last = state(layers[-1])
    frozen = {
        k: v for k, v in state(encoder.backbone).items() if not k.startswith("layers.layers.1.")
    }
    lightning_fit(encoder, text_samples())
    assert_same_state(frozen, encoder.backbone)
    if freeze_mode == "all":
        assert_same_state(last, layers[-1])
        assert in_training_mode(encoder.backbone) == []
    else:
        assert any(not torch.equal(layers[-1].state_dict()[k], v) for k, v in last.items())
        assert in_training_mode(layers[0]) == [] and layers[-1].training
    # Dropout is off in every frozen layer: the first layer gives the same output twice.
    states = torch.randn(2, 12, 8)
    torch.testing.assert_close(layers[0](states), layers[0](states), rtol=0, atol=0)


def test_frozen_packaged_text_model_stays_in_eval_mode_when_the_owner_trains(tmp_path) -> None:
    """A Hugging Face backbone: all_but_last keeps every layer but the last in eval mode."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=8,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
        hidden_dropout_prob=0.5,
    )
    transformers.BertModel(config).save_pretrained(tmp_path)
    encoder = create_encoder(
        "text_transformer",
        input_info=TEXT_INFO,
        dim=8,
        model_path=str(tmp_path),
        freeze="all_but_last",
    )
    before = {k: v for k, v in state(encoder.backbone).items() if ".layer.1." not in k}
    lightning_fit(encoder, text_samples())
    assert_same_state(before, encoder.backbone)
    assert in_training_mode(encoder.backbone.embeddings) == []
    assert in_training_mode(encoder.backbone.encoder.layer[0]) == []
    assert encoder.backbone.encoder.layer[1].training


def test_freeze_survives_any_way_of_setting_modes() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    freeze(model[1:])
    model.train()
    for module in model.modules():
        module.train()  # bypasses any train() override of an owner
    x = torch.randn(8, 4)
    model(x)
    assert model[1].num_batches_tracked == 0 and not model[1].training
    copied = copy.deepcopy(model)
    copied[1].training = True
    copied(x)
    assert copied[1].num_batches_tracked == 0  # copies (e.g. a weight EMA) stay frozen
    assert frozen_parts(model) == ["1"]
    unfreeze(model[1:]).train()
    model(x)
    assert model[1].num_batches_tracked == 1


def test_keep_in_eval_is_idempotent() -> None:
    layer = nn.BatchNorm1d(2)
    keep_in_eval(keep_in_eval(layer))
    assert len(layer._forward_pre_hooks) == 1


def test_layers_frozen_around_adapters_stay_in_eval_mode() -> None:
    from polymodal.adapters import LoRAConfig, freeze_except_adapters, inject_adapters

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 2))
    inject_adapters(model, LoRAConfig(r=2, target_modules=("3",)))
    freeze_except_adapters(model)
    for module in model.modules():  # as Lightning's restore of captured flags would
        module.training = True
    model(torch.randn(8, 4)).sum().backward()
    assert model[1].num_batches_tracked == 0  # the frozen BatchNorm kept its statistics
    assert model[3].training  # the adapted layer trains


def test_feature_caches_of_the_training_mode_era_are_never_read(
    tmp_path, fresh_caches: None
) -> None:
    """Caches written before the fix hold training-mode features under the same weights."""
    import hashlib

    from safetensors.torch import save_file

    encoder = image_encoder("all", feature_cache=True).eval()
    encoder.feature_cache_dir = tmp_path
    images = torch.cat([s["inputs"]["pixels"] for s in image_samples(2)])
    # Where the previous version kept them: keyed by backbone class and weights only.
    digest = hashlib.blake2b(type(encoder.backbone).__name__.encode(), digest_size=16)
    for name, tensor in encoder.backbone.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    for image in images:
        key = hashlib.blake2b(image.contiguous().numpy().tobytes(), digest_size=16).hexdigest()
        path = tmp_path / digest.hexdigest() / key[:2] / f"{key}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"features": torch.full((1, encoder.backbone.num_features), 7.0)}, str(path))
    with torch.no_grad():
        expected = encoder.backbone.forward_features(images).flatten(2).transpose(1, 2)
    torch.testing.assert_close(encoder.backbone_features(images), expected)
