"""train.mixup / train.cutmix / train.mix_prob: what is mixed, with whom, and what is refused."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from polymodal.errors import PolymodalError
from polymodal.heads import create_head
from polymodal.training.config import TrainConfig
from polymodal.training.mixing import BatchMixing, Mix
from polymodal.training.module import PolymodalModule


def batch_of(n: int = 6, *, image_available: list[bool] | None = None) -> dict:
    """``n`` samples: a 1-view 3×8×6 image per sample (constant value i+1), a tabular value."""
    available = torch.tensor(image_available or [True] * n)
    pixels = torch.arange(1, n + 1, dtype=torch.float32).view(n, 1, 1, 1, 1).expand(n, 1, 3, 8, 6)
    return {
        "ids": [f"r{i}" for i in range(n)],
        "inputs": {
            "lesion": {"pixels": pixels.clone(), "view_mask": available[:, None].clone()},
            "tab": {"numeric": torch.arange(n, dtype=torch.float32)[:, None]},
        },
        "available": {"lesion": available, "tab": torch.ones(n, dtype=torch.bool)},
        "targets": {"dx": torch.arange(n) % 3},
        "target_mask": {"dx": torch.ones(n, dtype=torch.bool)},
    }


def mixing(**settings) -> BatchMixing:
    return BatchMixing(images=("lesion",), **{"mixup": 0.0, "cutmix": 0.0, "prob": 1.0, **settings})


def test_mixup_mixes_the_images_by_lambda_and_keeps_the_other_inputs() -> None:
    np.random.seed(0)
    batch = batch_of()
    mixed, mix = mixing(mixup=0.4)(batch)
    assert isinstance(mix, Mix) and 0 < mix.lam < 1
    own = batch["inputs"]["lesion"]["pixels"]
    expected = mix.lam * own + (1 - mix.lam) * own[mix.partner]
    assert torch.allclose(mixed["inputs"]["lesion"]["pixels"], expected)
    assert sorted(mix.partner.tolist()) == list(range(6))  # a permutation
    assert mixed["inputs"]["tab"] is batch["inputs"]["tab"]  # sample i's own values
    assert torch.equal(batch["inputs"]["lesion"]["pixels"], own)  # the input batch is untouched
    partner_targets = mix.partner_targets(batch)
    assert torch.equal(partner_targets["targets"]["dx"], batch["targets"]["dx"][mix.partner])


def test_cutmix_pastes_a_box_whose_area_is_one_minus_lambda() -> None:
    np.random.seed(3)
    batch = batch_of()
    mixed, mix = mixing(cutmix=1.0)(batch)
    pixels = mixed["inputs"]["lesion"]["pixels"]
    own = batch["inputs"]["lesion"]["pixels"]
    moved = next(i for i in range(6) if mix.partner[i] != i)
    pasted = (pixels[moved] == own[mix.partner[moved]]) & (pixels[moved] != own[moved])
    fraction = pasted[0, 0].float().mean().item()  # one channel of the 8×6 image
    assert fraction == pytest.approx(1 - mix.lam)
    assert 0 < fraction < 1
    kept = pixels[moved][~pasted]
    assert torch.all(kept == own[moved][~pasted])


def test_a_sample_without_its_image_is_never_mixed_nor_mixed_into_another() -> None:
    np.random.seed(1)
    batch = batch_of(image_available=[True, False, True, True, False, True])
    for _ in range(20):
        _, mix = mixing(mixup=1.0)(batch)
        assert mix.partner[1] == 1 and mix.partner[4] == 4
        assert set(mix.partner[[0, 2, 3, 5]].tolist()) == {0, 2, 3, 5}


def test_mix_prob_zero_leaves_every_batch_alone() -> None:
    batch = batch_of()
    assert mixing(mixup=1.0, cutmix=1.0, prob=0.0)(batch) == (batch, None)


def test_the_training_loss_is_the_lambda_weighted_loss_of_both_labels() -> None:
    class PixelMean(nn.Module):
        """A stand-in model: logits from the mean pixel; heads and loss as polymodal's."""

        def __init__(self) -> None:
            super().__init__()
            self.heads = nn.ModuleDict(
                {"dx": create_head("dx", {"kind": "multiclass", "n_outputs": 3}, in_dim=1)}
            )
            self.modalities = ("lesion",)

        def encode(self, batch):
            return {"lesion": batch["inputs"]["lesion"]["pixels"].mean(dim=(1, 2, 3, 4))}, {}

        def drop_modalities(self, availability):
            return availability

        def fuse(self, encoded, availability):
            features = encoded["lesion"][:, None]
            return {"logits": {"dx": self.heads["dx"](features)}, "features": features}

        def loss(self, batch, outputs):
            loss = self.heads["dx"].loss(
                outputs["logits"]["dx"], batch["targets"]["dx"], batch["target_mask"]["dx"]
            )
            return loss, {"dx": loss}

    torch.manual_seed(0)
    model = PixelMean()
    module = PolymodalModule(
        model, {"dx": {"kind": "multiclass"}}, TrainConfig(), 1, mixing=mixing(mixup=0.5)
    )
    module.log = lambda *args, **kwargs: None
    batch = batch_of()
    np.random.seed(5)
    total = module.training_step(batch, 0)
    np.random.seed(5)
    mixed, mix = mixing(mixup=0.5)(batch)
    outputs = model.fuse(model.encode(mixed)[0], {})
    own, _ = model.loss(mixed, outputs)
    other, _ = model.loss(mix.partner_targets(batch), outputs)
    assert total.item() == pytest.approx((mix.lam * own + (1 - mix.lam) * other).item())
    assert mix.lam != 1.0 and not torch.isclose(own, other)


