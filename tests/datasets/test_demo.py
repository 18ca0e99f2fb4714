"""The synthetic demo cohort: files decode, spacing is real, missingness, determinism, the rule."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from polymodal.data.spec import load_spec
from polymodal.datasets.demo import UNSEEN_SITE, make_demo_cohort, read_settings
from polymodal.errors import PolymodalError

FILE_COLUMNS = {"lesion": "lesion_image", "ct": "ct_volume", "vitals": "vitals_series"}
TABULAR = ["age", "crp", "sodium", "hemoglobin", "bmi", "sex", "smoking", "site"]


def _manifest(spec_path: Path) -> pd.DataFrame:
    return pd.read_csv(spec_path.parent / "manifest.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_cohort(tmp_path_factory.mktemp("demo") / "cohort", n=60, seed=3)


def test_files_exist_and_decode(demo: Path) -> None:
    root, manifest = demo.parent, _manifest(demo)
    images = manifest.loc[manifest["lesion_image"] != "", "lesion_image"]
    volumes = manifest.loc[manifest["ct_volume"] != "", "ct_volume"]
    series = manifest.loc[manifest["vitals_series"] != "", "vitals_series"]
    assert len(images) > 30 and len(volumes) > 30 and len(series) > 30
    for path in images:
        with Image.open(root / path) as image:
            assert image.mode == "L" and image.size == (64, 64)
            pixels = np.asarray(image)
        assert pixels.std() > 5  # a blob on a background, not a blank
    for path in volumes:
        volume = nib.load(root / path)
        assert volume.shape == (32, 32, 32)
        assert volume.header.get_xyzt_units()[0] == "mm"
    gaps, unmeasured = [], 0
    for path in series:
        frame = pd.read_csv(root / path)
        assert list(frame.columns) == ["time", "hr", "sbp", "spo2"]
        assert frame["time"].is_monotonic_increasing and frame["time"].notna().all()
        gaps.append(np.diff(frame["time"].to_numpy()))
        unmeasured += int(frame[["hr", "sbp", "spo2"]].isna().sum().sum())
    assert np.concatenate(gaps).std() > 0.1  # irregular sampling
    assert unmeasured > 0
    notes = manifest.loc[manifest["note"] != "", "note"]
    assert notes.str.split().str.len().min() >= 8
    # The files of missing modalities are not written at all.
    assert len(list((root / "images").iterdir())) == len(images)


def test_voxel_spacing_varies_and_matches_the_side_file(demo: Path) -> None:
    manifest = _manifest(demo)
    planted = pd.read_csv(demo.parent / "planted_features.csv").set_index("sample_id")
    rows = manifest[manifest["ct_volume"] != ""]
    zooms = np.array([nib.load(demo.parent / p).header.get_zooms() for p in rows["ct_volume"]])
    expected = planted.loc[rows["sample_id"], ["spacing_x", "spacing_y", "spacing_z"]].to_numpy()
    np.testing.assert_allclose(zooms, expected, rtol=1e-5)
    assert zooms.min() >= 1.0 and zooms.max() <= 2.5
    assert zooms[:, 0].std() > 0.2 and zooms[:, 2].std() > 0.2


def test_spec_loads_with_relative_paths(demo: Path) -> None:
    spec = load_spec(demo)
    assert spec.manifest == "manifest.csv"
    assert {name: m.kind for name, m in spec.modalities.items()} == {
        "lesion": "image",
        "ct": "volume",
        "labs": "tabular",
        "note": "text",
        "vitals": "series",
    }
    assert spec.group_column == "patient_id" and spec.split.column == "split"
    manifest = _manifest(demo)
    for column in FILE_COLUMNS.values():
        paths = manifest.loc[manifest[column] != "", column]
        assert not any(Path(p).is_absolute() for p in paths)
        assert all((spec.data_root / p).is_file() for p in paths)
    assert "planted" not in demo.read_text()  # the side file is for checks only
    assert read_settings(demo.parent).n == 60


def test_missingness_close_to_the_rates(tmp_path: Path) -> None:
    spec = make_demo_cohort(tmp_path / "c", n=80, seed=1, missing_rate=0.3)
    manifest = _manifest(spec)
    absent = pd.DataFrame({m: manifest[c] == "" for m, c in FILE_COLUMNS.items()})
    absent["note"] = manifest["note"] == ""
    absent["labs"] = (manifest[TABULAR] == "").all(axis=1)
    assert 0.22 < absent.to_numpy().mean() < 0.38
    assert not absent.all(axis=1).any()  # never every modality missing
    with_labs = manifest.loc[~absent["labs"], TABULAR]
    value_missing = ((with_labs == "") | (with_labs == "unknown")).to_numpy().mean()
    assert 0.05 < value_missing < 0.16


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path, demo: Path) -> None:
    again = make_demo_cohort(tmp_path / "again", n=60, seed=3)
    assert (again.parent / "manifest.csv").read_bytes() == (
        demo.parent / "manifest.csv"
    ).read_bytes()
    volume = _manifest(demo).query("ct_volume != ''")["ct_volume"].iloc[0]
    assert (again.parent / volume).read_bytes() == (demo.parent / volume).read_bytes()
    other = make_demo_cohort(tmp_path / "other", n=60, seed=4)
    assert (other.parent / "manifest.csv").read_bytes() != (
        demo.parent / "manifest.csv"
    ).read_bytes()


def test_split_keeps_patients_together_and_site_unseen_in_train(demo: Path) -> None:
    manifest = _manifest(demo)
    assert (manifest.groupby("patient_id")["split"].nunique() == 1).all()
    assert (manifest["patient_id"].value_counts() >= 2).any()
    assert set(manifest["split"]) == {"train", "val", "test"}
    unseen = manifest[manifest["site"] == UNSEEN_SITE]
    assert len(unseen) >= 1 and (unseen["split"] != "train").all()


def test_label_noise_flips_the_requested_fraction(tmp_path: Path) -> None:
    spec = make_demo_cohort(tmp_path / "noisy", n=50, seed=0, label_noise=0.2)
    label = _manifest(spec)["label"].astype(int).to_numpy()
    planted = pd.read_csv(spec.parent / "planted_features.csv")
    flipped = label != planted["label_clean"].to_numpy()
    assert flipped.sum() == 10
    np.testing.assert_array_equal(flipped, planted["label_flipped"].to_numpy())


def test_refuses_a_foreign_folder_unless_forced(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(PolymodalError, match=r"not empty.*--force"):
        make_demo_cohort(foreign, n=20)
    make_demo_cohort(foreign, n=20, force=True)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_rerun_replaces_a_previous_demo_cohort(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    make_demo_cohort(out, n=30, missing_rate=0.0)
    make_demo_cohort(out, n=12, missing_rate=0.0)
    assert len(list((out / "images").iterdir())) == 12  # no stale files from the first run


def test_bad_settings_are_named(tmp_path: Path) -> None:
    with pytest.raises(PolymodalError, match=r"missing_rate must be in \[0, 1\) \(got 1.0\)"):
        make_demo_cohort(tmp_path / "demo", n=20, missing_rate=1.0)
    assert not (tmp_path / "demo").exists()


# --------------------------------------------------------------------------------------------
# The planted rule, checked from the files with hand-crafted features
# --------------------------------------------------------------------------------------------


def _elongation(path: Path) -> float:
    pixels = np.asarray(Image.open(path), dtype=float)
    background, peak = np.median(pixels), np.percentile(pixels, 99.5)
    labels, _ = ndimage.label(pixels > background + 0.5 * (peak - background))
    blob = labels == 1 + np.argmax(np.bincount(labels.ravel())[1:])
    eigenvalues = np.linalg.eigvalsh(np.cov(np.stack(np.nonzero(blob))))
    return float(np.sqrt(eigenvalues[1] / eigenvalues[0]))


def _nodule_radius_mm(path: Path) -> float:
    volume = nib.load(path)
    voxels = np.asarray(volume.dataobj, dtype=float)
    labels, _ = ndimage.label(voxels > np.median(voxels) + 35)
    count = np.bincount(labels.ravel())[1:].max()
    return float((3 * count * np.prod(volume.header.get_zooms()) / (4 * np.pi)) ** (1 / 3))


def _spo2_slope(path: Path) -> float:
    frame = pd.read_csv(path).dropna(subset=["spo2"])
    return float(np.polyfit(frame["time"], frame["spo2"], 1)[0])


def _bayes_auroc(label: np.ndarray, *features: np.ndarray) -> float:
    """In-sample AUROC of the label's mean within each cell of the (binary) features."""
    cells = pd.Series(list(zip(*features, strict=True)))
    return float(roc_auc_score(label, pd.Series(label).groupby(cells).transform("mean")))


