"""The two-image demo cohort (``second_view=True``): a close-up per lesion and a target that
needs both images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

from polymodal.cli import app
from polymodal.data.spec import load_spec
from polymodal.datasets.demo import LESION_TYPES, make_demo_cohort, read_settings

SMALL = {"image_size": 32, "volume_size": 16}


def _manifest(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = make_demo_cohort(
        tmp_path_factory.mktemp("two_view") / "c", n=220, seed=0, second_view=True, **SMALL
    )
    return spec.parent


def elongation(path: Path) -> float:
    """Major/minor axis ratio of the brightest blob (second moments) of an overview PNG."""
    pixels = np.asarray(Image.open(path), dtype=np.float64)
    background, peak = np.median(pixels), np.percentile(pixels, 99.5)
    labels, count = ndimage.label(pixels > background + 0.5 * (peak - background))
    blob = labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:])) if count else labels > 0
    rows, cols = np.nonzero(blob)
    small, large = np.linalg.eigvalsh(np.cov(np.stack([rows, cols])))
    return float(np.sqrt(large / max(small, 1e-6)))


def blueness(path: Path) -> float:
    """How far the bluest tenth of a close-up's pixels lean blue over red (in [−1, 1])."""
    pixels = np.asarray(Image.open(path), dtype=np.float64) / 255.0  # (H, W, 3)
    return float(np.percentile(pixels[..., 2] - pixels[..., 0], 90))


def test_files_spec_and_marker(cohort: Path) -> None:
    manifest = _manifest(cohort)
    closeups = manifest.loc[manifest["closeup_image"] != "", "closeup_image"]
    assert len(list((cohort / "closeups").iterdir())) == len(closeups) > 150
    with Image.open(cohort / closeups.iloc[0]) as image:
        assert image.mode == "RGB" and image.size == (32, 32)
    # A sample never loses both images.
    assert not ((manifest["lesion_image"] == "") & (manifest["closeup_image"] == "")).any()
    assert set(manifest["lesion_type"]) == set(LESION_TYPES)
    full = load_spec(cohort / "spec.yaml")
    assert {"lesion", "ct", "labs", "note", "vitals", "closeup"} == set(full.modalities)
    assert set(full.targets) == {"label", "lesion_type"}
    two_view = load_spec(cohort / "two_view.yaml")
    assert {m: s.channels for m, s in two_view.modalities.items()} == {"lesion": 1, "closeup": 3}
    assert list(two_view.targets) == ["lesion_type"]
    assert two_view.targets["lesion_type"].classes == list(LESION_TYPES)
    assert read_settings(cohort).second_view is True


def test_neither_image_alone_determines_the_label(cohort: Path) -> None:
    manifest = _manifest(cohort)
    both = manifest[(manifest["lesion_image"] != "") & (manifest["closeup_image"] != "")]
    features = np.array(
        [
            [elongation(cohort / overview), blueness(cohort / closeup)]
            for overview, closeup in zip(both["lesion_image"], both["closeup_image"], strict=True)
        ]
    )
    labels = both["lesion_type"].to_numpy()

    def cross_validated(columns: list[int]) -> float:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        predicted = cross_val_predict(model, features[:, columns], labels, cv=5)
        return balanced_accuracy_score(labels, predicted)

    # Four classes = 2 shapes × 2 colours: one image tells one factor, so about 0.5 at best.
    assert cross_validated([0]) < 0.6
    assert cross_validated([1]) < 0.6
    assert cross_validated([0, 1]) > 0.9


def test_deterministic_and_the_rest_of_the_cohort_unchanged(tmp_path: Path) -> None:
    first = make_demo_cohort(tmp_path / "a", n=30, seed=5, second_view=True, **SMALL).parent
    again = make_demo_cohort(tmp_path / "b", n=30, seed=5, second_view=True, **SMALL).parent
    plain = make_demo_cohort(tmp_path / "c", n=30, seed=5, **SMALL).parent
    for name in ("manifest.csv", "planted_features.csv", "two_view.yaml"):
        assert (first / name).read_bytes() == (again / name).read_bytes()
    for path in sorted((first / "closeups").iterdir()):
        assert path.read_bytes() == (again / "closeups" / path.name).read_bytes()
    # The second view adds columns and files; every other value and file stays as it was.
    with_view, without = _manifest(first), _manifest(plain)
    pd.testing.assert_frame_equal(with_view[without.columns], without)
    for path in sorted((plain / "images").iterdir()):
        assert path.read_bytes() == (first / "images" / path.name).read_bytes()
    assert not (plain / "closeups").exists() and not (plain / "two_view.yaml").exists()


def test_cli_two_view_writes_both_specs(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["demo-data", str(out), "--n", "20", "--two-view"])
    assert result.exit_code == 0, result.output
    assert "two_view.yaml" in result.output
    assert (out / "two_view.yaml").is_file() and any((out / "closeups").iterdir())