def from_config(cfg: TrainConfig, targets: dict, kinds: dict | None = None, **extra):
    model = SimpleNamespace(modalities=("lesion", "tab"), encoders={})
    kinds = kinds or {"lesion": "image", "tab": "tabular"}
    return BatchMixing.from_config(
        cfg, model=model, input_kinds=kinds, target_infos=targets, **extra
    )


DX = {"dx": {"kind": "multiclass"}}


def test_off_by_default_and_on_for_one_classification_target_with_an_image() -> None:
    assert from_config(TrainConfig(mix_prob=0.3), DX) is None
    built = from_config(TrainConfig(mixup=0.2, cutmix=1.0, mix_prob=0.5), DX)
    assert (built.mixup, built.cutmix, built.prob, built.images) == (0.2, 1.0, 0.5, ("lesion",))


@pytest.mark.parametrize(
    ("targets", "kinds", "plugins", "says"),
    [
        ({"dx": {"kind": "multiclass"}, "age": {"kind": "regression"}}, None, (), "single"),
        ({"age": {"kind": "regression"}}, None, (), "age (regression)"),
        (DX, {"lesion": "volume", "tab": "tabular"}, (), "no image modality"),
        (DX, None, ("distill", "modulation"), "modulation"),
    ],
)
def test_runs_that_cannot_be_mixed_are_refused_naming_the_keys(
    targets, kinds, plugins, says
) -> None:
    with pytest.raises(PolymodalError, match=r"train\.mixup/train\.cutmix") as err:
        from_config(TrainConfig(cutmix=1.0), targets, kinds, plugins=plugins)
    assert says in str(err.value)


def test_a_cached_image_encoder_is_refused() -> None:
    model = SimpleNamespace(
        modalities=("lesion",), encoders={"lesion": SimpleNamespace(feature_cache=True)}
    )
    with pytest.raises(PolymodalError, match="feature_cache"):
        BatchMixing.from_config(
            TrainConfig(mixup=0.2), model=model, input_kinds={"lesion": "image"}, target_infos=DX
        )
