"""Tiny real files (PNG, JPEG, DICOM, NIfTI, series CSV) and a tiny multimodal cohort on disk."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import yaml
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def write_png(path: Path, pixels: np.ndarray) -> Path:
    """uint8 (H, W) / (H, W, 3) or uint16 (H, W) pixels to a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def write_jpeg(path: Path, height: int = 24, width: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut a file to its first ``keep`` share of bytes (a half-downloaded image)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _dicom_base(sop_class: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    return ds


def _set_pixels(ds: Dataset, pixels: np.ndarray, bits_stored: int, signed: bool) -> None:
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(signed)
    ds.PixelData = pixels.astype(np.int16 if signed else np.uint16).tobytes()


def write_dicom_image(
    path: Path,
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    slope: float = 1.0,
    intercept: float = 0.0,
    bits_stored: int = 12,
) -> Path:
    """A single-frame greyscale DICOM image with the given stored pixels (H, W)."""
    ds = _dicom_base(SECONDARY_CAPTURE)
    ds.Modality = "OT"
    ds.PhotometricInterpretation = photometric
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    _set_pixels(ds, pixels, bits_stored, signed=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_dicom_report(path: Path) -> Path:
    """A valid DICOM object without pixel data (a structured report)."""
    ds = _dicom_base(BASIC_TEXT_SR)
    ds.Modality = "SR"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_dicom_series(folder: Path, slices: int = 3, rows: int = 6, columns: int = 5) -> Path:
    """A CT series: slice k is filled with stored value k*100 (HU = k*100 - 1000)."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    for k in range(slices):
        ds = _dicom_base(CT_IMAGE_STORAGE)
        ds.Modality = "CT"
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [0.0, 0.0, 2.5 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.7, 0.8]
        ds.SliceThickness = 2.5
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.RescaleSlope = 1
        ds.RescaleIntercept = -1000
        _set_pixels(ds, np.full((rows, columns), k * 100), 16, signed=True)
        ds.save_as(folder / f"slice{k}.dcm", enforce_file_format=True)
    return folder


def write_nifti(path: Path, volume: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([*spacing, 1.0])
    nib.save(nib.Nifti1Image(volume.astype(np.float32), affine), path)
    return path


def write_table(path: Path, rows: dict[str, list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def tiny_cohort(root: Path) -> tuple[Path, pd.DataFrame]:
    """Six samples of four patients with every modality kind; returns (spec path, manifest).

    Rows s0-s3 are train (patients p0, p1), s4-s5 val (p2, p3); label y alternates 1/0.
    Edit the returned frame and call :func:`write_manifest` to inject a problem.
    """
    rows = []
    for i in range(6):
        write_png(root / "xray" / f"s{i}.png", np.full((12, 16), 20 * i, dtype=np.uint8))
        write_nifti(root / "ct" / f"s{i}.nii.gz", np.full((6, 6, 6), float(i)))
        write_table(root / "vitals" / f"s{i}.csv", {"t": [0.0, 1.5, 3.0], "hr": [70, "", 72 + i]})
        rows.append(
            {
                "sample_id": f"s{i}",
                "patient_id": f"p{i // 2}",
                "split": "train" if i < 4 else "val",
                "y": str(i % 2),
                "xray": f"xray/s{i}.png",
                "ct": f"ct/s{i}.nii.gz",
                "age": str(40 + i),
                "sex": "F" if i % 3 else "M",
                "note": f"note number {i}",
                "vitals": f"vitals/s{i}.csv",
            }
        )
    frame = pd.DataFrame(rows)
    write_manifest(root, frame)
    spec = {
        "name": "tiny",
        "manifest": "manifest.csv",
        "id_column": "sample_id",
        "group_column": "patient_id",
        "split": {"column": "split"},
        "targets": {"y": {"kind": "binary", "column": "y", "positive": "1"}},
        "modalities": {
            "xray": {"kind": "image", "columns": ["xray"], "size": [8, 8], "channels": 1},
            "ct": {"kind": "volume", "column": "ct", "size": [4, 4, 4]},
            "labs": {"kind": "tabular", "numeric": ["age"], "categorical": ["sex"]},
            "note": {"kind": "text", "column": "note"},
            "vitals": {
                "kind": "series",
                "column": "vitals",
                "time_column": "t",
                "channels": ["hr"],
            },
        },
    }
    spec_path = root / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return spec_path, frame


def write_manifest(root: Path, frame: pd.DataFrame) -> Path:
    path = root / "manifest.csv"
    frame.to_csv(path, index=False)
    return path


def break_files(root: Path, frame: pd.DataFrame) -> None:
    """Row s1: missing PNG; s2: truncated PNG; s3: DICOM without pixels; s4: 4D NIfTI;
    s5: series with a word for a number."""
    frame.loc[1, "xray"] = "xray/gone.png"
    rng = np.random.default_rng(0)
    truncate(write_png(root / "xray" / "s2.png", rng.integers(0, 255, (64, 64), np.uint8)))
    write_dicom_report(root / "xray" / "s3.dcm")
    frame.loc[3, "xray"] = "xray/s3.dcm"
    write_nifti(root / "ct" / "s4.nii.gz", np.zeros((4, 4, 4, 2)))
    write_table(root / "vitals" / "s5.csv", {"t": [0, 1], "hr": [70, "high"]})
    write_manifest(root, frame)
