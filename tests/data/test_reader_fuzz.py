"""Property: whatever bytes a file holds, a reader returns or raises ReadError, nothing else.

Each reader gets random bytes and valid tiny files that are truncated and overwritten at random
places. The examples are derandomized (the same in every run, so CI is reproducible) and kept
few; set ``POLYMODAL_FUZZ_EXAMPLES`` to run more of them locally.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from tiny_files import (
    write_dicom_image,
    write_dicom_series,
    write_jpeg,
    write_nifti,
    write_png,
    write_table,
)

from polymodal.data.readers import read_image, read_series, read_text, read_volume
from polymodal.data.spec import ImageModality, SeriesModality, TextModality, VolumeModality
from polymodal.errors import ReadError

FUZZ = settings(
    max_examples=int(os.environ.get("POLYMODAL_FUZZ_EXAMPLES", "50")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Small limits: a damaged header that declares a huge size is refused cheaply (and the limits'
# own checks are fuzzed too).
IMAGE = ImageModality(kind="image", columns=["x"], size=(8, 8), channels=1, max_pixels=20_000)
VOLUME = VolumeModality(kind="volume", column="v", spacing=[2, 2, 2], max_voxels=20_000)
SERIES = SeriesModality(kind="series", column="s", time_column="t", channels=["hr"], max_rows=500)
TEXT = TextModality(kind="text", column="n", source="file", max_chars=5_000)

# Where to cut the file (1.0: keep it whole) and (position, bytes) to overwrite.
damage = st.tuples(
    st.one_of(st.just(1.0), st.floats(0.0, 1.0)),
    st.lists(
        st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.binary(min_size=1, max_size=4)),
        max_size=6,
    ),
)


def damaged(data: bytes, keep: float, edits: list[tuple[float, bytes]]) -> bytes:
    out = bytearray(data[: int(len(data) * keep)])
    for where, patch in edits:
        if out:
            start = int(where * len(out))
            out[start : start + len(patch)] = patch
    return bytes(out)


def expect_read_error_or_result(read) -> None:
    """Run ``read``; a ReadError is a fine answer, any other exception fails the test."""
    with contextlib.suppress(ReadError):
        read()


def _tiff(path: Path) -> Path:
    pixels = np.linspace(0, 1, 30, dtype=np.float32).reshape(5, 6)
    Image.fromarray(pixels, mode="F").save(path)
    return path


@functools.cache
def originals() -> dict[str, bytes]:
    """Valid tiny files, by name (the suffix decides the format)."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        rng = np.random.default_rng(0)
        files = [
            write_png(root / "a.png", rng.integers(0, 255, (12, 10), dtype=np.uint8)),
            write_png(root / "b16.png", rng.integers(0, 65535, (6, 7), dtype=np.uint16)),
            write_jpeg(root / "c.jpg", 12, 10),
            write_dicom_image(root / "d.dcm", rng.integers(0, 4000, (6, 5)), slope=2),
            _tiff(root / "e.tif"),
            write_nifti(root / "v.nii", rng.normal(size=(5, 4, 3))),
            write_nifti(root / "v.nii.gz", rng.normal(size=(5, 4, 3))),
            write_table(root / "s.csv", {"t": [0.0, 1.5, 3.0], "hr": [70, "", 72]}),
            write_table(root / "s.parquet", {"t": [0.0, 1.5, 3.0], "hr": [70.0, None, 72.0]}),
        ]
        np.save(root / "v.npy", rng.normal(size=(4, 3, 5)))
        np.savez_compressed(root / "v.npz", scan=rng.normal(size=(3, 3, 3)))
        files += [root / "v.npy", root / "v.npz"]
        out = {path.name: path.read_bytes() for path in files}
    out["n.txt"] = b"Small nodule, right upper lobe. Stable since 2019.\n"
    return out


def _case(names: list[str]):
    """(file name, keep, edits, noise): a valid file of ``names`` cut to ``keep`` of its bytes
    and overwritten by ``edits``, or, when ``noise`` is not None, those random bytes instead."""
    return st.tuples(
        st.sampled_from(names),
        damage,
        st.one_of(st.none(), st.binary(max_size=300)),
    ).map(lambda c: (c[0], c[1][0], c[1][1], c[2]))


def _write(folder: Path, case: tuple) -> Path:
    name, keep, edits, noise = case
    path = folder / name
    path.write_bytes(noise if noise is not None else damaged(originals()[name], keep, edits))
    return path


IMAGES = ["a.png", "b16.png", "c.jpg", "d.dcm", "e.tif"]
VOLUMES = ["v.nii", "v.nii.gz", "v.npy", "v.npz"]
SERIES_FILES = ["s.csv", "s.parquet"]


@FUZZ
@given(case=_case(IMAGES))
# Cases the fuzzer found (kept so they are checked in every run): a DICOM whose group length
# element is cut short (pydicom's BytesLengthException).
@example(case=("d.dcm", 1.0, [(0.212890625, b"\x01")], None))
def test_read_image_raises_only_read_error(tmp_path, case):
    expect_read_error_or_result(lambda: read_image(_write(tmp_path, case), IMAGE))


@FUZZ
@given(case=_case(VOLUMES))
# Found by the fuzzer: a NIfTI with a zero-length axis (torch's grid_sampler RuntimeError), a
# .npy header that is not a Python literal (TokenError), .npz members with a bad CRC, a bad
# deflate stream or a renamed local header (zipfile/zlib errors raised while reading lazily).
@example(case=("v.nii", 1.0, [(0.078125, b"\x00")], None))
@example(case=("v.npy", 1.0, [(0.125, b"[")], None))
@example(case=("v.npz", 1.0, [(0.5, b"\x00")], None))
@example(case=("v.npz", 1.0, [(0.5, b"\x01")], None))
@example(case=("v.npz", 1.0, [(0.078125, b"\x00")], None))
def test_read_volume_raises_only_read_error(tmp_path, case):
    expect_read_error_or_result(lambda: read_volume(_write(tmp_path, case), VOLUME))


@FUZZ
@given(slice_damage=damage, which=st.integers(0, 2))
def test_read_volume_of_a_damaged_dicom_series_raises_only_read_error(
    tmp_path, slice_damage, which
):
    folder = tmp_path / "series"
    shutil.rmtree(folder, ignore_errors=True)
    write_dicom_series(folder, slices=3, rows=4, columns=4)
    path = folder / f"slice{which}.dcm"
    path.write_bytes(damaged(path.read_bytes(), *slice_damage))
    expect_read_error_or_result(lambda: read_volume(folder, VOLUME))


@FUZZ
@given(case=_case(SERIES_FILES))
def test_read_series_raises_only_read_error(tmp_path, case):
    expect_read_error_or_result(lambda: read_series(_write(tmp_path, case), SERIES))


@FUZZ
@given(case=_case(["n.txt"]))
def test_read_text_raises_only_read_error(tmp_path, case):
    path = _write(tmp_path, case)
    expect_read_error_or_result(lambda: read_text(path.name, TEXT, lambda cell, _: tmp_path / cell))
