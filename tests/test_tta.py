"""Test-time augmentation over dihedral views, and partial fine-tuning end to end (fit, predict,
evaluate) on square and non-square images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from polymodal import targets
from polymodal.data.manifest import load_cohort
from polymodal.data.spec import load_spec
from polymodal.encoders.stage_cache import StageCache
from polymodal.errors import ModelError
from polymodal.evaluation.evaluate import evaluate_model
from polymodal.heads import create_head
from polymodal.predictor import Predictor
from polymodal.training.fit import fit
from polymodal.training.run_config import load_run_config
from polymodal.tta import average_predictions, tta_views, viewing
from targets.test_target_kinds import Fitted

ROWS = 24
CLASSES = ["small", "medium", "large"]


def blob(height: int, width: int, radius: float) -> np.ndarray:
    """A bright disc fading out from the image centre (H, W, 3) uint8: radially symmetric, so
    every view that keeps the shape leaves its pixels exactly as they are."""
    rows = (np.arange(height) - (height - 1) / 2) ** 2
    cols = (np.arange(width) - (width - 1) / 2) ** 2
    distance2 = rows[:, None] + cols[None, :]
    grey = np.rint(255 * np.exp(-distance2 / (2 * radius**2))).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def skewed(height: int, width: int, seed: int) -> np.ndarray:
    """An image with a bright corner and noise: its views differ."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 80, (height, width, 3)).astype(np.uint8)
    pixels[: height // 3, : width // 4] = 255
    return pixels


def write_cohort(root: Path, height: int, width: int) -> Path:
    """An image-only cohort of blobs whose size is the class; returns the spec path."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(ROWS):
        label = CLASSES[i % 3]
        radius = {"small": 2.0, "medium": 4.0, "large": 7.0}[label]
        Image.fromarray(blob(height, width, radius)).save(root / f"img{i}.png")
        split = "train" if i < 15 else ("val" if i < 20 else "test")
        rows.append({"id": f"p{i}", "image": f"img{i}.png", "label": label, "split": split})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    spec = {
        "name": "blobs",
        "manifest": "manifest.csv",
        "id_column": "id",
        "split": {"column": "split"},
        "targets": {"label": {"kind": "multiclass", "column": "label", "classes": CLASSES}},
        "modalities": {
            "skin": {
                "kind": "image",
                "columns": ["image"],
                "size": [height, width],
                "channels": 3,
                "normalize": "imagenet",
            }
        },
    }
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    return root / "spec.yaml"


PARTIAL = (
    "model.encoders.skin={name: image_timm, options: {backbone: test_efficientnet, "
    "freeze: 'stages:3', feature_cache: true, dihedral: true}}"
)


def fit_blobs(base: Path, height: int, width: int) -> tuple[Path, Path]:
    """(spec path, model folder) of a one-epoch partial fine-tuning on the blob cohort."""
    spec_path = write_cohort(base / "cohort", height, width)
    run = load_run_config(
        None,
        [
            "model.core=single",
            "model.core_options.modality=skin",
            PARTIAL,
            "model.dim=16",
            "train.max_epochs=1",
            "train.batch_size=8",
            "train.early_stopping_patience=null",
            f"train.cache_dir={base / 'cache'}",
        ],
    )
    result = fit(
        load_spec(spec_path),
        base / "run",
        run,
        progress=False,
    )
    return spec_path, result.model_dir


@pytest.fixture(scope="module")
def square_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    StageCache._caches.clear()
    return fit_blobs(tmp_path_factory.mktemp("square"), 32, 32)


def test_tta_of_a_rotation_invariant_image_is_its_one_view_prediction(square_model) -> None:
    spec_path, model_dir = square_model
    cohort = load_cohort(load_spec(spec_path))
    plain = Predictor.load(model_dir).predict_cohort(cohort)
    augmented = Predictor.load(model_dir, tta=True)
    assert augmented.views == tuple(range(8))
    tta = augmented.predict_cohort(cohort)
    columns = [f"label_probability_{c}" for c in CLASSES]
    np.testing.assert_allclose(tta[columns], plain[columns], rtol=1e-6, atol=1e-7)
    assert (tta["label_predicted"] == plain["label_predicted"]).all()


def test_tta_averages_probabilities_over_the_8_views(square_model) -> None:
    """On images whose views differ: the mean of each view's probabilities, not of logits."""
    _, model_dir = square_model
    predictor = Predictor.load(model_dir)
    model = predictor.loaded.model.eval()
    pixels = torch.stack(
        [torch.from_numpy(skewed(32, 32, s)).permute(2, 0, 1).float() / 255 for s in range(4)]
    )
    inputs = {"pixels": pixels[:, None], "view_mask": torch.ones(4, 1, dtype=torch.bool)}
    batch = {"inputs": {"skin": inputs}, "available": {"skin": torch.ones(4, dtype=torch.bool)}}
    passes = []
    with torch.no_grad():
        for view in tta_views(model):
            with viewing(model, view):
                out = model.fuse(*model.encode(batch))["logits"]
            passes.append(model.predictions_from_logits(out))
    averaged = average_predictions(passes, predictor.loaded.target_infos)["label"]
    per_view = torch.stack([p["label"]["probabilities"] for p in passes])
    torch.testing.assert_close(averaged["probabilities"], per_view.mean(0))
    assert torch.equal(averaged["label"], per_view.mean(0).argmax(-1))
    assert not torch.allclose(per_view[0], per_view[1])  # the views really differ
    assert model.encoders["skin"].eval_view == 0  # back to the image as it is


def test_probabilities_are_averaged_not_logits() -> None:
    """Two confident views that disagree: the mean of their probabilities keeps both classes'
    weight; a softmax of the mean logits would say something else."""
    head = create_head("label", {"kind": "multiclass", "classes": CLASSES}, in_dim=4)
    logits = [torch.tensor([[6.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 2.0]])]
    passes = [{"label": head.predict(x)} for x in logits]
    averaged = average_predictions(passes, {"label": {"kind": "multiclass"}})["label"]
    expected = torch.stack([x.softmax(-1) for x in logits]).mean(0)
    torch.testing.assert_close(averaged["probabilities"], expected)
    assert averaged["label"].tolist() == [0]  # argmax of the mean probabilities
    assert not torch.allclose(averaged["probabilities"], torch.stack(logits).mean(0).softmax(-1))


@pytest.mark.parametrize("kind", targets.TARGETS.names())
def test_every_target_kind_averages_its_predictions(kind: str) -> None:
    """Each registered kind, from its own example: one view averaged with itself is that view
    exactly (integer outputs included); two views that differ average to outputs of the same
    names, shapes and dtypes, which the kind's prediction columns read."""
    fitted = Fitted(kind)
    infos = {"y": fitted.info}
    with torch.no_grad():
        first = {"y": fitted.head.predict(fitted.logits)}
        second = {"y": fitted.head.predict(fitted.head(torch.randn_like(fitted.features)))}
    same = average_predictions([first, first], infos)["y"]
    assert same.keys() == first["y"].keys()
    for name, value in first["y"].items():
        assert torch.equal(same[name], value), name
    mixed = average_predictions([first, second], infos)["y"]
    for name, value in first["y"].items():
        assert mixed[name].shape == value.shape and mixed[name].dtype == value.dtype, name
    assert not all(torch.equal(mixed[n], first["y"][n]) for n in mixed)  # the views differ
    numpy = {name: value.numpy() for name, value in mixed.items()}
    columns = fitted.kind.prediction_columns("y", fitted.info, numpy)
    assert columns and all(len(c) == len(fitted.target) for c in columns.values())


def test_digits_are_each_the_most_probable_digit_of_the_averaged_views() -> None:
    """Views that spell 190 and 209 (confidently in different places): each digit is the argmax
    of its averaged distribution, the value the number those digits spell."""
    head = create_head("n", {"kind": "digits", "num_digits": 3}, in_dim=4)

    def confident(digits: list[int], confidence: list[float]) -> torch.Tensor:
        logits = torch.zeros(1, 3, 10)
        for place, (digit, c) in enumerate(zip(digits, confidence, strict=True)):
            logits[0, place, digit] = c
        return logits

    views = [confident([1, 9, 0], [1.0, 5.0, 1.0]), confident([2, 0, 9], [3.0, 1.0, 4.0])]
    passes = [{"n": head.predict(x)} for x in views]
    averaged = average_predictions(passes, {"n": {"kind": "digits"}})["n"]
    assert averaged["digits"].tolist() == [[2, 9, 9]]
    assert averaged["value"].tolist() == [299.0]


def test_non_square_images_fit_cached_stages_and_evaluate_with_tta(tmp_path: Path) -> None:
    """Native aspect (H ≠ W) end to end; TTA uses the 4 views that keep the shape."""
    StageCache._caches.clear()
    spec_path, model_dir = fit_blobs(tmp_path, 24, 40)
    (cache,) = StageCache._caches.values()
    assert cache.misses > 0 and list((tmp_path / "cache" / "features").rglob("*.safetensors"))
    encoder = Predictor.load(model_dir).loaded.model.encoders["skin"]
    assert encoder.size == (24, 40) and encoder.split is not None
    cohort = load_cohort(load_spec(spec_path))
    predictor = Predictor.load(model_dir, tta=True)
    assert predictor.views == (0, 2, 4, 6)
    result = evaluate_model(predictor, cohort, split="test", subsets=False, n_boot=20)
    assert result.settings["tta_views"] == [0, 2, 4, 6]
    table = predictor.predict_cohort(cohort, split="test")
    probabilities = table[[f"label_probability_{c}" for c in CLASSES]].to_numpy()
    assert np.isfinite(probabilities).all() and np.allclose(probabilities.sum(1), 1, atol=1e-5)


def test_tta_needs_an_image_encoder() -> None:
    with pytest.raises(ModelError, match="has no image_timm encoder"):
        tta_views(torch.nn.Module())


def test_the_command_line_evaluates_with_tta_and_records_the_views(
    square_model, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from polymodal.cli import app

    _, model_dir = square_model
    out = tmp_path / "eval.json"
    args = ["evaluate", str(model_dir), "--split", "val", "--n-boot", "10", "--json", str(out)]
    result = CliRunner().invoke(app, [*args, "--tta"])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["settings"]["tta_views"] == list(range(8))
