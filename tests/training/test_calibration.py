"""Recalibration (``calibration:``): the fits lower the validation NLL, the model folder keeps
them under its checksums, and the predictor applies them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from polymodal.calibration.recalibration import CALIBRATION, Recalibration, fit_target
from polymodal.checksums import write_checksums
from polymodal.data.manifest import load_cohort
from polymodal.errors import ModelError, PolymodalError, SpecError
from polymodal.predictor import Predictor
from polymodal.training.plugins import PLUGINS, Exported, FitContext
from polymodal.training.plugins.calibration import _recalibrate

from .tabular_cohort import calibrated_run, tabular_config

RNG = np.random.default_rng(0)


def overconfident(n: int, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits ×4 of a model whose own logits are calibrated: (true logits, ×4, labels)."""
    true = torch.from_numpy(RNG.normal(size=(n, k)) * 1.5)
    labels = torch.multinomial(true.softmax(-1), 1).squeeze(1)
    return true, true * 4, labels


def test_temperature_scaling_lowers_the_nll_and_keeps_the_predicted_class() -> None:
    _, logits, labels = overconfident(4000, 3)
    fitted, record = fit_target("grade", "multiclass", "temperature", logits, labels)
    assert record["nll_after"] < record["nll_before"] - 0.2
    assert 3.2 < fitted.parameters["temperature"] < 4.8  # the ×4 it undoes
    assert torch.equal(fitted.apply(logits).argmax(-1), logits.argmax(-1))


@pytest.mark.parametrize("method", ["platt", "isotonic", "temperature"])
def test_binary_recalibration_lowers_the_nll_of_an_overconfident_model(method: str) -> None:
    true = torch.from_numpy(RNG.normal(size=3000) * 1.5)
    labels = torch.bernoulli(torch.sigmoid(true))
    fitted, record = fit_target("outcome", "binary", method, true * 4, labels)
    assert record["nll_after"] < record["nll_before"] - 0.1
    json.dumps(record, allow_nan=False)  # numbers only: the folder file holds no pickle
    calibrated = torch.sigmoid(fitted.apply(true * 4))
    assert torch.all(torch.diff(calibrated[torch.argsort(true)]) >= -1e-9)  # order kept
    if method == "platt":
        assert 0.15 < fitted.parameters["slope"] < 0.35  # about 1/4


def test_one_class_in_validation_is_refused_for_platt_and_isotonic() -> None:
    with pytest.raises(PolymodalError, match="needs both outcomes"):
        fit_target("outcome", "binary", "platt", torch.randn(10), torch.ones(10))


def test_a_method_no_target_takes_is_refused_before_training() -> None:
    context = FitContext(None, None, None, None, {"grade": {"kind": "multiclass"}})
    config = PLUGINS.get("calibration").config(method="platt")
    with pytest.raises(SpecError, match="grade: a multiclass target takes temperature, not platt"):
        PLUGINS.get("calibration").build(config, context)


def test_other_kinds_are_skipped_with_a_note(tmp_path_factory: pytest.TempPathFactory) -> None:
    record = json.loads(
        (calibrated_run(tmp_path_factory.getbasetemp()) / "model" / CALIBRATION).read_text()
    )
    assert set(record["targets"]) == {"grade", "outcome"}
    assert "regression target takes no recalibration" in record["skipped"]["value"]
    for entry in record["targets"].values():
        assert entry["nll_after"] <= entry["nll_before"] + 1e-9


def scaled_heads(folder: Path, factor: float) -> None:
    """Make a model folder over-confident: its heads' weights and biases × factor."""
    weights = load_file(folder / "model.safetensors")
    for name in [n for n in weights if n.startswith("heads.")]:
        weights[name] = weights[name] * factor
    save_file(weights, str(folder / "model.safetensors"))
    (folder / CALIBRATION).unlink(missing_ok=True)
    (folder / "conformal.json").unlink(missing_ok=True)
    write_checksums(folder)


def test_an_overconfident_model_is_cooled_and_the_predictor_applies_it(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(calibrated_run(tmp_path_factory.getbasetemp()) / "model", folder)
    scaled_heads(folder, 25.0)
    raw = Predictor.load(folder)
    assert raw.recalibration is None  # a folder without calibration.json loads as before
    cohort = load_cohort(raw.loaded.spec)
    _recalibrate(Exported(folder, cohort, None), "temperature", ["grade", "outcome"], {})

    record = json.loads((folder / CALIBRATION).read_text())
    assert CALIBRATION in json.loads((folder / "checksums.json").read_text())["files"]
    for target in ("grade", "outcome"):
        assert record["targets"][target]["parameters"]["temperature"] > 1.5
        assert record["targets"][target]["nll_after"] < record["targets"][target]["nll_before"]
    calibrated = Predictor.load(folder)
    assert isinstance(calibrated.recalibration, Recalibration)
    uncalibrated, _ = Predictor.load(folder, calibrated=False).collect(cohort, logits=True)
    applied, _ = calibrated.collect(cohort)
    temperature = record["targets"]["grade"]["parameters"]["temperature"]
    expected = torch.from_numpy(uncalibrated.predictions("grade")["logits"] / temperature)
    np.testing.assert_allclose(
        applied.predictions("grade")["probabilities"], expected.softmax(-1).numpy(), atol=1e-6
    )
    table = calibrated.predict_cohort(cohort)
    np.testing.assert_allclose(
        table["grade_probability_a"], applied.predictions("grade")["probabilities"][:, 0]
    )


def test_a_calibration_file_outside_the_checksums_is_refused(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(calibrated_run(tmp_path_factory.getbasetemp()) / "model", folder)
    record = json.loads((folder / CALIBRATION).read_text())
    record["targets"]["grade"]["parameters"]["temperature"] = 1e-3
    (folder / CALIBRATION).write_text(json.dumps(record))
    with pytest.raises(ModelError, match=CALIBRATION):
        Predictor.load(folder)


def test_method_none_adds_nothing() -> None:
    run = tabular_config("calibration.method=none")
    context = FitContext(None, None, None, None, {"grade": {"kind": "multiclass"}})
    parts = PLUGINS.get("calibration").build(run.calibration, context)
    assert not parts.after_export
