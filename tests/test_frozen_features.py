"""Frozen backbone features read from a store keyed by the image file's content, instead of
pixels: equal to an eval-mode forward, never loaded from pixels once stored, never served for a
changed file, rebuilt when damaged; used by fit and by the predictor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

import polymodal.data.dataset as dataset_module
from polymodal.data.cache import SampleCache
from polymodal.data.collate import collate_samples
from polymodal.data.dataset import CohortDataset
from polymodal.data.manifest import load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.spec import load_spec
from polymodal.errors import ModelError, PolymodalError
from polymodal.frozen_features import STORE_FOLDER, fill_feature_stores, frozen_feature_stores
from polymodal.model import build_model
from polymodal.predictor import Predictor
from polymodal.training.fit import fit
from polymodal.training.run_config import load_run_config

ROWS = 12
FROZEN = (
    "model.encoders.skin={name: image_timm, options: {backbone: test_efficientnet, "
    "freeze: all, feature_cache: true}}"
)
RUN = ["model.core=single", "model.core_options.modality=skin", FROZEN, "model.dim=8"]


def write_image(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(path)


def write_cohort(root: Path, augment: bool = False) -> Path:
    """An image-only cohort (24×32 RGB noise, 2 classes) with one row missing its image."""
    root.mkdir(parents=True)
    rows = []
    for i in range(ROWS):
        write_image(root / f"img{i}.png", seed=i)
        split = "train" if i < 8 else "val"
        image = "" if i == 3 else f"img{i}.png"
        rows.append({"id": f"p{i}", "image": image, "label": "ab"[i % 2], "split": split})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    spec = {
        "name": "noise",
        "manifest": "manifest.csv",
        "id_column": "id",
        "split": {"column": "split"},
        "targets": {"label": {"kind": "binary", "column": "label", "positive": "b"}},
        "modalities": {
            "skin": {
                "kind": "image",
                "columns": ["image"],
                "size": [24, 32],
                "channels": 3,
                "augment": augment,
            }
        },
    }
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    return root / "spec.yaml"


@pytest.fixture()
def setting(tmp_path: Path):
    spec = load_spec(write_cohort(tmp_path / "cohort"))
    cohort = load_cohort(spec)
    prep = Preprocessor.fit(cohort)
    torch.manual_seed(0)
    run = load_run_config(None, RUN)
    infos = {m: prep.input_info(m) for m in prep.modalities}
    model = build_model(run.model, infos, {t: prep.target_info(t) for t in prep.targets})
    return cohort, prep, model.eval(), SampleCache(tmp_path / "cache")


def batch_of(dataset: CohortDataset) -> dict:
    return collate_samples([dataset[i] for i in range(len(dataset))])


def test_features_are_the_eval_mode_backbone_tokens_and_give_the_same_model_output(
    setting,
) -> None:
    cohort, prep, model, cache = setting
    pixels = batch_of(CohortDataset(cohort, prep, None, cache=cache))
    stored = CohortDataset(cohort, prep, None, cache=cache)
    stored.read_as_features(frozen_feature_stores(model, cache))
    features = batch_of(stored)
    encoder = model.encoders["skin"]
    assert "pixels" not in features["inputs"]["skin"]
    assert features["inputs"]["skin"]["features"].shape == (ROWS, 1, *encoder.feature_shape)
    present = pixels["available"]["skin"]
    with torch.no_grad():
        expected = encoder.backbone.forward_features(pixels["inputs"]["skin"]["pixels"][:, 0])
    expected = expected.flatten(2).transpose(1, 2)  # (B, N, C')
    torch.testing.assert_close(
        features["inputs"]["skin"]["features"][present, 0], expected[present], rtol=1e-5, atol=1e-6
    )
    assert not features["available"]["skin"][3]  # the row without an image stays unavailable
    assert not features["inputs"]["skin"]["features"][3].any()
    with torch.no_grad():
        from_pixels, from_features = model(pixels), model(features)
    for target, logits in from_pixels["logits"].items():
        torch.testing.assert_close(from_features["logits"][target], logits, rtol=1e-5, atol=1e-5)


def test_once_stored_no_pixel_is_decoded_again(setting, monkeypatch) -> None:
    cohort, prep, model, cache = setting
    first = CohortDataset(cohort, prep, None, cache=cache)
    first.read_as_features(frozen_feature_stores(model, cache))
    before = batch_of(first)
    assert first.feature_stores["skin"].computed == ROWS - 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was decoded although its features are stored")

    monkeypatch.setattr(dataset_module, "_decode_image", no_decoding)
    again = CohortDataset(cohort, prep, None, cache=cache)  # a new process: memory empty
    again.read_as_features(frozen_feature_stores(model, cache))
    after = batch_of(again)
    store = again.feature_stores["skin"]
    assert (store.disk_hits, store.computed) == (ROWS - 1, 0)
    assert torch.equal(after["inputs"]["skin"]["features"], before["inputs"]["skin"]["features"])


def test_fill_computes_the_missing_features_in_batches_and_only_their_pixels_are_read(
    setting, monkeypatch
) -> None:
    cohort, prep, model, cache = setting
    first = CohortDataset(cohort, prep, None, cache=cache)
    first.read_as_features(frozen_feature_stores(model, cache))
    store = first.feature_stores["skin"]
    batches = []
    compute = store.compute
    store.compute = lambda pixels: batches.append(len(pixels)) or compute(pixels)
    fill_feature_stores([first], batch_size=4, progress=False)
    assert batches == [4, 4, 3] and store.computed == ROWS - 1
    before = batch_of(first)
    assert batches == [4, 4, 3]  # the epoch itself computed nothing

    monkeypatch.setattr(dataset_module, "_decode_image", AssertionError)  # no pixel from now on
    again = CohortDataset(cohort, prep, None, cache=cache)
    again.read_as_features(frozen_feature_stores(model, cache))
    fill_feature_stores([again], batch_size=4, progress=False)
    assert (again.feature_stores["skin"].computed, again.feature_stores["skin"].disk_hits) == (
        0,
        ROWS - 1,
    )
    assert torch.equal(
        batch_of(again)["inputs"]["skin"]["features"], before["inputs"]["skin"]["features"]
    )


def test_a_changed_file_is_never_served_the_old_features(setting) -> None:
    cohort, prep, model, cache = setting
    first = CohortDataset(cohort, prep, None, cache=cache)
    first.read_as_features(frozen_feature_stores(model, cache))
    old = first[0]["inputs"]["skin"]["features"]
    write_image(cohort.spec.manifest_path.parent / "img0.png", seed=99)  # same name, new bytes
    later = CohortDataset(cohort, prep, None, cache=cache)
    later.read_as_features(frozen_feature_stores(model, cache))
    new = later[0]["inputs"]["skin"]["features"]
    assert later.feature_stores["skin"].computed == 1
    assert not torch.allclose(new, old)


@pytest.mark.parametrize("damage", ["garbage", "another_key", "truncated"])
def test_a_damaged_entry_is_rebuilt_never_read(setting, damage: str) -> None:
    cohort, prep, model, cache = setting
    first = CohortDataset(cohort, prep, None, cache=cache)
    first.read_as_features(frozen_feature_stores(model, cache))
    good = first[0]["inputs"]["skin"]["features"]
    other = first[1]["inputs"]["skin"]["features"]
    entries = sorted((cache.folder / STORE_FOLDER).rglob("*.safetensors"))
    store = first.feature_stores["skin"]
    mine = store.path(next(k for k, v in store.entries.items() if torch.equal(v, good[0])))
    theirs = next(e for e in entries if e != mine)
    if damage == "garbage":
        mine.write_bytes(b"not a safetensors file")
    elif damage == "another_key":
        mine.write_bytes(theirs.read_bytes())  # a valid entry, of another image
    else:
        mine.write_bytes(mine.read_bytes()[:-100])
    later = CohortDataset(cohort, prep, None, cache=cache)
    later.read_as_features(frozen_feature_stores(model, cache))
    assert torch.equal(later[0]["inputs"]["skin"]["features"], good)
    assert later.feature_stores["skin"].rebuilt == 1
    assert not torch.equal(good, other)


def test_stores_need_the_sample_cache_and_augmented_modalities_keep_their_pixels(
    setting, tmp_path: Path
) -> None:
    cohort, prep, model, cache = setting
    stores = frozen_feature_stores(model, cache)
    with pytest.raises(PolymodalError, match="sample cache"):
        CohortDataset(cohort, prep, None).read_as_features(stores)
    assert frozen_feature_stores(model, None) == {}
    cohort = load_cohort(load_spec(write_cohort(tmp_path / "augmented", augment=True)))
    prep = Preprocessor.fit(cohort)
    augmented = CohortDataset(cohort, prep, "train", cache=cache, augment=True)
    augmented.read_as_features(stores)
    assert augmented.feature_stores == {}
    assert "pixels" in augmented[0]["inputs"]["skin"]


def test_an_encoder_that_trains_refuses_features(setting) -> None:
    cohort, prep, model, cache = setting
    stored = CohortDataset(cohort, prep, None, cache=cache)
    stored.read_as_features(frozen_feature_stores(model, cache))
    batch = batch_of(stored)
    trainable = build_model(
        load_run_config(None, [*RUN[:2], "model.dim=8"]).model,
        {"skin": prep.input_info("skin")},
        {"label": prep.target_info("label")},
    )
    assert frozen_feature_stores(trainable, cache) == {}
    with pytest.raises(ModelError, match="not frozen for good"):
        trainable(batch)


def test_fit_and_the_predictor_read_stored_features(tmp_path: Path) -> None:
    spec = load_spec(write_cohort(tmp_path / "cohort"))
    cache_dir = tmp_path / "cache"
    run = load_run_config(
        None,
        [*RUN, "train.max_epochs=1", "train.batch_size=4", f"train.cache_dir={cache_dir}"],
    )
    result = fit(spec, tmp_path / "run", run, progress=False)
    entries = list((cache_dir / STORE_FOLDER).rglob("*.safetensors"))
    assert len(entries) == ROWS - 1  # every image of train and val, once
    cohort = load_cohort(spec)
    plain = Predictor.load(result.model_dir).predict_cohort(cohort)
    cached = Predictor.load(result.model_dir, cache_dir=cache_dir)
    from_store = cached.predict_cohort(cohort)
    assert cached.cache is not None
    pd.testing.assert_frame_equal(from_store, plain, rtol=1e-5, atol=1e-6)


def test_the_store_can_be_turned_off(tmp_path: Path) -> None:
    spec = load_spec(write_cohort(tmp_path / "cohort"))
    cache_dir = tmp_path / "cache"
    run = load_run_config(
        None,
        [
            *RUN,
            "train.max_epochs=1",
            f"train.cache_dir={cache_dir}",
            "train.frozen_feature_store=false",
        ],
    )
    fit(spec, tmp_path / "run", run, progress=False)
    assert not (cache_dir / STORE_FOLDER).exists()
    assert any((cache_dir / "features").rglob("*.safetensors"))  # the in-model cache instead
