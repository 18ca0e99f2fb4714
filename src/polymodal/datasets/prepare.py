"""Turn public datasets into ready cohorts (manifest + spec), and guard the folders written into.

* :func:`prepare_adrenalmnist3d`: MedMNIST v2 AdrenalMNIST3D ``.npz`` → one ``.npy`` per volume,
  ``manifest.csv`` with the official split, ``spec.yaml`` (volume, binary).
* :func:`prepare_iu_xray`: IU X-ray (Open-i) XML reports + DICOM header table →
  ``manifest.csv`` one row per report (text and tabular columns), ``spec.yaml`` (text + tabular,
  binary ``abnormal``, grouped seeded split recipe); with ``multitask``, five prompted binary
  tasks (``abnormal`` and frequent MeSH findings) from the indication and header table only.

Every command that writes a cohort folder leaves a marker file in it, so that running it again
may replace its own output while a folder holding anything else is refused without ``force``.
"""

from __future__ import annotations

import json
import re
import shutil
import tarfile
import xml.etree.ElementTree as ET
import zipfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from polymodal.data.spec import parse_spec
from polymodal.errors import PolymodalError, ReadError

MARKER = "polymodal_cohort.json"
Progress = Callable[[str], None] | None


# --------------------------------------------------------------------------------------------
# Output folders
# --------------------------------------------------------------------------------------------


def read_marker(folder: Path) -> dict | None:
    """The marker a cohort writer left in ``folder`` (``{"kind", "settings"}``), or None."""
    try:
        marker = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def write_marker(folder: Path, kind: str, settings: dict) -> None:
    """Record which writer made ``folder`` and with which settings."""
    text = json.dumps({"kind": kind, "settings": settings}, indent=2, sort_keys=True)
    (Path(folder) / MARKER).write_text(text + "\n")


