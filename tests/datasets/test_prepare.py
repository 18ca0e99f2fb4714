"""Ready cohorts from public data: AdrenalMNIST3D and IU X-ray (real data where it is present)."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polymodal.data.manifest import load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.readers import read_volume
from polymodal.data.spec import load_spec
from polymodal.datasets.prepare import (
    IU_FINDINGS,
    IU_PROMPTS,
    prepare_adrenalmnist3d,
    prepare_iu_xray,
)
from polymodal.errors import PolymodalError, ReadError
from polymodal.training.fit import fit
from polymodal.training.run_config import load_run_config
from polymodal.validation.validate import validate_cohort


def _manifest(spec_path: Path) -> pd.DataFrame:
    return pd.read_csv(spec_path.parent / "manifest.csv", dtype=str, keep_default_na=False)


# --------------------------------------------------------------------------------------------
# AdrenalMNIST3D
# --------------------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_adrenalmnist3d_keeps_volumes_labels_and_official_split(
    shared_data: Path, tmp_path: Path
) -> None:
    source = shared_data / "adrenalmnist3d" / "adrenalmnist3d.npz"
    spec_path = prepare_adrenalmnist3d(source, tmp_path / "adrenal", limit=8)
    manifest = _manifest(spec_path)
    assert manifest["split"].value_counts().to_dict() == {"train": 8, "val": 8, "test": 8}
    with np.load(source) as archive:
        for split in ("train", "val", "test"):
            rows = manifest[manifest["split"] == split]
            expected = archive[f"{split}_labels"][:8, 0].astype(str)
            np.testing.assert_array_equal(rows["label"].to_numpy(), expected)
        first_test = archive["test_images"][0]
    volume = np.load(spec_path.parent / manifest.loc[manifest["split"] == "test", "volume"].iloc[0])
    np.testing.assert_array_equal(volume, first_test)
    assert set(np.unique(volume)) <= {0, 255}

    spec = load_spec(spec_path)
    assert spec.targets["hyperplasia"].kind == "binary"
    assert spec.targets["hyperplasia"].prompts[0] == "Does this adrenal gland show hyperplasia?"
    assert len(spec.targets["hyperplasia"].prompts) >= 2
    cfg = spec.modalities["adrenal"]
    assert cfg.kind == "volume" and cfg.default_spacing == [1.0, 1.0, 1.0]
    assert "no voxel spacing" in spec_path.read_text()
    # The polymodal volume reader maps the 0/255 mask to {0, 1} through the spec's window and
    # pads 28³ with background to 32³ (2 voxels a side), which every volume encoder divides.
    voxels, spacing = read_volume(spec_path.parent / manifest["volume"].iloc[0], cfg)
    assert voxels.shape == (1, 32, 32, 32) and spacing == (1.0, 1.0, 1.0)
    assert set(np.unique(voxels)) <= {0.0, 1.0}
    original = np.load(spec_path.parent / manifest["volume"].iloc[0])
    np.testing.assert_array_equal(voxels[0, 2:30, 2:30, 2:30], original / 255.0)
    assert voxels.sum() == (original > 0).sum()  # the padding ring is background


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "encoder",
    [
        pytest.param(
            "{name: volume_monai, options: {network_options: "
            "{init_features: 8, growth_rate: 4, block_config: [1, 1, 1, 1]}}}",
            id="volume_monai",
        ),
        pytest.param("{name: volume_multiscale, options: {depth: 0}}", id="volume_multiscale"),
    ],
)
def test_adrenalmnist3d_trains_with_the_volume_encoders(
    shared_data: Path, tmp_path: Path, encoder: str
) -> None:
    source = shared_data / "adrenalmnist3d" / "adrenalmnist3d.npz"
    spec = load_spec(prepare_adrenalmnist3d(source, tmp_path / "adrenal", limit=8))
    run = load_run_config(
        None,
        [
            "model.core=concat",
            "model.dim=16",
            f"model.encoders.adrenal={encoder}",
            "train.max_epochs=1",
            "train.batch_size=8",
            "train.cache=false",
            "train.early_stopping_patience=null",
        ],
    )
    result = fit(spec, tmp_path / "run", run, progress=False)
    assert (result.model_dir / "config.json").is_file() and result.epochs_run >= 0
    logged = pd.read_csv(tmp_path / "run" / "logs" / "metrics.csv")
    for column in ("train/loss", "val/loss"):
        losses = logged[column].dropna()
        assert len(losses) > 0 and np.isfinite(losses).all()


def test_adrenalmnist3d_bad_sources_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match="file not found; give the MedMNIST v2 archive"):
        prepare_adrenalmnist3d(tmp_path / "absent.npz", tmp_path / "out")
    not_npz = tmp_path / "junk.npz"
    not_npz.write_text("not an archive")
    with pytest.raises(ReadError, match=r"junk\.npz: not a readable \.npz archive"):
        prepare_adrenalmnist3d(not_npz, tmp_path / "out")
    wrong_keys = tmp_path / "other.npz"
    np.savez(wrong_keys, images=np.zeros((2, 4, 4, 4)))
    with pytest.raises(ReadError, match=r"arrays train_images, train_labels, .* are missing"):
        prepare_adrenalmnist3d(wrong_keys, tmp_path / "out")
    with pytest.raises(PolymodalError, match=r"limit must be at least 1 \(got 0\)"):
        prepare_adrenalmnist3d(wrong_keys, tmp_path / "out", limit=0)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------
# IU X-ray
# --------------------------------------------------------------------------------------------

_HEADER_CSV = (
    "imageid,Patient ID,Patient's Birth Date,Patient's Sex,Study Date,View Position,"
    "Body Part Examined,Modality\n"
    "CXR7_IM-1-1001,7,19600101,,20100101,PA,CHEST,CR\n"
    "CXR7_IM-1-2001,7,19600101,,20100101,LL,CHEST,CR\n"
)


def _report(number: int, major: list[str], findings: str) -> bytes:
    mesh = "".join(f"<major>{m}</major>" for m in major)
    return (
        f'<eCitation><uId id="CXR{number}"/><MedlineCitation><Article><Abstract>'
        '<AbstractText Label="INDICATION">Cough for two weeks.</AbstractText>'
        f'<AbstractText Label="FINDINGS">{findings}</AbstractText>'
        '<AbstractText Label="IMPRESSION">See findings.</AbstractText>'
        f"</Abstract></Article></MedlineCitation><MeSH>{mesh}</MeSH>"
        f'<parentImage id="CXR{number}_IM-1-1001"/><parentImage id="CXR{number}_IM-1-2001"/>'
        "</eCitation>"
    ).encode()


def _tiny_iu_source(folder: Path) -> Path:
    folder.mkdir()
    (folder / "nlmcxr_dicom_metadata.csv.gz").write_bytes(gzip.compress(_HEADER_CSV.encode()))
    reports = {
        7: _report(7, ["Cardiomegaly/mild"], "The heart is enlarged."),
        8: _report(8, ["normal"], "Clear lungs."),
        9: _report(9, ["No Indexing"], ""),
    }
    with tarfile.open(folder / "NLMCXR_reports.tgz", "w:gz") as archive:
        for number, content in reports.items():
            info = tarfile.TarInfo(f"ecgen-radiology/{number}.xml")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return folder


def test_iu_xray_rows_labels_and_header_columns(tmp_path: Path) -> None:
    spec_path = prepare_iu_xray(_tiny_iu_source(tmp_path / "src"), tmp_path / "iu")
    manifest = _manifest(spec_path).set_index("report_id")
    assert manifest["abnormal"].to_dict() == {"CXR7": "1", "CXR8": "0"}  # CXR9: no label
    cxr7 = manifest.loc["CXR7"]
    assert (cxr7["age"], cxr7["n_images"], cxr7["views"]) == ("50.0", "2", "PA+lateral")
    assert cxr7["indication"] == "Cough for two weeks."
    assert cxr7["findings"] == "The heart is enlarged."
    # A report whose images have no header rows keeps its counts but no header values.
    assert manifest.loc["CXR8", "age"] == "" and manifest.loc["CXR8", "n_images"] == "2"
    assert "sex" not in manifest.columns  # the header table records none


@pytest.mark.shared_data
def test_iu_xray_on_the_real_reports(shared_data: Path, tmp_path: Path) -> None:
    spec_path = prepare_iu_xray(shared_data / "iu_xray", tmp_path / "iu", limit=40, seed=1)
    manifest = _manifest(spec_path)
    # Of the first 40 reports one (CXR39) is indexed "No Indexing" and is left out.
    assert len(manifest) == 39 and "CXR39" not in set(manifest["report_id"])
    assert manifest["report_id"].is_unique
    normal = manifest["mesh_major"] == "normal"
    assert (manifest.loc[normal, "abnormal"] == "0").all()
    assert (manifest.loc[~normal, "abnormal"] == "1").all() and normal.any() and (~normal).any()
    first = manifest.set_index("report_id").loc["CXR1"]
    assert first["indication"] == "Positive TB test" and first["abnormal"] == "0"
    ages = pd.to_numeric(manifest["age"].replace("", np.nan))
    assert ages.dropna().between(10, 100).all() and ages.notna().mean() > 0.8

    spec = load_spec(spec_path)
    assert {name: m.kind for name, m in spec.modalities.items()} == {
        "indication": "text",
        "findings": "text",
        "header": "tabular",
    }
    assert {"impression", "mesh_major", "mesh_automatic"} <= set(spec.exclude_columns)
    assert "Label leakage" in spec_path.read_text()
    cohort = load_cohort(spec)  # the seeded, grouped recipe assigns every report a split
    assert set(cohort.split) == {"train", "val", "test"}


def test_iu_xray_bad_sources_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match="folder not found; give the folder that holds"):
        prepare_iu_xray(tmp_path / "absent", tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReadError, match=r"nlmcxr_dicom_metadata\.csv\.gz: file not found"):
        prepare_iu_xray(empty, tmp_path / "out")
    source = _tiny_iu_source(tmp_path / "src")
    (source / "NLMCXR_reports.tgz").write_bytes(b"not gzip")
    with pytest.raises(ReadError, match=r"NLMCXR_reports\.tgz: not a readable \.tgz archive"):
        prepare_iu_xray(source, tmp_path / "out")
    (source / "nlmcxr_dicom_metadata.csv.gz").write_bytes(
        gzip.compress(b"imageid,Study Date\nx,20100101\n")
    )
    with pytest.raises(ReadError, match="not the IU X-ray DICOM header table: columns Patient ID"):
        prepare_iu_xray(source, tmp_path / "out")


# --------------------------------------------------------------------------------------------
# IU X-ray multitask
# --------------------------------------------------------------------------------------------


def test_iu_xray_multitask_labels_come_from_the_mesh_headings(tmp_path: Path) -> None:
    spec_path = prepare_iu_xray(_tiny_iu_source(tmp_path / "src"), tmp_path / "iu", multitask=True)
    manifest = _manifest(spec_path).set_index("report_id")
    flags = manifest[["abnormal", *IU_FINDINGS]]
    # "Cardiomegaly/mild" sets cardiomegaly only; a normal report is 0 everywhere.
    assert flags.loc["CXR7"].to_dict() == {
        "abnormal": "1",
        "cardiomegaly": "1",
        "opacity": "0",
        "atelectasis": "0",
        "calcified_granuloma": "0",
    }
    assert (flags.loc["CXR8"] == "0").all()
    spec = load_spec(spec_path)
    assert spec.name == "iu-xray-multitask"
    assert list(spec.targets) == ["abnormal", *IU_FINDINGS]
    for name, target in spec.targets.items():
        assert target.kind == "binary" and target.prompts == IU_PROMPTS[name]
        assert len(target.prompts) >= 3
    # Only what is known before the image is read; the sections that give the answer are out.
    assert set(spec.modalities) == {"indication", "header"}
    assert {"findings", "impression", "mesh_major", "mesh_automatic"} <= set(spec.exclude_columns)
    assert "exclude_columns" in spec_path.read_text() and "--multitask" in spec_path.read_text()
    # The single-task spec of the same folder keeps its layout, with prompts for `abnormal`.
    single = load_spec(prepare_iu_xray(tmp_path / "src", tmp_path / "iu"))
    assert list(single.targets) == ["abnormal"] and set(single.modalities) == {
        "indication",
        "findings",
        "header",
    }
    assert single.targets["abnormal"].prompts == IU_PROMPTS["abnormal"]


@pytest.mark.shared_data
def test_iu_xray_multitask_spec_validates_on_the_real_reports(
    shared_data: Path, tmp_path: Path
) -> None:
    spec_path = prepare_iu_xray(shared_data / "iu_xray", tmp_path / "iu", limit=600, multitask=True)
    manifest = _manifest(spec_path)
    for name, heading in IU_FINDINGS.items():
        expected = manifest["mesh_major"].map(
            lambda terms, heading=heading: any(
                t.split("/")[0].strip().lower() == heading.lower() for t in terms.split("; ")
            )
        )
        assert (manifest[name] == "1").tolist() == expected.tolist(), name
        assert 10 <= expected.sum() < len(manifest) / 4, name
    # A finding is abnormal; a normal report has none.
    findings = manifest[list(IU_FINDINGS)] == "1"
    assert (manifest.loc[findings.any(axis=1), "abnormal"] == "1").all()

    spec = load_spec(spec_path)
    cohort = load_cohort(spec)
    report = validate_cohort(cohort)
    assert report.training_possible, report.blocking
    # The columns that give a label away (the MeSH terms) are flagged and all excluded.
    assert report.leakage_columns and set(report.leakage_columns) <= set(spec.exclude_columns)
    for name in ("abnormal", *IU_FINDINGS):
        counts = report.label_counts[name]["train"]
        assert counts.get("1", 0) > 5 and counts.get("0", 0) > 5, (name, counts)
    prep = Preprocessor.fit(cohort)
    assert prep.target_info("cardiomegaly")["prompts"] == IU_PROMPTS["cardiomegaly"]
