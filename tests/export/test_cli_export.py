"""``polymodal export``: writes a graph and its description, refuses a core it cannot export."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from export.conftest import Cohort, save_tiny_model, tiny_model
from polymodal.cli import app, main

pytest.importorskip("onnxscript", reason="onnxscript (the ONNX exporter's) is not installed")

runner = CliRunner()


def run_main(monkeypatch: pytest.MonkeyPatch, capsys, *args: str) -> tuple[int, str]:
    """Run the command line as a user does (errors become a message and an exit status)."""
    monkeypatch.setattr(sys, "argv", ["polymodal", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err


def test_export_writes_the_graph_and_a_json_naming_its_inputs(
    cohort: Cohort, tmp_path: Path
) -> None:
    folder = save_tiny_model(tiny_model(cohort, "synergy", ["labs", "vitals"]), tmp_path / "model")
    result = runner.invoke(app, ["export", str(folder), "--format", "onnx", "--opset", "18"])
    assert result.exit_code == 0, result.output
    graph, described = tmp_path / "model.onnx", tmp_path / "model.json"
    assert graph.is_file() and described.is_file()
    meta = json.loads(described.read_text())
    assert meta["core"] == "synergy" and meta["opset"] == 18 and meta["file"] == "model.onnx"
    inputs = {i["name"]: i for i in meta["inputs"]}
    assert inputs["labs.available"] == {
        "name": "labs.available",
        "modality": "labs",
        "field": "available",
        "dtype": "bool",
        "shape": ["batch"],
        "meaning": inputs["labs.available"]["meaning"],
    }
    assert inputs["vitals.values"]["shape"] == ["batch", "vitals_length", 3]
    assert inputs["vitals.values"]["max_length"] == 64
    assert inputs["labs.categorical"]["dtype"] == "int64"
    assert [o["name"] for o in meta["outputs"]] == ["label.logits", "label.probability"]
    assert meta["modalities"]["labs"]["availability_input"] == "labs.available"
    assert meta["targets"]["label"]["classes"] == ["0", "1"]

    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    assert meta["check"]["onnxruntime_max_abs_difference"] <= 1e-4
    session = onnxruntime.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(inputs)
    # A patient with nothing at all: every availability False, any values of the right shape.
    feeds = {
        i["name"]: np.zeros(
            [3 if d == "batch" else 7 if isinstance(d, str) else d for d in i["shape"]],
            dtype=i["dtype"],
        )
        for i in meta["inputs"]
    }
    logits, probability = session.run(None, feeds)
    assert logits.shape == (3,) and np.allclose(probability, 1 / (1 + np.exp(-logits)))


def test_export_to_a_chosen_path(cohort: Cohort, tmp_path: Path) -> None:
    folder = save_tiny_model(tiny_model(cohort, "concat", ["labs"]), tmp_path / "model")
    out = tmp_path / "graphs" / "labs_only.onnx"
    result = runner.invoke(app, ["export", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and (tmp_path / "graphs" / "labs_only.json").is_file()
    assert "labs_only.onnx" in result.output


def test_export_refuses_the_intervention_core_with_the_reason(
    cohort: Cohort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    folder = save_tiny_model(
        tiny_model(cohort, "intervention", ["lesion", "labs"]), tmp_path / "model"
    )
    status, output = run_main(monkeypatch, capsys, "export", str(folder))
    assert status == 2
    assert "the fusion core 'intervention' cannot be exported" in output
    assert "branches on the data" in output
    assert "Traceback" not in output
    assert not (tmp_path / "model.onnx").exists()


def test_export_refuses_an_unknown_format(
    cohort: Cohort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    folder = save_tiny_model(tiny_model(cohort, "concat", ["labs"]), tmp_path / "model")
    status, output = run_main(monkeypatch, capsys, "export", str(folder), "--format", "tflite")
    assert status == 2 and "unknown format 'tflite'; formats: onnx" in output
