"""Split-conformal prediction (``conformal:``): sets and intervals reach their coverage on
exchangeable data, the predictor adds them, and ``evaluate`` reports the coverage with a CI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from polymodal.calibration.conformal import CONFORMAL, ConformalConfig, calibrate
from polymodal.data.manifest import load_cohort
from polymodal.evaluation.evaluate import evaluate_model
from polymodal.predictor import Predictor
from training.tabular_cohort import calibrated_run

MULTICLASS = {"kind": "multiclass", "classes": ["a", "b", "c", "d"]}


def exchangeable_classes(n: int, rng: np.random.Generator):
    """Probabilities ``(n, 4)`` and labels drawn from them: a perfectly calibrated model."""
    probabilities = rng.dirichlet(np.full(4, 0.7), size=n)
    cumulative = probabilities.cumsum(axis=1)
    labels = np.minimum((rng.random((n, 1)) > cumulative).sum(axis=1), 3)
    return {"probabilities": probabilities}, labels


@pytest.mark.parametrize("score", ["lac", "aps"])
def test_prediction_sets_reach_their_coverage_on_exchangeable_data(score: str) -> None:
    rng = np.random.default_rng(1)
    config = ConformalConfig(coverage=0.9, score=score)
    outputs, labels = exchangeable_classes(2000, rng)
    fitted, record = calibrate("grade", MULTICLASS, outputs, labels, config)
    assert record["n_calibration"] == 2000 and record["threshold"] is not None
    test_outputs, test_labels = exchangeable_classes(20000, rng)
    covered, size = fitted.hits(MULTICLASS, test_outputs, test_labels)
    assert abs(covered.mean() - 0.9) < 0.02
    assert 1.0 < size.mean() < 4.0  # informative: not every class every time


def test_intervals_reach_their_coverage_on_exchangeable_data() -> None:
    rng = np.random.default_rng(2)
    info = {"kind": "regression"}
    config = ConformalConfig(coverage=0.8)

    def draw(n: int):
        predicted = rng.normal(size=n)
        return {"value": predicted}, predicted + rng.standard_t(4, size=n)

    fitted, _ = calibrate("value", info, *draw(2000), config)
    covered, width = fitted.hits(info, *draw(20000))
    assert abs(covered.mean() - 0.8) < 0.02
    assert np.allclose(width, 2 * fitted.threshold)


def test_too_few_calibration_rows_give_full_sets_and_say_so() -> None:
    outputs, labels = exchangeable_classes(5, np.random.default_rng(3))
    fitted, record = calibrate("grade", MULTICLASS, outputs, labels, ConformalConfig())
    assert fitted.threshold is None and "at least 9" in record["note"]
    covered, size = fitted.hits(MULTICLASS, outputs, labels)
    assert covered.all() and (size == 4).all()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory):
    return calibrated_run(tmp_path_factory.getbasetemp()) / "model"


def test_the_predictor_adds_sets_and_intervals(model_dir) -> None:
    record = json.loads((model_dir / CONFORMAL).read_text())
    assert record["coverage"] == 0.8 and set(record["targets"]) == {"grade", "outcome", "value"}
    predictor = Predictor.load(model_dir)
    table = predictor.predict_cohort(load_cohort(predictor.loaded.spec), split="test")
    threshold = record["targets"]["grade"]["threshold"]
    members = [
        {c for c in "abc" if 1 - row[f"grade_probability_{c}"] <= threshold}
        for _, row in table.iterrows()
    ]
    assert [set(s.split("|")) - {""} for s in table["grade_set"]] == members
    assert list(table["grade_set_size"]) == [len(m) for m in members]
    q = record["targets"]["value"]["threshold"]
    np.testing.assert_allclose(table["value_upper"] - table["value_predicted"], q, rtol=1e-5)
    np.testing.assert_allclose(table["value_predicted"] - table["value_lower"], q, rtol=1e-5)


def test_evaluate_reports_the_coverage_with_a_patient_grouped_interval(model_dir) -> None:
    predictor = Predictor.load(model_dir)
    cohort = load_cohort(predictor.loaded.spec)
    result = evaluate_model(predictor, cohort, split="test", n_boot=40, progress=False)
    table = predictor.predict_cohort(cohort, split="test")
    for target, size_name in (("grade", "set_size"), ("value", "interval_width")):
        metrics = result.targets[target].subsets[0].metrics
        assert metrics["coverage_target"].point == 0.8
        assert metrics[size_name].point > 0
        low, point, high = (
            metrics["coverage"].low,
            metrics["coverage"].point,
            metrics["coverage"].high,
        )
        assert low <= point <= high and not math.isnan(low)
    labels = cohort.frame.iloc[cohort.indices("test")]["grade"].to_numpy()
    held = [label in s.split("|") for label, s in zip(labels, table["grade_set"], strict=True)]
    assert result.targets["grade"].subsets[0].metrics["coverage"].point == pytest.approx(
        np.mean(held)
    )


def test_sets_by_hand() -> None:
    from polymodal import targets
    from polymodal.calibration.conformal import TargetConformal

    kind, info = targets.get("multiclass"), {**MULTICLASS, "classes": ["a", "b", "c"]}
    outputs = {"probabilities": np.array([[0.5, 0.3, 0.2], [0.9, 0.06, 0.04]])}
    aps = TargetConformal("set", "aps", 0.8).members(kind, info, outputs)
    assert aps.tolist() == [[True, True, False], [True, False, False]]  # mass 0.5, 0.8, 1.0
    lac = TargetConformal("set", "lac", 0.75).members(kind, info, outputs)
    assert lac.tolist() == [[True, True, False], [True, False, False]]  # 1 − p ≤ 0.75
    scores = TargetConformal("set", "aps", None).scores(kind, info, outputs, np.array([1, 2]))
    np.testing.assert_allclose(scores, [0.8, 1.0])
