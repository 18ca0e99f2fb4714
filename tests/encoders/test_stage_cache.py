"""Partial fine-tuning: a frozen prefix cut at a stage boundary, cached per image and dihedral view."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import Tensor

from polymodal.data.views import SHAPE_KEEPING_VIEWS, dihedral_view, dihedral_views
from polymodal.encoders import create_encoder
from polymodal.encoders.stage_cache import StageCache
from polymodal.encoders.stages import run_modules
from polymodal.errors import ModelError
from polymodal.freezing import is_kept_in_eval

from .test_frozen_state import image_samples, lightning_fit


@pytest.fixture(autouse=True)
def fresh_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    """No stage cache from another test in, none of this test's out."""
    monkeypatch.setattr(StageCache, "_caches", {})


def encoder(size=(32, 32), backbone: str = "test_efficientnet", **options):
    torch.manual_seed(0)
    info = {"kind": "image", "channels": 3, "size": list(size), "views": 1}
    options = {"freeze": "stages:3", "feature_cache": True, **options}
    return create_encoder("image_timm", input_info=info, dim=16, backbone=backbone, **options)


def by_hand(image: Tensor, view: int) -> Tensor:
    """View ``view`` written out with torch's own operations (not polymodal's helper)."""
    if view >= 4:
        image = torch.flip(image, dims=[-1])
    return torch.rot90(image, k=view % 4, dims=[-2, -1])


def fresh_prefix(model, images: Tensor) -> Tensor:
    with torch.no_grad():
        return run_modules(model.backbone, model.split.prefix, images).half()


def test_the_cache_returns_each_of_the_8_views_it_was_asked_for() -> None:
    model = encoder(backbone="efficientnet_lite0").eval()  # random weights, 32×32
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    cache = StageCache.for_prefix(model.backbone, model.split.prefix)
    outputs = []
    for view in range(8):
        views = torch.full((3,), view)
        cached = cache.features(images, views, model._prefix, model.prefix_shape)
        expected = fresh_prefix(model, by_hand(images, view))
        assert cached.dtype == torch.float16 and torch.equal(cached, expected)
        outputs.append(cached)
    # The views really differ, so a cache serving the wrong one would fail above.
    assert all(not torch.equal(outputs[0], other) for other in outputs[1:])
    # A batch mixing views, now served from memory: each image gets its own view.
    mixed = torch.tensor([5, 0, 3])
    hits = cache.hits
    served = cache.features(images, mixed, lambda *a: pytest.fail("recomputed"), model.prefix_shape)
    assert cache.hits == hits + 3
    for i, view in enumerate(mixed.tolist()):
        assert torch.equal(served[i], outputs[view][i])


def test_dihedral_views_are_exact_and_non_square_images_keep_their_shape() -> None:
    image = torch.arange(12.0).reshape(1, 3, 4)
    assert torch.equal(dihedral_view(image, 2), image.flip(-1).flip(-2))
    assert torch.equal(dihedral_view(image, 4), image.flip(-1))
    assert torch.equal(dihedral_view(image, 6), image.flip(-2))  # mirror, then 180°: vertical
    batch = torch.stack([image, image])
    assert torch.equal(dihedral_views(batch, torch.tensor([0, 6]))[1], image.flip(-2))
    with pytest.raises(
        ModelError, match=r"change the shape of 3×4 images; use views \[0, 2, 4, 6\]"
    ):
        dihedral_views(batch, torch.tensor([0, 1]))
    model = encoder(size=(24, 32), dihedral=True)
    assert model.dihedral_views == SHAPE_KEEPING_VIEWS
    with pytest.raises(ModelError, match=r"24×32 images have views \[0, 2, 4, 6\], not 1"):
        model.set_view(1)


def test_training_draws_seeded_random_views_and_evaluation_uses_view_0() -> None:
    model = encoder(dihedral=True).train()
    torch.manual_seed(5)
    first = model._views(64)
    torch.manual_seed(5)
    assert torch.equal(model._views(64), first)  # same seed, same views: runs repeat
    assert set(first.tolist()) == set(range(8))
    assert set(encoder(size=(24, 32), dihedral=True).train()._views(64).tolist()) == {0, 2, 4, 6}
    assert not model.eval()._views(64).any()
    assert not encoder().train()._views(64).any()  # no dihedral: the image as it is


