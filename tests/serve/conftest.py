"""A tiny model (1 epoch on the shared 100-row demo cohort) served by the app under test.

Trained once per test process; the cohort folder is the allowed folder and its manifest the
examples. Tests treat both as read-only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("fastapi", reason="serving needs the 'serve' extra (pip install '.[serve]')")
pytest.importorskip("multipart", reason="uploads need python-multipart (the 'serve' extra)")

from fastapi import FastAPI
from fastapi.testclient import TestClient

from polymodal.data.spec import load_spec
from polymodal.predictor import Predictor
from polymodal.serve.app import create_app
from polymodal.training.fit import fit
from training.conftest import tiny_cohort, tiny_config


@pytest.fixture(scope="session")
def cohort_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo cohort folder (manifest.csv, images/, volumes/, series/)."""
    return tiny_cohort(tmp_path_factory.getbasetemp()).parent


@pytest.fixture(scope="session")
def model_dir(cohort_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.getbasetemp() / "serve_run"
    if not (out / "model" / "config.json").is_file():
        spec = load_spec(cohort_dir / "spec.yaml")
        fit(spec, out, tiny_config("train.max_epochs=1"), progress=False)
    return out / "model"


@pytest.fixture(scope="session")
def predictor(model_dir: Path) -> Predictor:
    return Predictor.load(model_dir, batch_size=8)


@pytest.fixture(scope="session")
def manifest(cohort_dir: Path) -> pd.DataFrame:
    """The cohort's manifest as strings (blank = missing)."""
    return pd.read_csv(cohort_dir / "manifest.csv", dtype=str, keep_default_na=False)


def make_app(predictor: Predictor, cohort_dir: Path, **options) -> FastAPI:
    """The app over ``predictor`` with the cohort as allowed folder and examples."""
    options.setdefault("allow_dir", cohort_dir)
    options.setdefault("examples", cohort_dir / "manifest.csv")
    return create_app(predictor, **options)


@pytest.fixture
def client(predictor: Predictor, cohort_dir: Path) -> Iterator[TestClient]:
    with TestClient(make_app(predictor, cohort_dir)) as test_client:
        yield test_client
