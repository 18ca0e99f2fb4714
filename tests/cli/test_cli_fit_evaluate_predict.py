"""``polymodal fit`` → ``evaluate`` → ``predict`` on a tiny cohort, and bad input as a message."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from polymodal.cli import app, main
from training.conftest import TINY_MODEL, tiny_cohort, tiny_run

runner = CliRunner()
MODALITIES = ["lesion", "ct", "labs", "note", "vitals"]


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_cohort(tmp_path_factory.getbasetemp())


def run_main(monkeypatch: pytest.MonkeyPatch, capsys, *args: str) -> tuple[int, str]:
    """The real entry point with its error handling: (exit status, everything printed)."""
    monkeypatch.setattr(sys, "argv", ["polymodal", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err


def test_fit_then_evaluate_then_predict(spec_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    overrides = [arg for item in TINY_MODEL for arg in ("--set", item)]
    fitted = runner.invoke(
        app, ["fit", str(spec_path), "--out", str(out), "--epochs", "1", *overrides]
    )
    assert fitted.exit_code == 0, fitted.output
    model_dir = out / "model"
    assert "fitting synergy on polymodal-demo" in fitted.output
    assert "best val/label/auroc = " in fitted.output
    assert (model_dir / "model.safetensors").is_file()
    config = json.loads((model_dir / "config.json").read_text())
    assert config["train"]["max_epochs"] == 1 and config["model"]["dim"] == 16

    json_path, markdown_path = tmp_path / "eval" / "result.json", tmp_path / "eval" / "result.md"
    evaluated = runner.invoke(
        app,
        [
            "evaluate",
            str(model_dir),
            "--n-boot",
            "20",
            "--json",
            str(json_path),
            "--markdown",
            str(markdown_path),
        ],
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert f"wrote {json_path}" in evaluated.output.replace("\n", "")
    result = json.loads(json_path.read_text())
    assert result["settings"]["split"] == "test" and result["settings"]["n_boot"] == 20
    subsets = result["targets"]["label"]["subsets"]
    assert len(subsets) == 2 ** len(MODALITIES) - 1
    auroc = subsets[0]["metrics"]["auroc"]
    assert auroc["low"] <= auroc["point"] <= auroc["high"]
    markdown = markdown_path.read_text()
    assert all(f"| {' + '.join(s['modalities'])} |" in markdown for s in subsets)

    manifest = pd.read_csv(spec_path.parent / "manifest.csv", dtype=str, keep_default_na=False)
    new_rows = manifest.drop(columns=["label", "split"]).iloc[::-1]
    new_path = tmp_path / "new_patients.csv"
    new_rows.to_csv(new_path, index=False)
    predictions_path = tmp_path / "out" / "predictions.csv"
    # The rows name the training cohort's files: --root says where they are.
    args = ["predict", str(model_dir), str(new_path), "--root", str(spec_path.parent)]
    predicted = runner.invoke(app, [*args, "--out", str(predictions_path)])
    assert predicted.exit_code == 0, predicted.output
    assert f"{len(new_rows)} rows" in predicted.output
    table = pd.read_csv(predictions_path)
    assert table["sample_id"].tolist() == new_rows["sample_id"].tolist()
    assert [c for c in table.columns if c.startswith("available_")] == [
        f"available_{m}" for m in MODALITIES
    ]
    assert table["available_lesion"].tolist() == (new_rows["lesion_image"] != "").tolist()
    assert table["label_probability"].between(0, 1).all()
    assert table["label_probability"].notna().all()


def test_fit_with_a_spec_that_does_not_exist(monkeypatch, capsys, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "spec.yaml"
    status, output = run_main(
        monkeypatch, capsys, "fit", str(missing), "--out", str(tmp_path / "run")
    )
    assert status == 2
    assert "cohort spec not found" in output and "spec.yaml" in output
    assert "Traceback" not in output
    assert not (tmp_path / "run").exists()


def test_set_without_equals_sign(monkeypatch, capsys, spec_path: Path, tmp_path: Path) -> None:
    args = ["fit", str(spec_path), "--out", str(tmp_path / "run"), "--set", "train.lr"]
    status, output = run_main(monkeypatch, capsys, *args)
    assert status == 2
    assert "override 'train.lr': expected KEY=VALUE" in output
    assert "Traceback" not in output


def test_unknown_fusion_core_lists_the_known_ones(
    monkeypatch, capsys, spec_path: Path, tmp_path: Path
) -> None:
    args = ["fit", str(spec_path), "--out", str(tmp_path / "run"), "--set", "model.core=nope"]
    status, output = run_main(monkeypatch, capsys, *args)
    assert status == 2
    assert "unknown fusion core 'nope'; known fusion cores:" in output
    assert "synergy" in output and "concat" in output
    assert "Traceback" not in output


def test_predict_with_a_folder_that_is_not_a_model_folder(
    monkeypatch, capsys, spec_path: Path, tmp_path: Path
) -> None:
    status, output = run_main(
        monkeypatch,
        capsys,
        "predict",
        str(spec_path.parent),
        str(spec_path.parent / "manifest.csv"),
    )
    assert status == 2
    assert "not a polymodal model folder" in output and "model.safetensors is missing" in output
    assert "Traceback" not in output


def test_evaluate_with_an_unknown_split(
    monkeypatch, capsys, tmp_path_factory: pytest.TempPathFactory
) -> None:
    model_dir = tiny_run(tmp_path_factory.getbasetemp()) / "model"
    status, output = run_main(
        monkeypatch, capsys, "evaluate", str(model_dir), "--split", "nonsense"
    )
    assert status == 2
    assert "split must be one of train, val, test; got 'nonsense'" in output
    assert "Traceback" not in output
