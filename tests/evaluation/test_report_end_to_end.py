"""fit → evaluate → report on the shared tiny run: evaluate records the model's provenance and
the labels' no-skill levels, and the report shows them with the run's training curves and the
clinical figures of its kept predictions."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from polymodal.cli import app
from training.conftest import tiny_run

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory.getbasetemp())


def test_evaluate_then_report_shows_provenance_training_curves_and_figures(
    run: Path, tmp_path: Path
) -> None:
    result_path = tmp_path / "tiny" / "eval.json"
    args = ["evaluate", str(run / "model"), "--n-boot", "5", "--no-subsets"]
    evaluated = runner.invoke(app, [*args, "--json", str(result_path)])
    assert evaluated.exit_code == 0, evaluated.output
    settings = json.loads(result_path.read_text())["settings"]
    provenance = settings["provenance"]
    config = json.loads((run / "model" / "config.json").read_text())
    assert provenance["core"] == config["model"]["core"]
    assert provenance["training_cohort"] == settings["cohort"]  # trained and tested on one spec
    saved, now = (
        datetime.fromisoformat(provenance["saved_at"]),
        datetime.fromisoformat(settings["evaluated_at"]),
    )
    assert saved <= now  # the model folder was written before it was evaluated
    for target, labels in settings["labels"].items():
        assert labels["n_labelled"] > 0, target
        if "prevalence" in labels["summary"]:  # a binary target: Brier's no-skill is p(1 − p)
            p = labels["summary"]["prevalence"]
            assert labels["no_skill"]["brier"] == pytest.approx(p * (1 - p))

    out = tmp_path / "report"
    reported = runner.invoke(app, ["report", str(result_path), "--out", str(out)])
    assert reported.exit_code == 0, reported.output
    page = (out / "report.html").read_text(encoding="utf-8")
    assert f"<td>{config['model']['core']}</td>" in page
    assert settings["evaluated_at"] in page and "prevalence" in page
    assert (out / "training_curves.png").is_file() and "Training curves" in page
    assert any(p.name.startswith("roc_pr_") for p in out.glob("*.png"))
    assert "One model: there is nothing to compare." in page
