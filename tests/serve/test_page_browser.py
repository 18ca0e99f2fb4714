"""The page in a real browser: headless Chromium (Debian's chromium + chromium-driver, driven
by Selenium) picks the example patient or uploads files, and the prediction is read off the
page. Skips, saying why, where no browser is installed."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from polymodal.predictor import Predictor
from serve.conftest import make_app

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (dev extra)"
)
uvicorn = pytest.importorskip("uvicorn", reason="uvicorn is not installed (serve extra)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    BROWSER is None or DRIVER is None,
    reason="no headless browser: install Debian's chromium and chromium-driver "
    "(apt-get install chromium chromium-driver; .ci/run does)",
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(predictor: Predictor, cohort_dir: Path) -> Iterator[str]:
    """The app on a free loopback port (uvicorn in a thread); yields its base URL."""
    port = _free_port()
    config = uvicorn.Config(
        make_app(predictor, cohort_dir), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1200,1800",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(
        service=webdriver.ChromeService(executable_path=DRIVER), options=options
    )
    yield driver
    driver.quit()


def _open(browser, url: str) -> WebDriverWait:
    browser.get(url)
    wait = WebDriverWait(browser, 60)
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    return wait


def _predict(browser, wait: WebDriverWait) -> str:
    """Press Predict and return the probability shown on the page."""
    browser.find_element(By.ID, "predict").click()
    wait.until(
        expected_conditions.text_to_be_present_in_element((By.ID, "status"), "Prediction for")
    )
    return browser.find_element(By.CSS_SELECTOR, "td[data-column='label_probability']").text


def _api_probability(predictor: Predictor, cohort_dir: Path, patient: dict) -> float:
    with TestClient(make_app(predictor, cohort_dir)) as client:
        answer = client.post("/predict", json={"patient": patient}).json()
    return answer["predictions"][0]["predictions"]["label"]["label_probability"]


def test_the_example_patient_is_predicted_on_the_page(
    browser, served: str, predictor: Predictor, cohort_dir: Path
) -> None:
    wait = _open(browser, served)
    Select(browser.find_element(By.ID, "example")).select_by_index(1)
    browser.find_element(By.ID, "load-example").click()
    shown = _predict(browser, wait)
    with TestClient(make_app(predictor, cohort_dir)) as client:
        example = client.get("/examples").json()[1]
    assert float(shown) == pytest.approx(_api_probability(predictor, cohort_dir, example), abs=5e-4)
    page = browser.find_element(By.ID, "result").text
    assert "Present: lesion, labs, note, vitals" in page and "Missing: ct" in page
    left_out = browser.find_elements(By.CSS_SELECTOR, "table.without tbody tr")
    assert [r.find_element(By.TAG_NAME, "td").text for r in left_out] == [
        "nothing",
        "lesion",
        "labs",
        "note",
        "vitals",
    ]
    assert browser.find_elements(By.CSS_SELECTOR, "table.elements tbody tr")
    overlay = browser.find_element(By.CSS_SELECTOR, ".explanation figure img")
    assert overlay.get_attribute("src").startswith("data:image/png;base64,")
    assert browser.execute_script("return arguments[0].naturalWidth", overlay) > 0


def test_uploaded_files_and_typed_fields_are_predicted_on_the_page(
    browser, served: str, predictor: Predictor, cohort_dir: Path, manifest: pd.DataFrame
) -> None:
    row = manifest[(manifest["lesion_image"] != "") & (manifest["vitals_series"] != "")].iloc[0]
    wait = _open(browser, served)
    browser.find_element(By.ID, "patient-id").send_keys("upload-1")
    browser.find_element(By.ID, "field-age").send_keys(row["age"])
    browser.find_element(By.ID, "field-lesion_image").send_keys(
        str(cohort_dir / row["lesion_image"])
    )
    browser.find_element(By.ID, "field-vitals_series").send_keys(
        str(cohort_dir / row["vitals_series"])
    )
    browser.find_element(By.ID, "explain").click()  # off: prediction and matrix only
    shown = _predict(browser, wait)
    patient = {
        "fields": {"age": row["age"]},
        "files": {"lesion_image": row["lesion_image"], "vitals_series": row["vitals_series"]},
    }
    assert float(shown) == pytest.approx(_api_probability(predictor, cohort_dir, patient), abs=5e-4)
    page = browser.find_element(By.ID, "result").text
    assert "Present: lesion, labs, vitals" in page and "Prediction for patient upload-1" in (
        browser.find_element(By.ID, "status").text
    )
    assert not browser.find_elements(By.CSS_SELECTOR, ".explanation")


def test_an_error_is_shown_with_the_field_it_names(browser, served: str) -> None:
    wait = _open(browser, served)
    browser.find_element(By.ID, "field-age").send_keys("sixty")
    browser.find_element(By.ID, "predict").click()
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "Error"))
    status = browser.find_element(By.ID, "status").text
    assert "body.patient.fields.age" in status and "'sixty' is not a number" in status
