"""CohortDataset on a tiny cohort with all five kinds: layout, availability, issues."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from polymodal.data import readers
from polymodal.data.collate import collate_samples
from polymodal.data.dataset import CohortDataset, build_dataloaders, encode_row
from polymodal.data.manifest import load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.spec import parse_spec
from polymodal.errors import PolymodalError, ReadError

#  id   split  label  xray        ct            age  sex  note                  vitals
ROWS = [
    ("a", "train", "1", "a.png", "a.nii.gz", "61", "F", "Small nodule, right.", "a.csv"),
    ("b", "train", "0", "b.png", "b.nii.gz", "45", "M", "No findings.", "b.csv"),
    ("c", "train", "1", "c.png", "", "", "F", "Effusion left", "c.csv"),
    ("d", "train", "0", "", "d.nii.gz", "52", "", "", ""),
    ("e", "val", "1", "bad.png", "e.nii.gz", "70", "X", "Nodule grew.", "e.csv"),
    ("f", "val", "", "f.png", "f.nii.gz", "unknown", "unknown", "stable", "f.csv"),
]


def make_cohort(root: Path, **modality_overrides: dict):
    """Write PNGs, NIfTIs, series CSVs and a manifest under ``root``; return the cohort."""
    rng = np.random.default_rng(0)
    records = []
    for sample_id, split, label, xray, ct, age, sex, note, vitals in ROWS:
        if xray == "bad.png":
            (root / xray).write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
        elif xray:
            pixels = rng.integers(0, 255, (10, 12), dtype=np.uint8)
            Image.fromarray(pixels).save(root / xray)
        if ct:
            volume = rng.normal(size=(5, 4, 6)).astype(np.float32)
            nib.save(nib.Nifti1Image(volume, np.diag([1.5, 1.0, 2.0, 1.0])), root / ct)
        if vitals:
            times = np.sort(rng.uniform(0, 10, 5))
            pd.DataFrame(
                {"t": times, "hr": rng.normal(80, 5, 5), "sbp": [120, "", 118, "", 121]}
            ).to_csv(root / vitals, index=False)
        records.append(
            {
                "sample_id": sample_id,
                "patient_id": f"p{sample_id}",
                "split": split,
                "label": label,
                "xray_path": xray,
                "ct_path": ct,
                "age": age,
                "sex": sex,
                "note": note,
                "vitals_path": vitals,
            }
        )
    pd.DataFrame(records).to_csv(root / "manifest.csv", index=False)
    modalities = {
        "xray": {"kind": "image", "columns": ["xray_path"], "size": [8, 8], "channels": 1},
        "ct": {"kind": "volume", "column": "ct_path", "size": [4, 4, 4], "orientation": None},
        "labs": {"kind": "tabular", "numeric": ["age"], "categorical": ["sex"]},
        "note": {"kind": "text", "column": "note", "max_tokens": 8},
        "vitals": {
            "kind": "series",
            "column": "vitals_path",
            "time_column": "t",
            "channels": ["hr", "sbp"],
        },
    }
    for name, override in modality_overrides.items():
        modalities[name] = {**modalities[name], **override}
    spec = parse_spec(
        {
            "manifest": "manifest.csv",
            "id_column": "sample_id",
            "group_column": "patient_id",
            "split": {"column": "split"},
            "targets": {"label": {"kind": "binary", "column": "label"}},
            "modalities": modalities,
        },
        base_dir=root,
    )
    return load_cohort(spec)


@pytest.fixture
def cohort(tmp_path):
    return make_cohort(tmp_path)


@pytest.fixture
def prep(cohort):
    return Preprocessor.fit(cohort)


def test_sample_and_batch_follow_the_contract(cohort, prep):
    train = CohortDataset(cohort, prep, "train")
    assert len(train) == 4
    sample = train[0]
    assert sample["id"] == "a" and sample["group"] == "pa"
    x = sample["inputs"]
    assert x["xray"]["pixels"].shape == (1, 1, 8, 8) and x["xray"]["pixels"].dtype == torch.float32
    assert x["xray"]["view_mask"].tolist() == [True]
    assert x["ct"]["voxels"].shape == (1, 4, 4, 4) and x["ct"]["voxels"].dtype == torch.float32
    assert x["ct"]["spacing"].tolist() == [1.5, 1.0, 2.0]
    assert (
        x["labs"]["numeric"].dtype == torch.float32
        and x["labs"]["categorical"].dtype == torch.int64
    )
    assert x["note"]["input_ids"].dtype == torch.int64
    assert x["note"]["input_ids"].shape[0] <= 8
    assert x["vitals"]["values"].shape == (5, 2) and x["vitals"]["observed"].dtype == torch.bool
    # The sbp column is blank at steps 2 and 4: unobserved, and 0 there.
    assert x["vitals"]["observed"][:, 1].tolist() == [True, False, True, False, True]
    assert x["vitals"]["values"][1, 1] == 0
    assert sample["targets"]["label"].dtype == torch.float32 and sample["targets"]["label"] == 1
    assert all(sample["available"].values())

    batch = collate_samples([train[i] for i in range(4)])
    assert batch["ids"] == ["a", "b", "c", "d"] and batch["groups"] == ["pa", "pb", "pc", "pd"]
    assert batch["inputs"]["xray"]["pixels"].shape == (4, 1, 1, 8, 8)
    assert batch["inputs"]["ct"]["spacing"].shape == (4, 3)
    assert batch["inputs"]["labs"]["numeric"].shape == (4, 1)
    assert batch["inputs"]["vitals"]["values"].shape == (4, 5, 2)
    assert batch["inputs"]["note"]["attention_mask"].dtype == torch.bool
    assert batch["targets"]["label"].tolist() == [1.0, 0.0, 1.0, 0.0]
    for flags in (*batch["available"].values(), batch["target_mask"]["label"]):
        assert flags.dtype == torch.bool and flags.shape == (4,)


def test_blank_cells_make_a_modality_unavailable(cohort, prep):
    train = CohortDataset(cohort, prep, "train")
    c, d = train[2], train[3]
    assert c["available"]["ct"] is False
    assert torch.equal(c["inputs"]["ct"]["voxels"], torch.zeros(1, 4, 4, 4))
    assert d["available"] == {
        "xray": False,
        "ct": True,
        "labs": True,
        "note": False,
        "vitals": False,
    }
    assert not d["inputs"]["note"]["attention_mask"].any()
    assert not d["inputs"]["vitals"]["step_mask"].any()
    assert train.issues == []  # a blank cell is missing data, not a problem


def test_missing_tabular_value_is_per_value(cohort, prep):
    train = CohortDataset(cohort, prep, "train")
    labs = train[2]["inputs"]["labs"]  # row c: age blank, sex F
    assert train[2]["available"]["labs"] is True
    assert labs["numeric_missing"].tolist() == [True] and labs["numeric"].tolist() == [0.0]
    assert labs["categorical"].tolist() == [2]  # F is the first vocabulary entry
    labs_d = train[3]["inputs"]["labs"]  # row d: age 52, sex blank
    assert labs_d["numeric_missing"].tolist() == [False] and labs_d["categorical"].tolist() == [0]
    # Row f: "unknown" in both columns is a missing marker: the whole tabular modality is absent.
    val = CohortDataset(cohort, prep, "val")
    assert val[1]["available"]["labs"] is False


def test_bad_file_under_skip_modality_is_unavailable_and_recorded(cohort, prep):
    val = CohortDataset(cohort, prep, "val")
    e = val[0]
    assert e["available"]["xray"] is False and e["available"]["ct"] is True
    assert len(val.issues) == 1
    issue = val.issues[0]
    assert (issue.row_id, issue.modality, issue.column) == ("e", "xray", "xray_path")
    assert "bad.png" in issue.reason and "not" in issue.reason
    val[0]  # a second epoch reports the same file once, not twice
    assert len(val.issues) == 1
    f = val[1]
    assert f["target_mask"]["label"] is False  # blank label: masked, not a problem


def test_bad_file_under_fail_names_row_and_column(cohort, prep):
    val = CohortDataset(cohort, prep, "val", on_error="fail")
    with pytest.raises(ReadError, match=r"row 'e', 'xray' \(column 'xray_path'\).*bad\.png"):
        val[0]


def test_unseen_category_and_label_value(cohort, prep):
    val = CohortDataset(cohort, prep, "val")
    assert val[0]["inputs"]["labs"]["categorical"].tolist() == [1]  # "X" only in val: unknown


def test_modalities_subset_marks_others_unavailable_without_reading(cohort, prep, monkeypatch):
    calls = []
    monkeypatch.setattr(readers, "read_volume", lambda *a: calls.append(a))
    only = CohortDataset(cohort, prep, "train", modalities=["xray", "labs"])
    sample = only[0]
    assert sample["available"] == {
        "xray": True,
        "ct": False,
        "labs": True,
        "note": False,
        "vitals": False,
    }
    assert calls == []
    with pytest.raises(PolymodalError, match=r"unknown modalities \['mri'\]"):
        CohortDataset(cohort, prep, "train", modalities=["mri"])


def test_volume_and_series_outside_the_root_are_skipped_like_unreadable_files(tmp_path):
    root = tmp_path / "cohort"
    root.mkdir()
    cohort = make_cohort(root)
    prep = Preprocessor.fit(cohort)
    for name in ("ct.nii.gz", "vitals.csv"):
        (tmp_path / name).write_bytes((root / ("a." + name.split(".", 1)[1])).read_bytes())
    cells = {**cohort.frame.iloc[0].to_dict(), "ct_path": "../ct.nii.gz"}
    cells["vitals_path"] = str(tmp_path / "vitals.csv")  # absolute, outside the root too
    issues: list = []
    sample = encode_row(prep, cells, row_id="a", resolve=cohort.resolve_path, issues=issues)
    assert sample["available"]["ct"] is False and sample["available"]["vitals"] is False
    assert sample["available"]["xray"] is True
    found = {(i.modality, i.column): i.reason for i in issues}
    assert found.keys() == {("ct", "ct_path"), ("vitals", "vitals_path")}
    assert all("outside the cohort root" in reason for reason in found.values())
    with pytest.raises(ReadError, match=r"row 'a', 'ct' \(column 'ct_path'\).*outside"):
        encode_row(prep, cells, row_id="a", resolve=cohort.resolve_path, on_error="fail")


def test_split_none_is_every_row(cohort, prep):
    assert [s["id"] for s in CohortDataset(cohort, prep, None)] == list("abcdef")


def test_augment_changes_only_available_image_views(tmp_path):
    cohort = make_cohort(tmp_path, xray={"augment": True, "normalize": "minmax"})
    prep = Preprocessor.fit(cohort)
    plain = CohortDataset(cohort, prep, "train")[0]["inputs"]["xray"]["pixels"]
    torch.manual_seed(0)
    augmented = CohortDataset(cohort, prep, "train", augment=True)
    draws = [augmented[0]["inputs"]["xray"]["pixels"] for _ in range(6)]
    assert all(d.shape == plain.shape for d in draws)
    assert any(not torch.allclose(d, plain) for d in draws)
    assert torch.equal(augmented[3]["inputs"]["xray"]["pixels"], torch.zeros(1, 1, 8, 8))


def test_encode_row_for_a_new_row(cohort, prep):
    sample = encode_row(
        prep, {"age": "50", "sex": "M", "note": "nodule"}, row_id="new", resolve=cohort.resolve_path
    )
    assert sample["available"] == {
        "xray": False,
        "ct": False,
        "labs": True,
        "note": True,
        "vitals": False,
    }
    assert sample["group"] == "new" and sample["target_mask"] == {"label": False}


def test_build_dataloaders_gives_padded_batches(cohort, prep):
    loaders = build_dataloaders(cohort, prep, batch_size=3)
    assert set(loaders) == {"train", "val"}
    batch = next(iter(loaders["val"]))
    assert batch["available"]["xray"].tolist() == [False, True]
    assert batch["inputs"]["note"]["input_ids"].shape[0] == 2
