"""``polymodal cv``: grouped, stratified folds over the non-test rows, one fit per fold, the
pooled out-of-fold predictions, and its outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polymodal.cli import main
from polymodal.data.manifest import load_cohort
from polymodal.data.spec import load_spec
from polymodal.errors import PolymodalError
from polymodal.evaluation import read_predictions
from polymodal.evaluation.cross_validation import NOT_IN_FOLDS, assign_folds, t_interval
from polymodal.model_folder import load_model_folder
from training.tabular_cohort import TABULAR_MODEL, make_tabular_cohort

SETTINGS = [arg for item in TABULAR_MODEL for arg in ("--set", item)]


def run_main(monkeypatch: pytest.MonkeyPatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["polymodal", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err


@pytest.fixture(scope="module")
def large_cohort(tmp_path_factory: pytest.TempPathFactory):
    return load_cohort(load_spec(make_tabular_cohort(tmp_path_factory.mktemp("cv120"), 120)))


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tabular_cohort(tmp_path_factory.mktemp("cv30"), 30)


def test_folds_are_patient_disjoint_cover_every_non_test_row_once_and_leave_test_alone(
    large_cohort,
) -> None:
    folds = assign_folds(large_cohort, 4, seed=0)
    test = (large_cohort.split == "test").to_numpy()
    assert (folds[test] == NOT_IN_FOLDS).all()
    assert set(folds[~test]) == {0, 1, 2, 3}  # every non-test row in exactly one fold
    patients = pd.Series(large_cohort.groups.to_numpy()[~test])
    assert (patients.groupby(folds[~test]).apply(set).explode().value_counts() == 1).all()
    assert np.array_equal(folds, assign_folds(large_cohort, 4, seed=0))  # seeded


def test_folds_are_stratified_on_the_first_class_valued_target(large_cohort) -> None:
    folds = assign_folds(large_cohort, 4, seed=0)
    rows = folds != NOT_IN_FOLDS
    grade = large_cohort.frame["grade"].to_numpy()[rows]
    overall = pd.Series(grade).value_counts(normalize=True)
    for fold in range(4):
        share = pd.Series(grade[folds[rows] == fold]).value_counts(normalize=True)
        assert (share.reindex(overall.index) - overall).abs().max() < 0.08


@pytest.mark.parametrize(("folds", "message"), [(1, "at least 2 folds"), (26, "hold 25 patient")])
def test_bad_fold_counts_are_one_clear_message(
    folds: int, message: str, spec_path: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    with pytest.raises(PolymodalError, match=message):
        assign_folds(load_cohort(load_spec(spec_path)), folds)
    args = ["cv", str(spec_path), "--folds", str(folds), "-o", str(tmp_path / "cv"), *SETTINGS]
    status, output = run_main(monkeypatch, capsys, *args)
    assert status == 2 and message in output and "Traceback" not in output
    assert not (tmp_path / "cv" / "fold_1").exists()  # refused before any fit


def test_t_interval_of_the_mean_over_folds() -> None:
    summary = t_interval([1.0, 2.0, 3.0, float("nan")])
    assert summary["mean"] == 2.0 and summary["n_folds"] == 3
    assert summary["high"] - 2.0 == pytest.approx(4.302653 / np.sqrt(3), rel=1e-5)


def test_cv_writes_its_outputs_pools_out_of_fold_predictions_and_refits(
    spec_path: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "cv"
    args = ["cv", str(spec_path), "--folds", "3", "-o", str(out), "--refit", "--n-boot", "20"]
    status, output = run_main(
        monkeypatch, capsys, *args, *SETTINGS, "--set", "conformal.coverage=0.8"
    )
    assert status == 0, output
    result = json.loads((out / "cv.json").read_text())
    cohort = load_cohort(load_spec(spec_path))
    non_test = cohort.ids[cohort.split != "test"]
    kept = read_predictions(out / "cv.predictions.parquet").frame()
    assert sorted(kept["sample_id"]) == sorted(non_test)  # each non-test row once, no test row
    assert set(kept["fold"]) == {1, 2, 3}
    assert sum(fold["n_rows"] for fold in result["folds"]) == len(non_test)
    auroc = [fold["metrics"]["outcome"]["auroc"] for fold in result["folds"]]
    across = result["across_folds"]["outcome"]["auroc"]
    assert across["mean"] == pytest.approx(np.mean(auroc))
    assert across["low"] <= across["mean"] <= across["high"]
    pooled = result["pooled"]["targets"]["outcome"]["subsets"][0]
    assert pooled["n_samples"] == len(non_test) and pooled["n_boot"] == 20
    assert "## grade (multiclass)" in (out / "cv.md").read_text()
    assert not (out / "fold_1" / "model").exists()  # models kept only with --keep-models
    assert result["refit"]["left_out_sections"] == ["conformal"]
    refit = load_model_folder(out / "refit" / "model")
    assert not (refit.folder / "conformal.json").exists()


def test_keep_models_keeps_every_folds_model(spec_path: Path, tmp_path: Path) -> None:
    from polymodal.training.cross_validation import cross_validate
    from training.tabular_cohort import tabular_config

    out = tmp_path / "cv"
    result = cross_validate(
        load_spec(spec_path),
        out,
        tabular_config(),
        folds=2,
        n_boot=10,
        keep_models=True,
        progress=False,
    )
    for fold in (1, 2):
        assert load_model_folder(out / f"fold_{fold}" / "model").folder.is_dir()
    assert result.refit_model is None and result.summary["refit"] is None
