"""evaluate_model: metrics with grouped bootstrap CIs for every subset of modalities."""

from __future__ import annotations

import math

import pytest
from sklearn.metrics import roc_auc_score

from polymodal.data.manifest import load_cohort
from polymodal.errors import PolymodalError
from polymodal.evaluation import EvaluationResult, modality_subsets
from polymodal.evaluation.evaluate import evaluate_model
from polymodal.predictor import Predictor
from training.conftest import tiny_run

MODALITIES = ["lesion", "ct", "labs", "note", "vitals"]
N_BOOT = 30


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    return Predictor.load(tiny_run(tmp_path_factory.getbasetemp()) / "model")


@pytest.fixture(scope="module")
def cohort(predictor: Predictor):
    return load_cohort(predictor.loaded.spec)


@pytest.fixture(scope="module")
def result(predictor: Predictor, cohort) -> EvaluationResult:
    return evaluate_model(predictor, cohort, split="test", n_boot=N_BOOT, seed=0, progress=False)


def test_every_non_empty_subset_of_modalities_is_scored(result: EvaluationResult) -> None:
    assert list(result.targets) == ["label"]
    subsets = [s.modalities for s in result.targets["label"].subsets]
    assert len(subsets) == 2 ** len(MODALITIES) - 1
    assert subsets == modality_subsets(MODALITIES)
    assert subsets[0] == tuple(MODALITIES)


def test_every_subset_scores_the_same_test_patients_with_grouped_intervals(
    result: EvaluationResult, cohort
) -> None:
    test_rows = cohort.indices("test")
    n_patients = cohort.groups.iloc[test_rows].nunique()
    # Some patients have several samples: resampling by patient is not resampling by row.
    assert n_patients < len(test_rows)
    for subset in result.targets["label"].subsets:
        assert (subset.n_samples, subset.n_groups) == (len(test_rows), n_patients)
        assert subset.n_boot == N_BOOT and subset.level == 0.95
        assert {"auroc", "auprc", "brier", "ece"} <= set(subset.metrics)
        for name, ci in subset.metrics.items():
            if math.isnan(ci.point):
                assert name in subset.reasons
                continue
            # A percentile interval need not contain the point estimate (ECE's bootstrap is
            # biased upwards), so only its order and finiteness are properties.
            assert math.isfinite(ci.low) and ci.low <= ci.high, (subset.label, name, ci)
            assert 0 < ci.n_valid <= N_BOOT


def test_a_subset_row_is_the_model_scored_with_only_those_modalities(
    result: EvaluationResult, predictor: Predictor, cohort
) -> None:
    by_subset = {s.modalities: s for s in result.targets["label"].subsets}
    for subset in [tuple(MODALITIES), ("labs",), ("ct", "vitals")]:
        collector, _ = predictor.collect(cohort, split="test", modalities=subset)
        y_true, probability, _ = collector.arrays("label")
        assert by_subset[subset].metrics["auroc"].point == pytest.approx(
            roc_auc_score(y_true, probability)
        )


def test_json_round_trips_and_markdown_names_every_subset(result: EvaluationResult) -> None:
    text = result.to_json()
    again = EvaluationResult.from_json(text)
    assert again.to_dict() == result.to_dict()
    assert again.settings["split"] == "test" and again.settings["n_boot"] == N_BOOT
    markdown = result.to_markdown()
    lines = markdown.splitlines()
    for subset in modality_subsets(MODALITIES):
        label = " + ".join(subset)
        assert any(line.startswith(f"| {label} |") for line in lines), label
    assert "95% CI: percentile bootstrap over patient groups" in markdown


def test_restricting_the_matrix_and_switching_it_off(predictor: Predictor, cohort) -> None:
    pair = evaluate_model(
        predictor, cohort, modalities=["lesion", "labs"], n_boot=5, progress=False
    )
    assert [s.modalities for s in pair.targets["label"].subsets] == [
        ("lesion", "labs"),
        ("lesion",),
        ("labs",),
    ]
    full_only = evaluate_model(predictor, cohort, subsets=False, n_boot=5, progress=False)
    assert [s.modalities for s in full_only.targets["label"].subsets] == [tuple(MODALITIES)]


def test_the_same_seed_gives_the_same_intervals(predictor: Predictor, cohort) -> None:
    def run(seed: int) -> dict:
        return (
            evaluate_model(predictor, cohort, subsets=False, n_boot=20, seed=seed, progress=False)
            .targets["label"]
            .subsets[0]
            .metrics
        )

    first, again, other = run(0), run(0), run(1)
    assert first == again
    assert first["auroc"].point == other["auroc"].point
    assert (first["auroc"].low, first["auroc"].high) != (other["auroc"].low, other["auroc"].high)


def test_unknown_split_is_a_clear_error(predictor: Predictor, cohort) -> None:
    with pytest.raises(
        PolymodalError, match="split must be one of train, val, test; got 'nonsense'"
    ):
        evaluate_model(predictor, cohort, split="nonsense", n_boot=5, progress=False)


def test_empty_split_is_a_clear_error(predictor: Predictor, cohort) -> None:
    no_test = load_cohort(predictor.loaded.spec)
    no_test.split = no_test.split.replace("test", "val")
    assert len(no_test.indices("test")) == 0 and len(no_test.indices("val")) > 0
    with pytest.raises(PolymodalError, match="the 'test' split has no rows"):
        evaluate_model(predictor, no_test, split="test", n_boot=5, progress=False)
