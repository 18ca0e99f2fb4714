"""POST /predict gives what `Predictor.predict_manifest` gives, for one patient, a batch, any
subset of modalities, uploads, and with the leave-one-out matrix and the explanation."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from polymodal.predictor import Predictor

FILES = {"lesion": "lesion_image", "ct": "ct_volume", "vitals": "vitals_series"}
LABS = ["age", "crp", "sodium", "hemoglobin", "bmi", "sex", "smoking", "site"]


def _patient(row: pd.Series, modalities: set[str]) -> dict:
    """The request JSON of a manifest row, keeping only ``modalities``."""
    fields = {c: row[c] for c in LABS if "labs" in modalities and row[c] != ""}
    if "note" in modalities and row["note"]:
        fields["note"] = row["note"]
    files = {c: row[c] for m, c in FILES.items() if m in modalities and row[c]}
    return {"id": row["sample_id"], "fields": fields, "files": files}


def _direct(predictor: Predictor, patients: list[dict], cohort_dir: Path, tmp: Path) -> list:
    """The Predictor's probabilities for the same rows, from a manifest file."""
    columns = ["sample_id", *LABS, "note", *FILES.values()]
    rows = [{"sample_id": p["id"], **p["fields"], **p["files"]} for p in patients]
    frame = pd.DataFrame(rows, columns=columns).fillna("")
    frame.to_csv(tmp / "rows.csv", index=False)
    table = predictor.predict_manifest(tmp / "rows.csv", root=cohort_dir)
    return table["label_probability"].tolist()


def _present(row: pd.Series) -> set[str]:
    present = {m for m, c in FILES.items() if row[c]}
    present |= {"labs"} if any(row[c] for c in LABS) else set()
    return present | ({"note"} if row["note"] else set())


def test_one_patient_gets_the_predictors_probability_and_its_modalities(
    client: TestClient,
    predictor: Predictor,
    manifest: pd.DataFrame,
    cohort_dir: Path,
    tmp_path: Path,
) -> None:
    row = manifest.iloc[1]
    patient = _patient(row, _present(row))
    answer = client.post("/predict", json={"patient": patient})
    assert answer.status_code == 200, answer.text
    [prediction] = answer.json()["predictions"]
    assert prediction["id"] == row["sample_id"]
    assert set(prediction["modalities_used"]) == _present(row)
    assert set(prediction["modalities_missing"]) == set(predictor.modalities) - _present(row)
    [expected] = _direct(predictor, [patient], cohort_dir, tmp_path)
    assert prediction["predictions"]["label"]["label_probability"] == pytest.approx(expected)


def test_a_batch_keeps_order_and_ids_even_when_ids_repeat(
    client: TestClient,
    predictor: Predictor,
    manifest: pd.DataFrame,
    cohort_dir: Path,
    tmp_path: Path,
) -> None:
    patients = [_patient(manifest.iloc[i], _present(manifest.iloc[i])) for i in (4, 0, 7)]
    patients[2]["id"] = patients[0]["id"]  # a client's ids need not be unique
    answer = client.post("/predict", json={"patients": patients})
    assert answer.status_code == 200, answer.text
    got = answer.json()["predictions"]
    assert [p["id"] for p in got] == [p["id"] for p in patients]
    expected = _direct(predictor, [patients[0], patients[1]], cohort_dir, tmp_path)
    probabilities = [p["predictions"]["label"]["label_probability"] for p in got]
    assert probabilities[:2] == pytest.approx(expected)
    assert probabilities[0] != pytest.approx(probabilities[2])  # other data, same id


def test_missing_modalities_are_missing_and_a_patient_without_data_gets_no_prediction(
    client: TestClient, manifest: pd.DataFrame
) -> None:
    row = manifest.iloc[2]
    labs_only = _patient(row, {"labs"})
    nothing = {"id": "empty"}
    answer = client.post("/predict", json={"patients": [labs_only, nothing]}).json()
    labs, empty = answer["predictions"]
    assert labs["modalities_used"] == ["labs"]
    assert 0.0 <= labs["predictions"]["label"]["label_probability"] <= 1.0
    assert empty["modalities_used"] == [] and "no data" in empty["note"]
    assert empty["predictions"]["label"]["label_probability"] is None
    assert any("'empty'" in w for w in answer["warnings"])


def test_an_uploaded_image_counts_as_the_image_modality(
    client: TestClient,
    predictor: Predictor,
    manifest: pd.DataFrame,
    cohort_dir: Path,
    tmp_path: Path,
) -> None:
    row = manifest[manifest["lesion_image"] != ""].iloc[0]
    by_path = _patient(row, {"lesion", "labs"})
    upload = {**by_path, "files": {}}
    image = (cohort_dir / row["lesion_image"]).read_bytes()
    answer = client.post(
        "/predict",
        data={"request": json.dumps({"patient": upload})},
        files={"lesion_image": ("picture.png", image, "image/png")},
    )
    assert answer.status_code == 200, answer.text
    [prediction] = answer.json()["predictions"]
    assert prediction["modalities_used"] == ["lesion", "labs"]
    [expected] = _direct(predictor, [by_path], cohort_dir, tmp_path)
    assert prediction["predictions"]["label"]["label_probability"] == pytest.approx(expected)


def test_leave_one_out_predicts_without_each_present_modality(
    client: TestClient,
    predictor: Predictor,
    manifest: pd.DataFrame,
    cohort_dir: Path,
    tmp_path: Path,
) -> None:
    row = manifest.iloc[1]
    present = _present(row)
    answer = client.post(
        "/predict", json={"patient": _patient(row, present), "leave_one_out": True}
    ).json()
    without = answer["predictions"][0]["without"]
    assert set(without) == present
    for modality in present:
        expected = _direct(predictor, [_patient(row, present - {modality})], cohort_dir, tmp_path)
        assert without[modality]["label"]["label_probability"] == pytest.approx(expected[0])
    alone = client.post(
        "/predict", json={"patient": _patient(row, {"labs"}), "leave_one_out": True}
    ).json()
    assert alone["predictions"][0]["without"] == {"labs": None}  # nothing left to predict from


def test_explain_lists_the_top_elements_and_an_image_overlay(
    client: TestClient, manifest: pd.DataFrame
) -> None:
    row = manifest[(manifest["lesion_image"] != "") & (manifest["note"] != "")].iloc[0]
    patient = _patient(row, {"lesion", "labs", "note"})
    answer = client.post("/predict", json={"patient": patient, "explain": True, "top": 5})
    assert answer.status_code == 200, answer.text
    explanation = answer.json()["predictions"][0]["explanation"]
    assert explanation["task"] == "label" and len(explanation["elements"]) == 5
    effects = [abs(e["effect"]) for e in explanation["elements"]]
    assert effects == sorted(effects, reverse=True)
    assert {e["modality"] for e in explanation["elements"]} <= {"lesion", "labs", "note"}
    [overlay] = explanation["overlays"]
    assert overlay["modality"] == "lesion"
    png = base64.b64decode(overlay["png"].removeprefix("data:image/png;base64,"))
    assert png.startswith(b"\x89PNG")
