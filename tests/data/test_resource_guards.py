"""Resource guards: a file (or a setting) beyond a modality's limit is a ReadError naming the key
that raises the limit, found before the memory is allocated."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from tiny_files import write_dicom_image, write_nifti, write_png, write_table

from polymodal.data.readers import read_image, read_series, read_text, read_volume
from polymodal.data.spec import (
    ImageModality,
    SeriesModality,
    TextModality,
    VolumeModality,
    parse_spec,
)
from polymodal.errors import ReadError, SpecError


def volume_cfg(**kw) -> VolumeModality:
    return VolumeModality(kind="volume", column="vol", **kw)


def image_cfg(**kw) -> ImageModality:
    return ImageModality(kind="image", columns=["img"], **{"size": (4, 4), **kw})


# ------------------------------------------------------------------------------- volumes


def test_resampled_size_is_checked_before_resampling(tmp_path):
    # 8^3 voxels of 300 mm resampled to 1 mm would be 2101^3 voxels (37 GB of float32).
    path = write_nifti(tmp_path / "v.nii.gz", np.ones((8, 8, 8)), spacing=(300, 300, 300))
    with pytest.raises(ReadError) as err:
        read_volume(path, volume_cfg(spacing=[1, 1, 1]))
    message = str(err.value)
    assert "9,274,236,301 voxels after resampling (shape (2101, 2101, 2101)" in message
    assert "exceed the limit of 134,217,728 (max_voxels of this modality)" in message
    assert "raise max_voxels in the spec" in message


def test_max_voxels_can_be_raised(tmp_path):
    # 8^3 voxels of 4 mm resampled to 1 mm: 29^3 = 24,389 voxels.
    path = write_nifti(tmp_path / "v.nii.gz", np.ones((8, 8, 8)), spacing=(4, 4, 4))
    with pytest.raises(ReadError, match="24,389 voxels after resampling"):
        read_volume(path, volume_cfg(spacing=[1, 1, 1], max_voxels=20_000))
    voxels, _ = read_volume(path, volume_cfg(spacing=[1, 1, 1], max_voxels=30_000))
    assert voxels.shape == (1, 29, 29, 29)


def test_nifti_header_size_is_checked_before_its_data_is_read(tmp_path, monkeypatch):
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((40, 40, 40), np.uint8), np.eye(4)), path)
    from polymodal.data.readers import volume

    def must_not_load(*_):
        raise AssertionError("the voxels were loaded")

    monkeypatch.setattr(volume, "_load_with_monai", must_not_load)
    with pytest.raises(ReadError, match=r"64,000 voxels exceed the limit of 1,000 \(max_voxels"):
        read_volume(path, volume_cfg(max_voxels=1000))


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_numpy_header_size_is_checked_before_its_data_is_read(tmp_path, suffix):
    path = tmp_path / f"v{suffix}"
    array = np.zeros((20, 20, 20), np.float32)
    np.save(path, array) if suffix == ".npy" else np.savez_compressed(path, scan=array)
    with pytest.raises(ReadError, match=r"8,000 voxels exceed the limit of 999 \(max_voxels"):
        read_volume(path, volume_cfg(max_voxels=999))


# -------------------------------------------------------------------------------- images


def test_image_larger_than_max_pixels_is_refused(tmp_path):
    path = write_png(tmp_path / "a.png", np.zeros((40, 50), np.uint8))
    with pytest.raises(ReadError, match=r"2,000 pixels exceed the limit of 1,999 \(max_pixels"):
        read_image(path, image_cfg(max_pixels=1999))
    assert read_image(path, image_cfg(max_pixels=2000)).shape == (3, 4, 4)


def test_dicom_larger_than_max_pixels_is_refused_before_decoding(tmp_path):
    path = write_dicom_image(tmp_path / "a.dcm", np.zeros((12, 10)))
    with pytest.raises(ReadError, match=r"120 pixels exceed the limit of 100 \(max_pixels"):
        read_image(path, image_cfg(max_pixels=100))


def test_pillow_decompression_bomb_error_is_a_read_error(tmp_path, monkeypatch):
    path = write_png(tmp_path / "a.png", np.zeros((40, 50), np.uint8))
    # Pillow refuses images above twice its MAX_IMAGE_PIXELS, whatever max_pixels allows.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    with pytest.raises(ReadError, match="Pillow refuses to decode so large an image"):
        read_image(path, image_cfg())


# ---------------------------------------------------------------------------- text, series


def test_text_longer_than_max_chars_is_refused_in_a_cell_and_in_a_file(tmp_path):
    column = TextModality(kind="text", column="note", max_chars=10)
    assert read_text("0123456789", column, None) == "0123456789"
    with pytest.raises(ReadError, match=r"longer than 10 characters.*max_chars of this modality"):
        read_text("0123456789!", column, None)
    (tmp_path / "n.txt").write_text("é" * 11, encoding="utf-8")
    in_file = TextModality(kind="text", column="note", source="file", max_chars=10)
    with pytest.raises(ReadError, match=r"n\.txt: the text is longer than 10 characters"):
        read_text("n.txt", in_file, lambda cell, _: tmp_path / cell)
    (tmp_path / "n.txt").write_text("é" * 10, encoding="utf-8")
    assert read_text("n.txt", in_file, lambda cell, _: tmp_path / cell) == "é" * 10


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_series_longer_than_max_rows_is_refused(tmp_path, suffix):
    cfg = SeriesModality(kind="series", column="s", time_column="t", channels=["hr"], max_rows=5)
    path = write_table(tmp_path / f"s{suffix}", {"t": list(range(6)), "hr": [70.0] * 6})
    with pytest.raises(ReadError, match=r"(more than 5 rows|6 rows exceed the limit of 5)"):
        read_series(path, cfg)
    write_table(path, {"t": list(range(5)), "hr": [70.0] * 5})
    assert read_series(path, cfg)[0].shape == (5,)


# --------------------------------------------------------------------- the spec's limits


BASE = {
    "manifest": "m.csv",
    "id_column": "id",
    "split": {"column": "split"},
    "targets": {"y": {"kind": "binary", "column": "y"}},
}


def test_output_sizes_beyond_the_limits_are_refused_by_the_spec():
    image = {"kind": "image", "columns": ["c"], "size": [100, 100], "max_pixels": 9999}
    with pytest.raises(SpecError, match=r"modalities.x: size \[100, 100\] has more pixels"):
        parse_spec({**BASE, "modalities": {"x": image}})
    volume = {"kind": "volume", "column": "c", "size": [64, 64, 64], "max_voxels": 1000}
    with pytest.raises(SpecError, match=r"modalities.ct: size \[64, 64, 64\] has more voxels"):
        parse_spec({**BASE, "modalities": {"ct": volume}})


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"kind": "image", "columns": ["c"]}, "max_pixels"),
        ({"kind": "volume", "column": "c"}, "max_voxels"),
        ({"kind": "text", "column": "c"}, "max_chars"),
        ({"kind": "series", "column": "c", "channels": ["hr"]}, "max_rows"),
    ],
)
def test_limits_must_be_positive(section, key):
    with pytest.raises(SpecError, match=rf"modalities.m.{key}: Input should be greater than"):
        parse_spec({**BASE, "modalities": {"m": {**section, key: 0}}})
