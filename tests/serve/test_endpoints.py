"""GET /health, /model (what `polymodal inspect` shows, plus the inputs), /examples and /."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from polymodal.model_inventory import model_inventory


def test_health(client: TestClient) -> None:
    answer = client.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "device": "cpu", "queued": 0}


def test_model_is_the_inventory_and_the_inputs_a_patient_may_carry(
    client: TestClient, model_dir: Path
) -> None:
    card = client.get("/model").json()
    inventory = model_inventory(model_dir)
    assert card["modalities"] == inventory["modalities"]
    assert card["targets"] == inventory["targets"] and card["checksums"] == "verified"
    assert card["folder"] == "model"  # the name only: no path of the server's disk
    inputs = card["inputs"]["modalities"]
    assert inputs["lesion"] == {
        "kind": "image",
        "fields": [],
        "numeric": [],
        "files": ["lesion_image"],
    }
    assert inputs["labs"]["numeric"] == ["age", "crp", "sodium", "hemoglobin", "bmi"]
    assert inputs["note"]["fields"] == ["note"] and inputs["vitals"]["files"] == ["vitals_series"]


def test_examples_are_manifest_rows_that_predict_as_sent(client: TestClient) -> None:
    examples = client.get("/examples").json()
    assert len(examples) == 20 and examples[0]["id"] == "S00000"
    answer = client.post("/predict", json={"patients": examples})
    assert answer.status_code == 200, answer.text
    assert [p["id"] for p in answer.json()["predictions"]] == [e["id"] for e in examples]


def test_the_page_is_html_with_its_script(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<form id="patient-form"' in page.text and "polymodal-demo" in page.text
    script = client.get("/static/page.js")
    assert script.status_code == 200 and 'fetch("predict"' in script.text
