"""Bad requests get a 4xx naming the field: 422 (schema, columns, values), 403 (a path outside
the allowed folder, never opened), 413 (an upload over the limit), 415 (another body)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from polymodal.predictor import Predictor
from serve.conftest import make_app


def _detail(answer) -> dict:
    [detail] = answer.json()["detail"]
    return detail


@pytest.mark.parametrize(
    ("body", "loc", "words"),
    [
        (
            {"patient": {"fields": {"age": "old"}}},
            ["body", "patient", "fields", "age"],
            "not a number",
        ),
        (
            {"patients": [{}, {"fields": {"agee": 3}}]},
            ["body", "patients", 1, "fields", "agee"],
            "no column 'agee'",
        ),
        (
            {"patient": {"fields": {"lesion_image": "x.png"}}},
            ["body", "patient", "fields", "lesion_image"],
            "under 'files'",
        ),
        (
            {"patient": {"files": {"age": "x"}}},
            ["body", "patient", "files", "age"],
            "under 'fields'",
        ),
        ({"patient": {"colour": "red"}}, ["body", "patient", "colour"], "Extra inputs"),
        ({"patients": []}, ["body", "patients"], "at least 1"),
        ({"patient": {}, "patients": [{}]}, ["body"], "either 'patient'"),
        ({"patient": {}, "explain": True, "task": "nope"}, ["body", "task"], "unknown task 'nope'"),
        ({"patient": {}, "top": 0}, ["body", "top"], "greater than or equal to 1"),
    ],
)
def test_422_names_the_field(client: TestClient, body: dict, loc: list, words: str) -> None:
    answer = client.post("/predict", json=body)
    assert answer.status_code == 422, answer.text
    detail = _detail(answer)
    assert detail["loc"] == loc and words in detail["msg"]


def test_a_body_that_is_not_json_is_422_and_another_type_415(client: TestClient) -> None:
    answer = client.post(
        "/predict", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422 and "not valid JSON" in _detail(answer)["msg"]
    answer = client.post("/predict", content=b"age=3", headers={"content-type": "text/plain"})
    assert answer.status_code == 415 and _detail(answer)["loc"] == ["header", "content-type"]


def test_an_upload_for_a_column_the_model_does_not_read_is_422(client: TestClient) -> None:
    answer = client.post(
        "/predict",
        data={"request": json.dumps({"patient": {}})},
        files={"xray": ("x.png", b"\x89PNG", "image/png")},
    )
    assert answer.status_code == 422 and _detail(answer)["loc"] == ["body", "0/xray"]


def test_403_for_any_path_that_leads_out_of_the_allowed_folder(
    predictor: Predictor, cohort_dir: Path, tmp_path: Path
) -> None:
    allowed = tmp_path / "allowed"
    (allowed / "images").mkdir(parents=True)
    secret = tmp_path / "secret.png"
    secret.write_bytes((cohort_dir / "images" / "S00001.png").read_bytes())
    os.symlink(secret, allowed / "images" / "link.png")  # inside by name, outside in fact
    with TestClient(make_app(predictor, cohort_dir, allow_dir=allowed, examples=None)) as client:
        for path in ("../secret.png", str(secret), "images/link.png", "~/x.png"):
            answer = client.post("/predict", json={"patient": {"files": {"lesion_image": path}}})
            assert answer.status_code == 403, (path, answer.text)
            detail = _detail(answer)
            assert detail["loc"] == ["body", "patient", "files", "lesion_image"]
            assert repr(path) in detail["msg"] and "outside the allowed folder" in detail["msg"]


def test_403_for_paths_when_no_folder_is_allowed(predictor: Predictor, cohort_dir: Path) -> None:
    app = make_app(predictor, cohort_dir, allow_dir=None, examples=None)
    with TestClient(app) as client:
        answer = client.post(
            "/predict", json={"patient": {"files": {"lesion_image": "images/S00001.png"}}}
        )
    assert answer.status_code == 403 and "--allow-dir" in _detail(answer)["msg"]


def test_413_for_an_upload_over_the_limit_and_nothing_is_kept(
    predictor: Predictor, cohort_dir: Path
) -> None:
    app = make_app(predictor, cohort_dir, max_upload_mb=0.01)  # 10 KiB
    work = app.state.service.work_root
    with TestClient(app) as client:
        small = client.post(
            "/predict",
            data={"request": json.dumps({"patient": {}})},
            files={"lesion_image": ("a.png", (cohort_dir / "images/S00001.png").read_bytes())},
        )
        assert small.status_code == 200, small.text
        answer = client.post(
            "/predict",
            data={"request": json.dumps({"patient": {}})},
            files={"lesion_image": ("big.png", b"\0" * 20_000, "image/png")},
        )
        assert answer.status_code == 413
        assert "upload limit of 0.01 MB" in _detail(answer)["msg"]
        # Sent in chunks, without a declared length: counted as it arrives.
        chunks = (b"\0" * 4096 for _ in range(5))
        answer = client.post(
            "/predict", content=chunks, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 413
        assert [p for p in work.rglob("*") if p.is_file()] == []


def test_a_file_that_cannot_be_read_is_422_naming_it_not_a_silent_missing_modality(
    client: TestClient, cohort_dir: Path
) -> None:
    answer = client.post(
        "/predict",
        data={"request": json.dumps({"patient": {"fields": {"age": 50}}})},
        files={"vitals_series": ("vitals.csv", b"when,hr\n0,80\n", "text/csv")},
    )
    assert answer.status_code == 422
    detail = _detail(answer)
    assert detail["loc"] == ["body", "0/vitals_series"]
    assert detail["msg"].startswith("'vitals.csv': column 'time'")
    assert str(cohort_dir) not in detail["msg"] and "polymodal-serve" not in detail["msg"]
    # A file named by path gets the same check.
    answer = client.post(
        "/predict", json={"patient": {"files": {"lesion_image": "series/S00001.csv"}}}
    )
    assert answer.status_code == 422 and "not an image" in _detail(answer)["msg"]