def prepare_output_dir(
    out: Path, kind: str, *, force: bool = False, generated: Iterable[str] = ()
) -> None:
    """Create ``out`` or make sure it may be written into.

    A non-empty folder is accepted when a previous run of the same ``kind`` wrote it (its
    ``generated`` subfolders are then removed, so a smaller run leaves no stale files), or when
    ``force`` (then nothing is removed; files of the same name are overwritten).

    Raises:
        PolymodalError: ``out`` is a file, or a non-empty folder of something else without force.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PolymodalError(f"{out}: exists and is not a folder; give a folder path for OUT")
    if out.is_dir() and any(out.iterdir()):
        marker = read_marker(out)
        ours = marker is not None and marker.get("kind") == kind
        if not ours and not force:
            raise PolymodalError(
                f"{out}: the folder is not empty and was not written by a previous "
                f"'{kind}' run; choose a new or empty folder, or pass --force to write into it"
            )
        if ours:
            for name in generated:
                shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise PolymodalError(f"limit must be at least 1 (got {limit}); leave it out to keep all")


def write_spec(out: Path, spec: dict, header: str) -> Path:
    """Validate ``spec`` and write it to ``out/spec.yaml`` below a comment ``header``."""
    parse_spec(spec, base_dir=out, source=f"{spec.get('name', 'cohort')} spec")
    path = out / "spec.yaml"
    path.write_text(header + yaml.safe_dump(spec, sort_keys=False))
    return path


# --------------------------------------------------------------------------------------------
# AdrenalMNIST3D
# --------------------------------------------------------------------------------------------

_MEDMNIST_SPLITS = ("train", "val", "test")
_ADRENAL_PAD_TO = 16
ADRENAL_PROMPTS = (
    "Does this adrenal gland show hyperplasia?",
    "Is there adrenal hyperplasia?",
    "Classify this adrenal gland as normal or hyperplastic.",
)

_ADRENAL_HEADER = """\
# AdrenalMNIST3D (MedMNIST v2: Yang et al., Sci Data 10:41, 2023; CC BY 4.0), written by
# `polymodal prepare adrenalmnist3d`. Task: normal (0) vs adrenal hyperplasia (1), ~22 % positive.
# The volumes are binary shape masks (0 or 255) of the gland, not CT intensities: the window
# [0, 255] maps them to {0, 1}.
# MedMNIST gives no voxel spacing (the crops were resized to a fixed grid): 1 mm is assumed
# (default_spacing) and nothing is resampled, so any mm here is nominal.
# `size` zero-pads each volume to a multiple of 16 voxels per axis (28 -> 32; 64 stays), which
# the volume encoders need: volume_patch (patch 8), volume_monai (DenseNet downsampling) and
# volume_multiscale (its default 32^3 scale; a 64^3 archive needs a {size: [64, 64, 64], patch:
# [16, 16, 16]} scale). The padding is background (0), as in the masks themselves.
# The split column is MedMNIST's official train/val/test. MedMNIST gives no patient ids, so each
# volume is its own group (the official split is taken as patient-disjoint as published).
"""


def _load_medmnist(src: Path) -> dict[str, np.ndarray]:
    if not src.is_file():
        raise ReadError(
            "file not found; give the MedMNIST v2 archive adrenalmnist3d.npz (or _64.npz)", src
        )
    try:
        with np.load(src, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise ReadError(f"not a readable .npz archive: {err}", src) from None
    wanted = [f"{split}_{part}" for split in _MEDMNIST_SPLITS for part in ("images", "labels")]
    absent = [key for key in wanted if key not in arrays]
    if absent:
        raise ReadError(
            f"not a MedMNIST 3D archive: arrays {', '.join(absent)} are missing "
            f"(present: {', '.join(arrays) or 'none'}); give adrenalmnist3d.npz from MedMNIST v2",
            src,
        )
    for split in _MEDMNIST_SPLITS:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 4 or len(images) != len(labels):
            raise ReadError(
                f"{split}_images should be (N, D, H, W) with one label each; got shape "
                f"{images.shape} and {len(labels)} labels",
                src,
            )
    return arrays


def prepare_adrenalmnist3d(
    src_npz: Path | str,
    out: Path | str,
    *,
    limit: int | None = None,
    force: bool = False,
    progress: Progress = None,
) -> Path:
    """Write AdrenalMNIST3D as a cohort: ``volumes/<split>_<index>.npy`` (uint8 ``(D, H, W)``),
    ``manifest.csv`` (``sample_id, volume, split, label``) and ``spec.yaml``.

    Args:
        src_npz: ``adrenalmnist3d.npz`` (28³) or ``adrenalmnist3d_64.npz`` (64³).
        out: output folder.
        limit: keep at most this many volumes of each official split (for quick tests).
        force: write into a non-empty folder that is not a previous output of this command.
        progress: called with a short message now and then.

    Returns:
        The path of the written ``spec.yaml``.

    Raises:
        ReadError: the source is missing, unreadable or not a MedMNIST 3D archive.
    """
    src, out = Path(src_npz), Path(out)
    say = progress or (lambda message: None)
    _check_limit(limit)
    arrays = _load_medmnist(src)
    prepare_output_dir(out, "adrenalmnist3d", force=force, generated=("volumes",))
    (out / "volumes").mkdir(exist_ok=True)
    rows = []
    for split in _MEDMNIST_SPLITS:
        images = arrays[f"{split}_images"][:limit]  # (N, D, H, W)
        labels = arrays[f"{split}_labels"].reshape(len(arrays[f"{split}_labels"]), -1)[:limit, 0]
        for index, (volume, label) in enumerate(zip(images, labels, strict=True)):
            sample_id = f"{split}_{index:04d}"
            np.save(out / "volumes" / f"{sample_id}.npy", np.ascontiguousarray(volume))
            rows.append((sample_id, f"volumes/{sample_id}.npy", split, int(label)))
        say(f"{split}: wrote {len(images)} volumes")
    manifest = pd.DataFrame(rows, columns=["sample_id", "volume", "split", "label"])
    manifest.to_csv(out / "manifest.csv", index=False, lineterminator="\n")
    # Padded to a multiple of 16 voxels: every volume encoder's patches and pooling divide it.
    side = -(-max(arrays["train_images"].shape[1:]) // _ADRENAL_PAD_TO) * _ADRENAL_PAD_TO
    spec = {
        "name": "adrenalmnist3d",
        "manifest": "manifest.csv",
        "id_column": "sample_id",
        "split": {"column": "split"},
        "targets": {
            "hyperplasia": {
                "kind": "binary",
                "column": "label",
                "positive": "1",
                "negative": "0",
                "prompts": list(ADRENAL_PROMPTS),
            }
        },
        "modalities": {
            "adrenal": {
                "kind": "volume",
                "column": "volume",
                "window": [0.0, 255.0],
                "size": [side, side, side],
                "default_spacing": [1.0, 1.0, 1.0],
            }
        },
    }
    spec_path = write_spec(out, spec, _ADRENAL_HEADER)
    write_marker(out, "adrenalmnist3d", {"source": src.name, "limit": limit})
    say(f"wrote {len(manifest)} volumes; spec: {spec_path}")
    return spec_path


# --------------------------------------------------------------------------------------------
# IU X-ray (Open-i) reports
# --------------------------------------------------------------------------------------------

IU_REPORTS = "NLMCXR_reports.tgz"
IU_HEADERS = "nlmcxr_dicom_metadata.csv.gz"
_HEADER_COLUMNS = {
    "imageid": "imageid",
    "Patient ID": "patient",
    "Patient's Birth Date": "birth",
    "Patient's Sex": "sex",
    "Study Date": "study",
    "View Position": "view",
    "Body Part Examined": "body_part",
    "Modality": "acquisition",
}
_SECTIONS = ("comparison", "indication", "findings", "impression")

_IU_HEADER = """\
# IU X-ray (Open-i) reports (Demner-Fushman et al., JAMIA 23(2):304, 2016; CC BY-NC-ND 4.0),
# written by `polymodal prepare iu-xray`. One row per report; no images (the archive has none).
# Task `abnormal`: 1 when the report's MeSH major terms are anything but exactly "normal",
# 0 when they are exactly "normal"; reports indexed "No Indexing" (no label) are left out.
# Label leakage: the MeSH terms are indexed from the impression and findings, so `impression`,
# `mesh_major` and `mesh_automatic` restate the label and are excluded. The text is split in
# two modalities: `indication` (why the study was ordered, written before the image was read:
# no leakage) and `findings` (the radiologist's description of the image: it names the
# abnormality, so any model given it has a near-trivial task; use it to exercise the text path,
# not to claim fusion gains, and drop it for an honest "predict from the request" task).
# Tabular `header` comes from the DICOM header table: age at the study, number of images,
# recorded view positions, acquisition (CR/DX) and body part; "Patient's Sex" is empty for every
# image in the table, so there is no sex column (the indication text sometimes says it).
# Words the source redacted stay redacted (a run of four capital X).
# Each report has its own header "Patient ID" (it equals the report number), so the grouped
# split is effectively per report; the split is a seeded recipe stratified on `abnormal`.
"""

# Multitask targets (--multitask): a MeSH major heading (the part before the first "/", e.g.
# "Opacity/lung/base/left") that is frequent enough to learn, as one binary task each.
IU_FINDINGS = {
    "cardiomegaly": "Cardiomegaly",
    "opacity": "Opacity",
    "atelectasis": "Pulmonary Atelectasis",
    "calcified_granuloma": "Calcified Granuloma",
}
IU_PROMPTS = {
    "abnormal": [
        "Is there any abnormality on this chest X-ray?",
        "Is this chest radiograph abnormal?",
        "Will the report of this chest X-ray describe an abnormal finding?",
    ],
    "cardiomegaly": [
        "Is the heart enlarged?",
        "Does this chest X-ray show cardiomegaly?",
        "Is there cardiomegaly?",
    ],
    "opacity": [
        "Is there a lung opacity?",
        "Does this chest X-ray show an opacity?",
        "Is any pulmonary opacity present?",
    ],
    "atelectasis": [
        "Is there atelectasis?",
        "Does this chest X-ray show pulmonary atelectasis?",
        "Is part of the lung collapsed?",
    ],
    "calcified_granuloma": [
        "Is there a calcified granuloma?",
        "Does this chest X-ray show a calcified granuloma?",
        "Is a calcified granuloma present?",
    ],
}

_IU_MULTITASK_HEADER = """\
# IU X-ray (Open-i) reports (Demner-Fushman et al., JAMIA 23(2):304, 2016; CC BY-NC-ND 4.0),
# written by `polymodal prepare iu-xray --multitask`. One row per labelled report; no images.
# Five binary tasks, each with its prompts (the first is the canonical one): `abnormal` (MeSH
# major terms anything but exactly "normal") and one per frequent MeSH major heading:
# cardiomegaly (Cardiomegaly), opacity (Opacity), atelectasis (Pulmonary Atelectasis),
# calcified_granuloma (Calcified Granuloma); 1 when a major term starts with the heading.
# Inputs are what is known before the image is read: the `indication` text and the DICOM
# `header` table. The findings and impression restate the labels (the MeSH terms are indexed
# from them), so they and the MeSH columns are in exclude_columns: no input gives the answer.
# Each report is its own group ("Patient ID" equals the report number); the split is a seeded
# recipe stratified on `abnormal`.
"""


def _report_number(name: str) -> int:
    match = re.search(r"(\d+)\.xml$", name)
    return int(match.group(1)) if match else -1


def _parse_report(root: ET.Element) -> dict:
    sections = {s: "" for s in _SECTIONS}
    for node in root.iter("AbstractText"):
        label = (node.get("Label") or "").lower()
        if label in sections:
            sections[label] = " ".join((node.text or "").split())
    major = [" ".join(m.text.split()) for m in root.findall("MeSH/major") if m.text]
    automatic = [" ".join(m.text.split()) for m in root.findall("MeSH/automatic") if m.text]
    # "No Indexing" (or no MeSH at all) means nobody labelled the report: no label, not normal.
    unlabelled = not major or major == ["No Indexing"]
    abnormal = "" if unlabelled else ("0" if major == ["normal"] else "1")
    headings = {term.split("/")[0].strip().lower() for term in major}
    findings = {
        name: "" if unlabelled else str(int(heading.lower() in headings))
        for name, heading in IU_FINDINGS.items()
    }
    uid = root.find("uId")
    return {
        "report_id": uid.get("id", "") if uid is not None else "",
        **sections,
        "mesh_major": "; ".join(major),
        "mesh_automatic": "; ".join(automatic),
        "image_ids": ";".join(p.get("id", "") for p in root.findall("parentImage")),
        "abnormal": abnormal,
        **findings,
    }


def _read_reports(path: Path, limit: int | None, say: Callable[[str], None]) -> pd.DataFrame:
    if not path.is_file():
        raise ReadError(
            f"file not found; SRC_DIR must hold {IU_REPORTS} and {IU_HEADERS} (IU X-ray, Open-i)",
            path,
        )
    try:
        with tarfile.open(path, "r:gz") as archive:
            members = [m for m in archive.getmembers() if m.isfile() and m.name.endswith(".xml")]
            members.sort(key=lambda m: _report_number(m.name))
            reports = []
            for member in members[:limit]:
                handle = archive.extractfile(member)
                try:
                    root = ET.parse(handle).getroot()
                except ET.ParseError as err:
                    raise ReadError(
                        f"{member.name} inside the archive is not valid XML: {err}", path
                    ) from None
                reports.append(_parse_report(root))
                if len(reports) % 1000 == 0:
                    say(f"parsed {len(reports)} reports")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise ReadError(f"not a readable .tgz archive: {err}", path) from None
    if not reports:
        raise ReadError("the archive holds no XML reports", path)
    return pd.DataFrame(reports)


def _read_headers(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ReadError(
            f"file not found; SRC_DIR must hold {IU_REPORTS} and {IU_HEADERS} (IU X-ray, Open-i)",
            path,
        )
    try:
        header = pd.read_csv(path, dtype=str, keep_default_na=False, nrows=0)
        absent = [c for c in _HEADER_COLUMNS if c not in header.columns]
        if absent:
            raise ReadError(
                f"not the IU X-ray DICOM header table: columns {', '.join(absent)} are missing",
                path,
            )
        table = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=list(_HEADER_COLUMNS))
    except (
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
        UnicodeDecodeError,
        OSError,
        EOFError,
        zlib.error,
    ) as err:
        raise ReadError(f"not a readable CSV table: {err}", path) from None
    table = table.rename(columns=_HEADER_COLUMNS)
    birth = pd.to_datetime(table["birth"], format="%Y%m%d", errors="coerce")
    study = pd.to_datetime(table["study"], format="%Y%m%d", errors="coerce")
    table["age"] = (study - birth).dt.days / 365.25
    return table.set_index("imageid")


def _view_group(view: str) -> str:
    if view in ("PA", "AP"):
        return view
    return "lateral" if "L" in view else "unrecorded"


def _header_features(reports: pd.DataFrame, headers: pd.DataFrame) -> pd.DataFrame:
    """Per report: age, image count, views, acquisition, body part (and sex where recorded)."""
    rows = []
    for report in reports.itertuples(index=False):
        image_ids = [i for i in report.image_ids.split(";") if i]
        found = headers.loc[headers.index.intersection(image_ids)]
        age = found["age"].dropna()
        views = sorted({_view_group(v.strip().upper()) for v in found["view"]})
        known = [v for v in found["body_part"] if v.strip()]
        rows.append(
            {
                # The header's Patient ID is the report number; reports without headers use it.
                "patient_id": next(
                    (p.strip() for p in found["patient"] if p.strip()),
                    report.report_id.removeprefix("CXR"),
                ),
                "age": f"{age.mean():.1f}" if len(age) else "",
                "n_images": str(len(image_ids)),
                "views": "+".join(views),
                "acquisition": "/".join(sorted({a for a in found["acquisition"] if a.strip()})),
                "body_part": max(set(known), key=known.count) if known else "",
                "sex": next((s.strip() for s in found["sex"] if s.strip()), ""),
            }
        )
    return pd.DataFrame(rows)


def prepare_iu_xray(
    src_dir: Path | str,
    out: Path | str,
    *,
    limit: int | None = None,
    seed: int = 0,
    multitask: bool = False,
    force: bool = False,
    progress: Progress = None,
) -> Path:
    """Write the IU X-ray reports as a cohort: ``manifest.csv`` and ``spec.yaml``.

    Reports without a label (MeSH "No Indexing") are left out. Manifest columns:
    ``report_id, patient_id, abnormal``, one 0/1 column per :data:`IU_FINDINGS` task (``1`` when
    a MeSH major term starts with its heading), the report sections (``comparison,
    indication, findings, impression``), ``mesh_major, mesh_automatic, image_ids`` and the
    header-table columns ``age, n_images, views, acquisition, body_part`` (and ``sex`` when the
    table records it). See the spec's comments for the label-leakage choice.

    Args:
        src_dir: folder holding ``NLMCXR_reports.tgz`` and ``nlmcxr_dicom_metadata.csv.gz``.
        out: output folder.
        limit: keep only the first ``limit`` reports (by report number; for quick tests).
        seed: seed of the split recipe written into the spec.
        multitask: write the multitask spec (``abnormal`` and the :data:`IU_FINDINGS` tasks, each
            with :data:`IU_PROMPTS`; inputs ``indication`` and ``header`` only) instead of the
            single-task one (``abnormal`` from ``indication``, ``findings`` and ``header``).
        force: write into a non-empty folder that is not a previous output of this command.
        progress: called with a short message now and then.

    Returns:
        The path of the written ``spec.yaml``.

    Raises:
        ReadError: a source file is missing, unreadable or not what IU X-ray ships.
    """
    src, out = Path(src_dir), Path(out)
    say = progress or (lambda message: None)
    _check_limit(limit)
    if not src.is_dir():
        raise ReadError(
            f"folder not found; give the folder that holds {IU_REPORTS} and {IU_HEADERS}", src
        )
    headers = _read_headers(src / IU_HEADERS)
    say(f"read {len(headers)} image headers")
    reports = _read_reports(src / IU_REPORTS, limit, say)
    say(f"parsed {len(reports)} reports")
    features = _header_features(reports, headers)
    has_sex = bool((features["sex"] != "").any())
    if not has_sex:
        features = features.drop(columns="sex")
    manifest = pd.concat([reports, features], axis=1)
    first = ["report_id", "patient_id", "abnormal"]
    manifest = manifest[first + [c for c in manifest.columns if c not in first]]
    # Reports nobody indexed have no label for the only task: they would be dead rows.
    unlabelled = manifest["abnormal"] == ""
    manifest = manifest[~unlabelled].reset_index(drop=True)
    say(f"left out {int(unlabelled.sum())} reports without a label (MeSH 'No Indexing')")
    prepare_output_dir(out, "iu-xray", force=force)
    manifest.to_csv(out / "manifest.csv", index=False, lineterminator="\n")
    categorical = ["views", "acquisition", "body_part"] + (["sex"] if has_sex else [])
    header = {"kind": "tabular", "numeric": ["age", "n_images"], "categorical": categorical}
    spec = _iu_spec(header, seed, multitask=multitask)
    spec_path = write_spec(out, spec, _IU_MULTITASK_HEADER if multitask else _IU_HEADER)
    write_marker(out, "iu-xray", {"limit": limit, "seed": seed, "multitask": multitask})
    n_abnormal = int((manifest["abnormal"] == "1").sum())
    say(f"wrote {len(manifest)} reports ({n_abnormal} abnormal); spec: {spec_path}")
    return spec_path


def _iu_spec(header: dict, seed: int, *, multitask: bool) -> dict:
    """The single-task spec (``abnormal`` from indication, findings and header) or the multitask
    one (``abnormal`` and :data:`IU_FINDINGS`, from the request alone: indication and header)."""
    tasks = ("abnormal", *IU_FINDINGS) if multitask else ("abnormal",)
    modalities: dict[str, dict] = {
        "indication": {"kind": "text", "column": "indication", "max_tokens": 64}
    }
    if not multitask:
        # The findings name the abnormality: a modality of its own, so it is easy to drop.
        modalities["findings"] = {"kind": "text", "column": "findings", "max_tokens": 128}
    modalities["header"] = header
    return {
        "name": "iu-xray-multitask" if multitask else "iu-xray",
        "manifest": "manifest.csv",
        "id_column": "report_id",
        "group_column": "patient_id",
        "split": {"recipe": {"train": 0.7, "val": 0.15, "test": 0.15, "seed": seed}},
        "targets": {
            name: {
                "kind": "binary",
                "column": name,
                "positive": "1",
                "negative": "0",
                "prompts": list(IU_PROMPTS[name]),
            }
            for name in tasks
        },
        "modalities": modalities,
        "exclude_columns": [
            *(["findings"] if multitask else []),
            "impression",
            "mesh_major",
            "mesh_automatic",
        ],
    }
