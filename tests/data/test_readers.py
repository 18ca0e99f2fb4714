"""Readers: real tiny files in, arrays of the documented shape out, clear ReadErrors for bad files."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_files import (
    truncate,
    write_dicom_image,
    write_dicom_report,
    write_dicom_series,
    write_jpeg,
    write_nifti,
    write_png,
    write_table,
)

from polymodal.data.readers import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    read_image,
    read_series,
    read_text,
    read_volume,
)
from polymodal.data.spec import ImageModality, SeriesModality, TextModality, VolumeModality
from polymodal.errors import ReadError


def image_cfg(**kw) -> ImageModality:
    return ImageModality(kind="image", columns=["img"], **kw)


def volume_cfg(**kw) -> VolumeModality:
    return VolumeModality(kind="volume", column="vol", **kw)


# ---------------------------------------------------------------------------------- images


def test_png_8bit_imagenet_normalisation(tmp_path):
    path = write_png(tmp_path / "a.png", np.full((10, 12, 3), 255, dtype=np.uint8))
    pixels = read_image(path, image_cfg(size=(10, 12)))
    assert pixels.shape == (3, 10, 12) and pixels.dtype == np.float32
    expected = (1.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(pixels[:, 0, 0], expected, rtol=1e-5)


def test_png_16bit_keeps_full_range_and_resizes(tmp_path):
    pixels = np.zeros((20, 30), dtype=np.uint16)
    pixels[:, 15:] = 65535
    path = write_png(tmp_path / "b.png", pixels)
    raw = read_image(path, image_cfg(size=(10, 10), channels=1, normalize="none"))
    assert raw.shape == (1, 10, 10)
    assert raw[0, 0, 0] == 0 and raw[0, 0, -1] == pytest.approx(65535)
    scaled = read_image(path, image_cfg(size=(20, 30), channels=1, normalize="imagenet"))
    mean, std = np.mean(IMAGENET_MEAN), np.mean(IMAGENET_STD)
    assert scaled[0, 0, -1] == pytest.approx((1 - mean) / std, rel=1e-5)


def test_grey_to_three_channels_and_rgb_to_one(tmp_path):
    grey = write_png(tmp_path / "g.png", np.full((8, 8), 100, dtype=np.uint8))
    rgb3 = read_image(grey, image_cfg(size=(8, 8), channels=3, normalize="none"))
    assert rgb3.shape == (3, 8, 8) and np.all(rgb3 == 100)
    colour = np.zeros((8, 8, 3), dtype=np.uint8)
    colour[..., 1] = 200  # pure green
    rgb = write_png(tmp_path / "c.png", colour)
    luma = read_image(rgb, image_cfg(size=(8, 8), channels=1, normalize="none"))
    assert luma.shape == (1, 8, 8) and luma[0, 0, 0] == pytest.approx(0.587 * 200, rel=1e-5)


def test_minmax_and_zscore(tmp_path):
    path = write_jpeg(tmp_path / "a.jpg")
    mm = read_image(path, image_cfg(size=(12, 12), normalize="minmax"))
    assert mm.min() == pytest.approx(0) and mm.max() == pytest.approx(1)
    z = read_image(path, image_cfg(size=(12, 12), normalize="zscore"))
    assert abs(z.mean()) < 1e-4 and z.std() == pytest.approx(1, rel=1e-3)


def test_truncated_jpeg_and_png_fail_with_a_clear_reason(tmp_path):
    jpeg = truncate(write_jpeg(tmp_path / "cut.jpg", 64, 64))
    with pytest.raises(
        ReadError, match=r"cut\.jpg: not a decodable PNG/JPEG image \(truncated\?\)"
    ):
        read_image(jpeg, image_cfg())
    rng = np.random.default_rng(0)
    png = truncate(write_png(tmp_path / "cut.png", rng.integers(0, 255, (64, 64), np.uint8)))
    with pytest.raises(ReadError, match=r"not a decodable PNG/JPEG image \(truncated\?\)"):
        read_image(png, image_cfg())


def test_missing_file_and_non_image(tmp_path):
    with pytest.raises(ReadError) as err:
        read_image(tmp_path / "nope.png", image_cfg())
    assert err.value.reason == "file not found" and err.value.path.endswith("nope.png")
    text = tmp_path / "notes.png"
    text.write_text("hello, not an image")
    with pytest.raises(ReadError, match="not an image Pillow can open"):
        read_image(text, image_cfg())


def test_dicom_rescale_and_monochrome1(tmp_path):
    stored = np.arange(12, dtype=np.uint16).reshape(3, 4)
    path = write_dicom_image(tmp_path / "a.dcm", stored, slope=2.0, intercept=-10.0)
    pixels = read_image(path, image_cfg(size=(3, 4), channels=1, normalize="none"))
    np.testing.assert_allclose(pixels[0], stored * 2.0 - 10.0)
    # MONOCHROME1: flipped inside the stored range (12 bit -> [-10, 8180] after rescale).
    inv = write_dicom_image(
        tmp_path / "b", stored, photometric="MONOCHROME1", slope=2.0, intercept=-10.0
    )
    flipped = read_image(inv, image_cfg(size=(3, 4), channels=1, normalize="none"))
    np.testing.assert_allclose(flipped[0], 8180.0 - 10.0 - (stored * 2.0 - 10.0))


def test_dicom_without_pixel_data_is_not_an_image(tmp_path):
    path = write_dicom_report(tmp_path / "report.dcm")
    with pytest.raises(
        ReadError, match=r"report\.dcm: DICOM has no pixel data; it is not an image"
    ):
        read_image(path, image_cfg())


# --------------------------------------------------------------------------------- volumes


def test_nifti_spacing_resampling_window_and_crop(tmp_path):
    volume = np.linspace(-200, 200, 10 * 12 * 14).reshape(10, 12, 14)
    path = write_nifti(tmp_path / "ct.nii.gz", volume, spacing=(1.0, 1.5, 2.0))
    voxels, spacing = read_volume(path, volume_cfg())
    assert voxels.shape == (1, 10, 12, 14) and voxels.dtype == np.float32
    assert spacing == pytest.approx((1.0, 1.5, 2.0))
    voxels, spacing = read_volume(
        path, volume_cfg(spacing=[2, 3, 4], window=(-100, 100), size=[4, 4, 4])
    )
    assert voxels.shape == (1, 4, 4, 4) and spacing == pytest.approx((2.0, 3.0, 4.0))
    assert voxels.min() >= 0.0 and voxels.max() <= 1.0


def test_nifti_of_wrong_dimensionality(tmp_path):
    path = write_nifti(tmp_path / "4d.nii.gz", np.zeros((4, 4, 4, 2)))
    with pytest.raises(
        ReadError, match=r"expected a 3D volume, got 4 dimensions \(shape \(4, 4, 4, 2\)\)"
    ):
        read_volume(path, volume_cfg())
    # A trailing singleton axis is still a 3D volume.
    path = write_nifti(tmp_path / "3d1.nii.gz", np.zeros((4, 4, 4, 1)))
    assert read_volume(path, volume_cfg())[0].shape == (1, 4, 4, 4)


def test_dicom_series_folder(tmp_path):
    folder = write_dicom_series(tmp_path / "series", slices=3, rows=6, columns=5)
    voxels, spacing = read_volume(folder, volume_cfg())
    assert voxels.shape == (1, 5, 6, 3)
    assert spacing == pytest.approx((0.8, 0.7, 2.5))
    # Rescale intercept applied; slices sorted by position along the last axis.
    np.testing.assert_allclose(voxels[0, 0, 0, :], [-1000.0, -900.0, -800.0])


def test_folder_of_nifti_files_is_one_clear_error(tmp_path, capsys):
    for name in ("a.nii.gz", "b.nii.gz", "c.nii", "d.nii.gz"):
        write_nifti(tmp_path / "scans" / name, np.ones((4, 4, 4)))
    with pytest.raises(ReadError) as err:
        read_volume(tmp_path / "scans", volume_cfg())
    assert err.value.reason == (
        "the folder holds 4 NIfTI file(s) (a.nii.gz, b.nii.gz, c.nii and 1 more); a volume "
        "cell must name one NIfTI file (a folder is read as one DICOM series)"
    )
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err


def test_folder_without_dicom_files_and_a_damaged_series_are_short_errors(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    with pytest.raises(ReadError, match=r"holds no DICOM file \(none has the 'DICM' marker; found"):
        read_volume(tmp_path / "notes", volume_cfg())
    folder = write_dicom_series(tmp_path / "series", slices=2)
    for path in folder.iterdir():
        truncate(path, keep=0.6)
    with pytest.raises(ReadError, match="not a readable DICOM series folder") as err:
        read_volume(folder, volume_cfg())
    # One reader's error on one line, not every MONAI reader's traceback and an install hint.
    assert "\n" not in str(err.value) and "install" not in str(err.value)


def test_npy_and_npz_use_default_spacing_and_key(tmp_path):
    np.save(tmp_path / "v.npy", np.ones((3, 4, 5), dtype=np.uint8))
    voxels, spacing = read_volume(tmp_path / "v.npy", volume_cfg(default_spacing=[3, 2, 1]))
    assert voxels.shape == (1, 3, 4, 5) and spacing == (3.0, 2.0, 1.0)
    np.savez(tmp_path / "v.npz", mask=np.zeros((2, 2, 2)), image=np.ones((3, 3, 3)))
    assert read_volume(tmp_path / "v.npz", volume_cfg())[0].shape == (1, 2, 2, 2)
    assert read_volume(tmp_path / "v.npz", volume_cfg(npz_key="image"))[0].sum() == 27
    with pytest.raises(ReadError, match=r"has no array 'ct'.*arrays present: mask, image"):
        read_volume(tmp_path / "v.npz", volume_cfg(npz_key="ct"))
    np.save(tmp_path / "flat.npy", np.zeros((4, 4)))
    with pytest.raises(
        ReadError, match=r"expected a 3D volume, got 2 dimensions \(shape \(4, 4\)\)"
    ):
        read_volume(tmp_path / "flat.npy", volume_cfg())


def test_volume_missing_or_unsupported(tmp_path):
    with pytest.raises(ReadError, match="file not found"):
        read_volume(tmp_path / "nope.nii.gz", volume_cfg())
    (tmp_path / "v.mha").write_bytes(b"x")
    with pytest.raises(ReadError, match=r"unsupported volume format '\.mha'"):
        read_volume(tmp_path / "v.mha", volume_cfg())
    (tmp_path / "broken.nii.gz").write_bytes(b"not gzip")
    with pytest.raises(ReadError, match="not a readable NIfTI file"):
        read_volume(tmp_path / "broken.nii.gz", volume_cfg())


# ------------------------------------------------------------------------------ text, series


def test_text_from_column_or_file(tmp_path):
    column = TextModality(kind="text", column="note")
    assert read_text("  chest pain \n", column, resolve=lambda v, t: tmp_path / v) == "chest pain"
    from_file = TextModality(kind="text", column="note", source="file", path_template="{}.txt")
    (tmp_path / "r1.txt").write_text("No acute findings.\n", encoding="utf-8")
    assert read_text("r1", from_file, resolve=lambda v, t: tmp_path / t.format(v)) == (
        "No acute findings."
    )
    with pytest.raises(ReadError, match=r"r2\.txt: file not found"):
        read_text("r2", from_file, resolve=lambda v, t: tmp_path / t.format(v))
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ReadError, match="not UTF-8 text"):
        read_text("bin", from_file, resolve=lambda v, t: tmp_path / t.format(v))


def test_series_sorted_with_missing_values(tmp_path):
    cfg = SeriesModality(kind="series", column="v", time_column="t", channels=["hr", "sbp"])
    csv = write_table(
        tmp_path / "s.csv", {"t": [3.0, 0.0, 1.5], "hr": [72, 70, ""], "sbp": ["", 120, 118]}
    )
    times, values = read_series(csv, cfg)
    np.testing.assert_array_equal(times, [0.0, 1.5, 3.0])
    assert values.shape == (3, 2) and values.dtype == np.float64
    np.testing.assert_array_equal(values[:, 0], [70, np.nan, 72])
    np.testing.assert_array_equal(values[:, 1], [120, 118, np.nan])
    parquet = write_table(
        tmp_path / "s.parquet", {"t": [1.0, 0.0], "hr": [1.0, None], "sbp": [2.0, 3.0]}
    )
    times, values = read_series(parquet, cfg)
    np.testing.assert_array_equal(times, [0.0, 1.0])
    np.testing.assert_array_equal(values, [[np.nan, 3.0], [1.0, 2.0]])


def test_series_errors_name_the_column_and_row(tmp_path):
    cfg = SeriesModality(kind="series", column="v", time_column="t", channels=["hr"])
    no_channel = write_table(tmp_path / "a.csv", {"t": [0], "pulse": [1]})
    with pytest.raises(
        ReadError,
        match=r"column 'hr' \(declared in channels\) is missing; columns present: t, pulse",
    ):
        read_series(no_channel, cfg)
    no_time = write_table(tmp_path / "b.csv", {"time": [0], "hr": [1]})
    with pytest.raises(ReadError, match=r"column 't' \(declared in time_column\) is missing"):
        read_series(no_time, cfg)
    text_value = write_table(tmp_path / "c.csv", {"t": [0, 1], "hr": ["70", "high"]})
    with pytest.raises(ReadError, match=r"c\.csv: row 2, column 'hr': 'high' is not a number"):
        read_series(text_value, cfg)
    with pytest.raises(ReadError, match="file not found"):
        read_series(tmp_path / "nope.csv", cfg)


def test_parquet_series_with_damaged_pandas_metadata_is_a_read_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"t": [0.0, 1.0], "hr": [70.0, 71.0]})
    pq.write_table(table.replace_schema_metadata({b"pandas": b"{}"}), tmp_path / "s.parquet")
    cfg = SeriesModality(kind="series", column="s", time_column="t", channels=["hr"])
    with pytest.raises(ReadError, match="not a readable CSV/Parquet table"):
        read_series(tmp_path / "s.parquet", cfg)
