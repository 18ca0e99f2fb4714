"""The voxel spacing a volume reaches the model with is right after resampling and crop/pad.

M3FM's official preprocessing keeps the original spacing after resizing (methods.md §2.4); the
voxel-size embedding is only as good as this number. Checked physically: two bright planes a known
distance apart in mm must sit ``distance / spacing`` voxels apart in the preprocessed volume.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from polymodal.data.readers import read_volume
from polymodal.data.spec import VolumeModality

# Two planes along the first axis at voxels 2 and 6 of a 2 mm axis: 8 mm apart.
PLANES = (2, 6)
FILE_SPACING = (2.0, 1.0, 3.0)


def write_planes(path: Path, affine: np.ndarray) -> Path:
    volume = np.zeros((10, 12, 6), dtype=np.float32)
    volume[list(PLANES)] = 1.0
    nib.save(nib.Nifti1Image(volume, affine), path)
    return path


def plane_positions(voxels: np.ndarray, axis: int) -> np.ndarray:
    """Indices along ``axis`` where the planes are (their voxels are the brightest)."""
    profile = voxels[0].mean(axis=tuple(a for a in range(3) if a != axis))
    return np.flatnonzero(np.isclose(profile, profile.max()))


@pytest.mark.parametrize(
    ("options", "expected_spacing", "expected_shape"),
    [
        ({}, FILE_SPACING, (10, 12, 6)),
        ({"size": [8, 8, 8]}, FILE_SPACING, (8, 8, 8)),  # crop only: spacing unchanged
        ({"spacing": [1.0, 1.5, 1.5]}, (1.0, 1.5, 1.5), (19, 8, 11)),
        ({"spacing": [1.0, 1.5, 1.5], "size": [12, 8, 8]}, (1.0, 1.5, 1.5), (12, 8, 8)),
        ({"spacing": [1.0, 1.5, 1.5], "size": [24, 4, 16]}, (1.0, 1.5, 1.5), (24, 4, 16)),
        ({"spacing": [4.0, 2.0, 2.0], "size": [4, 4, 4]}, (4.0, 2.0, 2.0), (4, 4, 4)),
    ],
)
def test_spacing_after_resample_and_crop_or_pad(
    tmp_path: Path, options: dict, expected_spacing: tuple, expected_shape: tuple
) -> None:
    path = write_planes(tmp_path / "ct.nii.gz", np.diag([*FILE_SPACING, 1.0]))
    voxels, spacing = read_volume(path, VolumeModality(kind="volume", column="ct", **options))
    assert voxels.shape == (1, *expected_shape)
    np.testing.assert_allclose(spacing, expected_spacing)
    # The planes stay 8 mm apart: their distance in voxels times the spacing.
    found = plane_positions(voxels, axis=0)
    assert len(found) == 2
    assert (found[1] - found[0]) * spacing[0] == pytest.approx(8.0)


def test_spacing_follows_the_axes_after_reorientation(tmp_path: Path) -> None:
    # Array axes (i, j, k) lie along world (A, S, R) with 2, 1 and 3 mm; RAS puts k first.
    affine = np.array([[0, 0, 3.0, 0], [2.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])
    path = write_planes(tmp_path / "ct.nii.gz", affine)
    voxels, spacing = read_volume(path, VolumeModality(kind="volume", column="ct"))
    assert voxels.shape == (1, 6, 10, 12)
    np.testing.assert_allclose(spacing, (3.0, 2.0, 1.0))
    # The planes (2 mm axis, now the second) are still 8 mm apart.
    found = plane_positions(voxels, axis=1)
    assert (found[1] - found[0]) * spacing[1] == pytest.approx(8.0)
    raw, raw_spacing = read_volume(
        path, VolumeModality(kind="volume", column="ct", orientation=None)
    )
    assert raw.shape == (1, 10, 12, 6)
    np.testing.assert_allclose(raw_spacing, FILE_SPACING)


def test_numpy_volume_uses_default_spacing_then_resamples(tmp_path: Path) -> None:
    volume = np.zeros((10, 12, 6), dtype=np.float32)
    volume[list(PLANES)] = 1.0
    np.save(tmp_path / "ct.npy", volume)
    cfg = VolumeModality(
        kind="volume", column="ct", default_spacing=[2.0, 1.0, 3.0], spacing=[1.0, 1.0, 1.0]
    )
    voxels, spacing = read_volume(tmp_path / "ct.npy", cfg)
    np.testing.assert_allclose(spacing, (1.0, 1.0, 1.0))
    found = plane_positions(voxels, axis=0)
    assert (found[1] - found[0]) * spacing[0] == pytest.approx(8.0)