def test_a_fit_keeps_the_prefix_bit_identical_and_trains_the_suffix() -> None:
    model = encoder(dihedral=True)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    modes: dict[str, set[bool]] = {"prefix": set(), "suffix": set()}
    prefix_bn = model.backbone.get_submodule(model.split.prefix[-1]).modules()
    suffix_bn = model.backbone.get_submodule(model.split.suffix[0]).modules()
    for part, modules in (("prefix", prefix_bn), ("suffix", suffix_bn)):
        bn = next(m for m in modules if isinstance(m, torch.nn.BatchNorm2d))
        bn.register_forward_hook(lambda m, i, o, part=part: modes[part].add(m.training))
    lightning_fit(model, image_samples())

    for name in model.split.prefix:
        module = model.backbone.get_submodule(name)
        assert is_kept_in_eval(module) and not any(p.requires_grad for p in module.parameters())
        for key, value in module.state_dict().items():
            assert torch.equal(value, before[f"{name}.{key}"]), f"{name}.{key} changed"
    changed = [
        f"{name}.{key}"
        for name in model.split.suffix
        for key, value in model.backbone.get_submodule(name).state_dict().items()
        if not torch.equal(value, before[f"{name}.{key}"])
    ]
    assert any(k.endswith("weight") for k in changed)  # the suffix learned
    assert any(k.endswith("running_mean") for k in changed)  # in train mode
    assert modes["prefix"] == {False} and True in modes["suffix"]
    assert model._stage_cache.hits > 0  # later epochs read the cache


def test_disk_entries_serve_a_new_process_and_bad_ones_are_rebuilt(tmp_path) -> None:
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    views = torch.tensor([0, 3, 7])

    def fresh_process() -> StageCache:
        StageCache._caches.clear()
        model = encoder().eval()
        model.feature_cache_dir = tmp_path
        return model, StageCache.for_prefix(model.backbone, model.split.prefix, tmp_path)

    model, cache = fresh_process()
    first = cache.features(images, views, model._prefix, model.prefix_shape)
    files = sorted(tmp_path.rglob("*.safetensors"))
    assert sorted(f.name.rsplit("-", 1)[1] for f in files) == [
        "v0.safetensors",
        "v3.safetensors",
        "v7.safetensors",
    ]

    model, cache = fresh_process()
    never = lambda *a: pytest.fail("the prefix ran again")  # noqa: E731
    torch.testing.assert_close(cache.features(images, views, never, model.prefix_shape), first)
    assert cache.disk_hits == 3 and cache.misses == 0

    # Garbage, a flipped byte in the tensor data, and another entry's valid file under a name.
    garbage, flipped, foreign = files
    original_foreign = load_file(str(foreign))["prefix"].clone()
    shutil.copy(flipped, foreign)
    garbage.write_bytes(b"not a safetensors file")
    data = bytearray(flipped.read_bytes())
    data[-3] ^= 0xFF
    flipped.write_bytes(bytes(data))
    model, cache = fresh_process()
    rebuilt = cache.features(images, views, model._prefix, model.prefix_shape)
    assert cache.rebuilt == 3 and cache.misses == 3 and torch.equal(rebuilt, first)
    torch.testing.assert_close(load_file(str(foreign))["prefix"], original_foreign)
    model, cache = fresh_process()  # the rewritten entries are good again
    torch.testing.assert_close(cache.features(images, views, never, model.prefix_shape), first)


def test_a_changed_file_is_never_served_the_old_entry(tmp_path) -> None:
    """Same file name, new bytes: the key is the image's content, not its name."""
    path = tmp_path / "lesion.png"
    rng = np.random.default_rng(0)

    def read() -> Tensor:
        pixels = np.asarray(Image.open(path), dtype=np.float32) / 255
        return torch.from_numpy(pixels).permute(2, 0, 1)[None].contiguous()  # (1, 3, H, W)

    model = encoder().eval()
    model.feature_cache_dir = tmp_path / "cache"
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
    old = model.prefix_features(read(), torch.tensor([0]))
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
    new = model.prefix_features(read(), torch.tensor([0]))
    assert not torch.equal(new, old)
    assert torch.equal(new, fresh_prefix(model, read()))
    assert model._stage_cache.misses == 2


