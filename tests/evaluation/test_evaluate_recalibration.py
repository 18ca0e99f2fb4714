"""Scoring a recalibrated model folder before and after its recalibration: ``evaluate`` says
which probabilities it scored, and ``polymodal evaluate --uncalibrated`` scores the model's own
(the "before" of a reliability comparison)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from polymodal.cli import app
from polymodal.data.manifest import load_cohort
from polymodal.evaluation.compare import compare_predictions
from polymodal.evaluation.evaluate import evaluate_model
from polymodal.evaluation.kept_predictions import read_predictions
from polymodal.predictor import Predictor
from training.tabular_cohort import calibrated_run

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return calibrated_run(tmp_path_factory.getbasetemp()) / "model"


def _score(model_dir: Path, calibrated: bool, predictions: Path | None = None):
    predictor = Predictor.load(model_dir, calibrated=calibrated)
    cohort = load_cohort(predictor.loaded.spec)
    return evaluate_model(
        predictor,
        cohort,
        split="test",
        subsets=False,
        n_boot=20,
        progress=False,
        predictions_path=predictions,
    )


def test_the_settings_say_whether_the_folders_recalibration_was_applied(model_dir) -> None:
    applied, raw = _score(model_dir, True), _score(model_dir, False)
    # Temperature takes the class-valued targets; the regression target passes through.
    assert applied.settings["recalibration"] == {"grade": "temperature", "outcome": "temperature"}
    assert applied.settings["conformal_coverage"] == 0.8
    assert raw.settings["recalibration"] is None and raw.settings["conformal_coverage"] is None
    before = raw.targets["outcome"].subsets[0].metrics
    after = applied.targets["outcome"].subsets[0].metrics
    assert after["auroc"].point == pytest.approx(before["auroc"].point)  # the order is kept
    assert after["brier"].point != pytest.approx(before["brier"].point, abs=1e-9)
    assert "coverage" in after and "coverage" not in before


def test_evaluate_uncalibrated_scores_the_models_own_probabilities(
    model_dir, tmp_path: Path
) -> None:
    args = ["evaluate", str(model_dir), "--n-boot", "5", "--no-subsets"]
    settings = {}
    for flag in ("--calibrated", "--uncalibrated"):
        out = tmp_path / f"{flag.strip('-')}.json"
        scored = runner.invoke(app, [*args, flag, "--json", str(out)])
        assert scored.exit_code == 0, scored.output
        settings[flag] = json.loads(out.read_text())["settings"]
    assert settings["--calibrated"]["recalibration"]["grade"] == "temperature"
    assert settings["--uncalibrated"]["recalibration"] is None


def test_a_comparison_before_and_after_names_which_probabilities_each_side_holds(
    model_dir, tmp_path: Path
) -> None:
    kept = {}
    for name, calibrated in (("after", True), ("before", False)):
        _score(model_dir, calibrated, tmp_path / f"{name}.predictions.parquet")
        kept[name] = read_predictions(tmp_path / f"{name}.predictions.parquet")
    comparison = compare_predictions(kept, n_boot=20, metrics=["auroc"])
    assert comparison.models["after"]["recalibration"]["outcome"] == "temperature"
    assert comparison.models["before"]["recalibration"] is None
    outcome = next(r for r in comparison.rows if r.target == "outcome")
    assert outcome.difference == pytest.approx(0.0, abs=1e-12)  # temperature keeps the order
