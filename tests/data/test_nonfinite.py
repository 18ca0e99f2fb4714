"""Non-finite values are a data problem, found by the reader that meets them.

A NaN or infinite voxel, pixel, series value or tabular cell is a ReadError counting or naming
it; validate reports it by row and column, and the dataset makes that modality unavailable for
the sample (or stops under on_error="fail"). NaN in a series stays an unobserved value.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from tiny_files import (
    tiny_cohort,
    write_dicom_image,
    write_dicom_series,
    write_manifest,
    write_nifti,
    write_table,
)

from polymodal.data.dataset import CohortDataset
from polymodal.data.manifest import load_cohort, parse_number
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.readers import read_image, read_series, read_volume
from polymodal.data.spec import ImageModality, SeriesModality, VolumeModality, load_spec
from polymodal.errors import ReadError
from polymodal.validation.validate import validate_cohort


def image_cfg(**kw) -> ImageModality:
    return ImageModality(kind="image", columns=["img"], **{"size": (4, 4), **kw})


def volume_cfg(**kw) -> VolumeModality:
    return VolumeModality(kind="volume", column="vol", **kw)


def series_cfg() -> SeriesModality:
    return SeriesModality(kind="series", column="s", time_column="t", channels=["hr"])


def volume_with_nan(shape=(8, 8, 8)) -> np.ndarray:
    volume = np.ones(shape, dtype=np.float32)
    volume[0, 0, :3] = np.nan
    volume[1, 1, 1] = np.inf
    return volume


# ------------------------------------------------------------------------------- volumes


def test_nifti_with_nan_voxels_is_refused_with_the_count(tmp_path):
    path = write_nifti(tmp_path / "v.nii.gz", volume_with_nan())
    # Cropping to 4^3 would cut the bad corner away: the check is on what the file holds.
    with pytest.raises(ReadError, match=r"4 of 512 voxels are NaN or infinite") as err:
        read_volume(path, volume_cfg(size=[4, 4, 4]))
    assert err.value.path == str(path)


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_numpy_volume_with_infinite_voxels_is_refused(tmp_path, suffix):
    path = tmp_path / f"v{suffix}"
    if suffix == ".npy":
        np.save(path, volume_with_nan())
    else:
        np.savez(path, scan=volume_with_nan())
    with pytest.raises(ReadError, match=r"4 of 512 voxels are NaN or infinite"):
        read_volume(path, volume_cfg())


def test_dicom_series_with_nan_rescale_slope_is_refused(tmp_path):
    import pydicom

    folder = write_dicom_series(tmp_path / "series")
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.RescaleSlope = float("nan")
        ds.save_as(path)
    with pytest.raises(ReadError, match=r"90 of 90 voxels .* RescaleSlope/RescaleIntercept"):
        read_volume(folder, volume_cfg())


def test_nifti_with_nan_voxel_spacing_is_refused(tmp_path):
    image = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), None)
    image.header["pixdim"][1:4] = [np.nan, 1.0, 1.0]
    image.header.set_sform(None, code=0)
    image.header.set_qform(None, code=0)
    nib.save(image, tmp_path / "v.nii")
    with pytest.raises(ReadError, match=r"geometry \(voxel spacing / orientation\) is not usable"):
        read_volume(tmp_path / "v.nii", volume_cfg())


# -------------------------------------------------------------------------------- images


@pytest.mark.parametrize(("slope", "intercept"), [(float("nan"), 0.0), (1.0, float("inf"))])
def test_dicom_image_with_non_finite_rescale_is_refused(tmp_path, slope, intercept):
    path = write_dicom_image(tmp_path / "a.dcm", np.ones((4, 4)), slope=slope, intercept=intercept)
    keyword = "RescaleSlope" if np.isnan(slope) else "RescaleIntercept"
    with pytest.raises(ReadError, match=rf"DICOM {keyword} is (nan|inf), so every pixel"):
        read_image(path, image_cfg())


def test_float_image_with_nan_pixels_is_refused(tmp_path):
    pixels = np.ones((6, 5), dtype=np.float32)
    pixels[2, 3] = np.nan
    Image.fromarray(pixels, mode="F").save(tmp_path / "a.tif")
    with pytest.raises(ReadError, match=r"1 of 30 pixels are NaN or infinite"):
        read_image(tmp_path / "a.tif", image_cfg(channels=1))


def test_float_image_overflowing_its_normalisation_is_refused(tmp_path):
    pixels = np.full((4, 4), 3e38, dtype=np.float32)
    pixels[0] = -3e38  # max - min overflows float32
    Image.fromarray(pixels, mode="F").save(tmp_path / "a.tif")
    with pytest.raises(ReadError, match=r"pixels after normalisation are NaN or infinite"):
        read_image(tmp_path / "a.tif", image_cfg(channels=1, normalize="minmax"))


# -------------------------------------------------------------------------- series, cells


def test_infinite_series_value_names_row_and_column_but_nan_stays_unobserved(tmp_path):
    path = write_table(tmp_path / "s.csv", {"t": [0, 1, 2], "hr": [70, "", "inf"]})
    with pytest.raises(ReadError, match=r"row 3, column 'hr': 'inf' is infinite"):
        read_series(path, series_cfg())
    write_table(path, {"t": [0, 1, 2], "hr": [70, "", "1e999"]})
    with pytest.raises(ReadError, match=r"row 3, column 'hr': '1e999' is infinite"):
        read_series(path, series_cfg())
    write_table(path, {"t": [0, 1, "-inf"], "hr": [70, "", 71]})
    with pytest.raises(ReadError, match=r"row 3, column 't': '-inf' is infinite"):
        read_series(path, series_cfg())
    write_table(path, {"t": [0, 1, 2], "hr": [70, "", "NaN"]})
    _, values = read_series(path, series_cfg())
    assert np.isnan(values[1:, 0]).all() and values[0, 0] == 70


def test_parquet_series_with_infinite_value_is_refused(tmp_path):
    path = write_table(tmp_path / "s.parquet", {"t": [0.0, 1.0], "hr": [70.0, -np.inf]})
    with pytest.raises(ReadError, match=r"row 2, column 'hr': -inf is infinite"):
        read_series(path, series_cfg())


@pytest.mark.parametrize("cell", ["inf", "-inf", "1e999", "-Infinity"])
def test_parse_number_refuses_infinite_cells(cell):
    with pytest.raises(ReadError, match="is not a finite number"):
        parse_number(cell)


# -------------------------------------------------------- tabular scaling never overflows


def _tabular_cohort(tmp_path, ages: list[str]):
    import pandas as pd

    from polymodal.data.spec import parse_spec

    pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(len(ages))],
            "split": ["train"] * (len(ages) - 1) + ["val"],
            "y": ["0", "1"] * (len(ages) // 2) + ["0"] * (len(ages) % 2),
            "age": ages,
        }
    ).to_csv(tmp_path / "m.csv", index=False)
    spec = {
        "manifest": "m.csv",
        "id_column": "id",
        "split": {"column": "split"},
        "targets": {"y": {"kind": "binary", "column": "y"}},
        "modalities": {"labs": {"kind": "tabular", "numeric": ["age"]}},
    }
    return load_cohort(parse_spec(spec, base_dir=tmp_path))


def test_an_infinite_training_value_is_refused_naming_its_row(tmp_path):
    cohort = _tabular_cohort(tmp_path, ["40", "inf", "1e999", "50"])
    with pytest.raises(ReadError, match=r"not a finite number: 'r1' \('inf'\), 'r2' \('1e999'\)"):
        Preprocessor.fit(cohort)


def test_training_values_whose_mean_overflows_are_refused_when_fitting(tmp_path):
    cohort = _tabular_cohort(tmp_path, ["1.7e308", "1.7e308", "1.7e308", "40"])
    with pytest.raises(ReadError, match=r"modality 'labs': the training values are too large"):
        Preprocessor.fit(cohort)


def test_a_value_too_large_to_scale_becomes_missing_not_inf(tmp_path):
    prep = Preprocessor.fit(_tabular_cohort(tmp_path, ["40", "50", "60", "70"]))
    bad: list[tuple[str, str]] = []
    fields = prep.transform_tabular("labs", {"age": "1e300"}, bad)
    assert torch.isfinite(fields["numeric"]).all() and fields["numeric_missing"].tolist() == [True]
    assert bad == [
        ("age", "1e+300 is too large to scale with the training values; used as missing")
    ]
    with pytest.raises(ReadError, match=r"column 'age': 1e\+300 is too large to scale"):
        prep.transform_tabular("labs", {"age": "1e300"})


# ------------------------------------------------- through validate and through the dataset


def _cohort_with_non_finite_values(root):
    """tiny_cohort with s1: NaN NIfTI voxels; s2: DICOM with a NaN slope; s3: inf heart rate;
    s4: 'inf' age."""
    spec_path, frame = tiny_cohort(root)
    write_nifti(root / "ct" / "s1.nii.gz", volume_with_nan((6, 6, 6)))
    write_dicom_image(root / "xray" / "s2.dcm", np.ones((12, 16)), slope=float("nan"))
    frame.loc[2, "xray"] = "xray/s2.dcm"
    write_table(root / "vitals" / "s3.csv", {"t": [0.0, 1.0], "hr": [70, "inf"]})
    frame.loc[4, "age"] = "inf"
    write_manifest(root, frame)
    return spec_path


def test_validate_reports_each_non_finite_value_by_row_and_column(tmp_path):
    spec_path = _cohort_with_non_finite_values(tmp_path)
    report = validate_cohort(load_cohort(load_spec(spec_path)), on_error="fail", workers=2)
    found = {(p.row_id, p.column): p.reason for p in report.problems}
    assert found.keys() == {("s1", "ct"), ("s2", "xray"), ("s3", "vitals"), ("s4", "age")}
    assert found["s1", "ct"].startswith("4 of 216 voxels are NaN or infinite")
    assert "s1.nii.gz" in found["s1", "ct"]
    assert found["s2", "xray"].startswith("DICOM RescaleSlope is nan")
    assert found["s3", "vitals"].startswith("row 2, column 'hr': 'inf' is infinite")
    assert found["s4", "age"] == "'inf' is not a finite number"
    assert not report.training_possible


def test_dataset_marks_a_non_finite_modality_unavailable_or_fails(tmp_path):
    spec_path = _cohort_with_non_finite_values(tmp_path)
    cohort = load_cohort(load_spec(spec_path))
    prep = Preprocessor.fit(cohort)
    train = CohortDataset(cohort, prep, "train")
    samples = [train[i] for i in range(len(train))]
    assert samples[1]["available"]["ct"] is False and samples[1]["available"]["xray"] is True
    assert samples[2]["available"]["xray"] is False
    assert samples[3]["available"]["vitals"] is False
    for sample in samples:
        for fields in sample["inputs"].values():
            for tensor in fields.values():
                assert not tensor.is_floating_point() or torch.isfinite(tensor).all()
    issues = {(i.row_id, i.modality, i.column): i.reason for i in train.issues}
    assert issues.keys() == {("s1", "ct", "ct"), ("s2", "xray", "xray"), ("s3", "vitals", "vitals")}
    assert "4 of 216 voxels are NaN or infinite" in issues["s1", "ct", "ct"]
    val = CohortDataset(cohort, prep, "val")
    assert val[0]["inputs"]["labs"]["numeric_missing"].tolist() == [True]  # s4's 'inf' age
    assert [(i.row_id, i.column) for i in val.issues] == [("s4", "age")]
    strict = CohortDataset(cohort, prep, "train", on_error="fail")
    with pytest.raises(ReadError, match=r"row 's1', 'ct' \(column 'ct'\).*voxels are NaN"):
        strict[1]
