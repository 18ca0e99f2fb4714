"""SampleCache: a second epoch decodes nothing; settings changes miss; corrupt entries rebuild."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from polymodal.data import readers
from polymodal.data.cache import SampleCache, content_hash
from polymodal.data.dataset import CohortDataset
from polymodal.data.manifest import load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.spec import parse_spec


def make_cohort(root: Path, *, window=None, series: dict | None = None):
    """Three rows with a PNG, a NIfTI and a series CSV each (two train, one val)."""
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    for name in "abc":
        Image.fromarray(rng.integers(0, 255, (6, 6), dtype=np.uint8)).save(root / f"{name}.png")
        volume = rng.normal(size=(3, 3, 3)).astype(np.float32)
        nib.save(nib.Nifti1Image(volume, np.eye(4)), root / f"{name}.nii.gz")
        pd.DataFrame({"time": [0, 1, 2], "hr": rng.normal(80, 5, 3)}).to_csv(
            root / f"{name}.csv", index=False
        )
    pd.DataFrame(
        {
            "id": list("abc"),
            "split": ["train", "train", "val"],
            "y": ["1", "0", "1"],
            "img": [f"{n}.png" for n in "abc"],
            "ct": [f"{n}.nii.gz" for n in "abc"],
            "vitals": [f"{n}.csv" for n in "abc"],
        }
    ).to_csv(root / "manifest.csv", index=False)
    ct = {"kind": "volume", "column": "ct", "orientation": None, "window": window}
    spec = parse_spec(
        {
            "manifest": "manifest.csv",
            "id_column": "id",
            "split": {"column": "split"},
            "targets": {"y": {"kind": "binary", "column": "y"}},
            "modalities": {
                "img": {"kind": "image", "columns": ["img"], "size": [4, 4], "channels": 1},
                "ct": {key: value for key, value in ct.items() if value is not None},
                "vitals": {
                    "kind": "series",
                    "column": "vitals",
                    "channels": ["hr"],
                    **(series or {}),
                },
            },
        },
        base_dir=root,
    )
    return load_cohort(spec)


@pytest.fixture
def counted_readers(monkeypatch):
    """Count calls of the image, volume and series readers (still reading for real)."""
    calls = {"read_image": 0, "read_volume": 0, "read_series": 0}
    for name in calls:
        real = getattr(readers, name)

        def counting(*args, _real=real, _name=name):
            calls[_name] += 1
            return _real(*args)

        monkeypatch.setattr(readers, name, counting)
    return calls


def epoch(dataset) -> list[dict]:
    return [dataset[i] for i in range(len(dataset))]


def test_second_epoch_does_not_call_the_readers(tmp_path, counted_readers):
    cohort = make_cohort(tmp_path / "data")
    prep = Preprocessor.fit(cohort)
    counted_readers.update(dict.fromkeys(counted_readers, 0))  # fitting read the series
    cache = SampleCache(tmp_path / "cache")
    dataset = CohortDataset(cohort, prep, "train", cache=cache)
    first = epoch(dataset)
    assert counted_readers == {"read_image": 2, "read_volume": 2, "read_series": 2}
    second = epoch(dataset)
    assert counted_readers == {"read_image": 2, "read_volume": 2, "read_series": 2}
    assert cache.hits == 6 and cache.misses == 6
    for a, b in zip(first, second, strict=True):
        for modality, fields in a["inputs"].items():
            for field, tensor in fields.items():
                assert torch.equal(tensor, b["inputs"][modality][field]), (modality, field)
    # A new process (a fresh cache object on the same folder) hits as well.
    epoch(CohortDataset(cohort, prep, "train", cache=SampleCache(tmp_path / "cache")))
    assert counted_readers["read_volume"] == 2


def test_changed_preprocessing_settings_miss_the_cache(tmp_path, counted_readers):
    cache = SampleCache(tmp_path / "cache")
    plain = make_cohort(tmp_path / "data")
    epoch(CohortDataset(plain, Preprocessor.fit(plain), "train", cache=cache))
    windowed = make_cohort(tmp_path / "data", window=(-1.0, 1.0), series={"max_steps": 2})
    counted_readers.update(dict.fromkeys(counted_readers, 0))
    samples = epoch(CohortDataset(windowed, Preprocessor.fit(windowed), "train", cache=cache))
    # The volume window and the series length changed; the image settings did not.
    assert counted_readers["read_volume"] == 2 and counted_readers["read_image"] == 0
    assert counted_readers["read_series"] == 2 + 2  # fit + encode (new fingerprint)
    assert all(s["inputs"]["ct"]["voxels"].min() >= 0 for s in samples)
    assert all(s["inputs"]["vitals"]["values"].shape[0] == 2 for s in samples)


def test_corrupted_entry_is_rebuilt(tmp_path, counted_readers):
    cohort = make_cohort(tmp_path / "data")
    prep = Preprocessor.fit(cohort)
    cache = SampleCache(tmp_path / "cache")
    dataset = CohortDataset(cohort, prep, "val", cache=cache)
    expected = dataset[0]["inputs"]["ct"]["voxels"]
    entries = sorted((tmp_path / "cache").rglob("*.safetensors"))
    assert len(entries) == 3  # image, volume, series of the one val row
    for entry in entries:
        entry.write_bytes(entry.read_bytes()[:20])  # truncated, as after a crash
    before = counted_readers["read_volume"]
    rebuilt = dataset[0]
    assert counted_readers["read_volume"] == before + 1
    assert torch.equal(rebuilt["inputs"]["ct"]["voxels"], expected)
    assert cache.rebuilt == 3 and all(rebuilt["available"].values())
    dataset[0]
    assert counted_readers["read_volume"] == before + 1  # the rebuilt entry is used again


def test_key_follows_file_content_not_path(tmp_path):
    cache = SampleCache(tmp_path / "cache")
    first = tmp_path / "a.bin"
    first.write_bytes(b"voxels")
    moved = tmp_path / "elsewhere" / "b.bin"
    moved.parent.mkdir()
    shutil.copy(first, moved)
    assert cache.key(first, "fp") == cache.key(moved, "fp")
    assert cache.key(first, "fp") != cache.key(first, "other settings")
    moved.write_bytes(b"edited voxels")
    assert cache.key(first, "fp") != cache.key(moved, "fp")


def test_series_folder_hashes_its_files_in_order(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    (folder / "1.dcm").write_bytes(b"slice one")
    (folder / "2.dcm").write_bytes(b"slice two")
    before = content_hash(folder)
    (folder / "2.dcm").write_bytes(b"slice 2")
    assert content_hash(folder) != before
    (folder / "2.dcm").write_bytes(b"slice two")
    assert content_hash(folder) == before
    (folder / "1.dcm").rename(folder / "3.dcm")  # same bytes, different order
    assert content_hash(folder) != before


def test_concurrent_writers_of_one_key_leave_a_valid_entry(tmp_path):
    cache = SampleCache(tmp_path / "cache")
    tensors = {
        "voxels": torch.arange(4096, dtype=torch.float32),
        "mask": torch.ones(3, dtype=torch.bool),
    }
    writers = [threading.Thread(target=cache.put, args=("k" * 40, tensors)) for _ in range(8)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    loaded = cache.get("k" * 40, fields=("voxels", "mask"))
    assert loaded is not None and torch.equal(loaded["voxels"], tensors["voxels"])
    assert list((tmp_path / "cache").rglob("*.tmp")) == []  # no temporary file left behind