def test_the_rule_needs_several_modalities(tmp_path: Path) -> None:
    spec = make_demo_cohort(
        tmp_path / "rule", n=160, seed=5, missing_rate=0.0, value_missing_rate=0.0
    )
    root, manifest = spec.parent, _manifest(spec)
    label = manifest["label"].astype(int).to_numpy()
    elongated = np.array([_elongation(root / p) for p in manifest["lesion_image"]]) > 1.6
    large = np.array([_nodule_radius_mm(root / p) for p in manifest["ct_volume"]]) > 6.25
    falling = np.array([_spo2_slope(root / p) for p in manifest["vitals_series"]]) < -0.055
    symptom = (
        manifest["note"].str.contains("shortness of breath|dyspnea|chest tightness").to_numpy()
    )
    high_crp = manifest["crp"].astype(float).to_numpy() > 10
    older = manifest["age"].astype(float).to_numpy() > 60

    rule = (elongated & high_crp) | (symptom & older) | (large & falling)
    assert (rule == label).mean() >= 0.98
    single = {
        "lesion": _bayes_auroc(label, elongated),
        "ct": _bayes_auroc(label, large),
        "labs": _bayes_auroc(label, high_crp, older),
        "note": _bayes_auroc(label, symptom),
        "vitals": _bayes_auroc(label, falling),
    }
    assert max(single.values()) <= 0.8, single
    assert min(single.values()) > 0.5, single  # each modality carries some signal


def test_the_demo_cohort_validates_without_errors(tmp_path: Path) -> None:
    from polymodal.data.manifest import load_cohort
    from polymodal.validation.validate import validate_cohort

    spec = make_demo_cohort(tmp_path / "small", n=16, seed=0)  # small: validation opens every file
    report = validate_cohort(load_cohort(load_spec(spec)), workers=1)
    assert report.n_errors == 0, [p for p in report.problems if p.severity == "error"]
    assert report.training_possible
    assert report.availability["ct"]["train"] > 0