def test_cut_errors_name_what_to_do() -> None:
    with pytest.raises(ModelError, match="VisionTransformer has none polymodal can cut"):
        encoder(backbone="test_vit")
    with pytest.raises(ModelError, match="has 5 stages after its stem; K goes from 0 to 5"):
        encoder(freeze="stages:6")
    with pytest.raises(ModelError, match=r"freeze must be one of .* or 'stages:K'"):
        encoder(freeze="stages:two")
    with pytest.raises(ModelError, match="feature_cache needs freeze='all' or freeze='stages:K'"):
        encoder(freeze="all_but_last")


def test_resnet_stages_cut_and_train_like_efficientnet() -> None:
    model = encoder(backbone="test_resnet", freeze="stages:2", feature_cache=False)
    assert model.split.prefix[-1] == "layer2" and model.split.suffix == ("layer3", "layer4")
    trainable = {n.split(".")[0] for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert trainable == {"layer3", "layer4"}
    tokens, mask = model.eval()(
        {"pixels": torch.randn(2, 1, 3, 32, 32), "view_mask": torch.ones(2, 1, dtype=torch.bool)}
    )
    assert tokens.shape == (2, model.num_tokens, 16) and mask.all()


def test_a_copy_of_the_model_shares_the_cache_rather_than_duplicating_it() -> None:
    """A weight EMA deep-copies the model: the copy finds the same cache again."""
    import copy

    model = encoder().eval()
    inputs = {
        "pixels": torch.randn(2, 1, 3, 32, 32),
        "view_mask": torch.ones(2, 1, dtype=torch.bool),
    }
    model(inputs)
    twin = copy.deepcopy(model)
    assert twin._stage_cache is None
    torch.testing.assert_close(twin(inputs)[0], model(inputs)[0])
    assert twin._stage_cache is model._stage_cache and model._stage_cache.misses == 2


def test_prefix_outputs_cached_in_a_training_step_equal_a_fresh_eval_mode_forward() -> None:
    model = encoder(backbone="efficientnet_lite0").train()  # as the trainer leaves it
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    views = torch.tensor([0, 1, 4, 7])
    cached = model.prefix_features(images, views)
    reference = encoder(backbone="efficientnet_lite0").eval()  # same seed, same weights
    in_views = torch.cat([by_hand(images[i : i + 1], int(v)) for i, v in enumerate(views)])
    expected = fresh_prefix(reference, in_views)
    assert torch.equal(cached, expected)


def test_training_fills_every_view_of_a_missed_image_in_its_first_epoch() -> None:
    """With random views, an image missed once gets all its views: the next epochs only hit."""
    model = encoder(size=(24, 32), dihedral=True).train()  # non-square: 4 views
    images = torch.randn(3, 3, 24, 32, generator=torch.Generator().manual_seed(2))
    cache = StageCache.for_prefix(model.backbone, model.split.prefix)
    model._stage_cache = cache
    views = torch.tensor([0, 2, 6])
    model.prefix_features(images, views)
    assert len(cache.entries) == 3 * len(SHAPE_KEEPING_VIEWS)
    misses = cache.misses
    for view in SHAPE_KEEPING_VIEWS:  # every view now served, and exactly the view asked for
        served = model.prefix_features(images, torch.full((3,), view))
        assert torch.equal(served, fresh_prefix(model, dihedral_view(images, view)))
    assert cache.misses == misses
    # Evaluation asks for one view and fills no other.
    model.eval()
    other = torch.randn(1, 3, 24, 32)
    model.prefix_features(other, torch.zeros(1, dtype=torch.long))
    assert len(cache.entries) == 3 * len(SHAPE_KEEPING_VIEWS) + 1
