"""``predict`` reads the new rows' own files and speaks where its output would mislead."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from polymodal.cli import app, main
from polymodal.data.manifest import load_cohort
from polymodal.errors import ManifestError, ModelError
from polymodal.evaluation.evaluate import evaluate_model
from polymodal.prediction_checks import NonFiniteGuard
from polymodal.predictor import NO_DATA_NOTE, Predictor
from training.conftest import tiny_run

FILE_COLUMNS = ["lesion_image", "ct_volume", "vitals_series"]
TEXT_AND_TABULAR = [
    "note",
    *("age", "crp", "sodium", "hemoglobin", "bmi", "sex", "smoking", "site"),
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory.getbasetemp()) / "model"


@pytest.fixture(scope="module")
def predictor(model_dir: Path) -> Predictor:
    return Predictor.load(model_dir, batch_size=8)


@pytest.fixture(scope="module")
def manifest(predictor: Predictor) -> pd.DataFrame:
    """The training manifest, labels and split removed (new patients), every cell a string."""
    frame = pd.read_csv(predictor.loaded.spec.manifest_path, dtype=str, keep_default_na=False)
    return frame.drop(columns=["label", "split"])


def lesion_only(manifest: pd.DataFrame, n: int = 6) -> pd.DataFrame:
    """``n`` rows that have a lesion image, every other modality blank."""
    rows = manifest[manifest["lesion_image"] != ""].head(n).copy()
    rows[["ct_volume", "vitals_series", *TEXT_AND_TABULAR]] = ""
    return rows.reset_index(drop=True)


def test_relative_paths_resolve_against_the_new_table_not_the_training_cohort(
    predictor: Predictor, manifest: pd.DataFrame, tmp_path: Path
) -> None:
    rows = lesion_only(manifest)
    # The new clinic's images carry the training images' names but other pixels.
    for name in rows["lesion_image"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((32, 32), 255, dtype=np.uint8)).save(tmp_path / name)
    rows.to_csv(tmp_path / "new.csv", index=False)
    new = predictor.predict_manifest(tmp_path / "new.csv")
    training_files = predictor.predict_manifest(
        tmp_path / "new.csv", root=predictor.loaded.spec.data_root
    )
    assert new["available_lesion"].all() and training_files["available_lesion"].all()
    # Every uniform image scores alike; the training images do not.
    assert new["label_probability"].nunique() == 1
    assert training_files["label_probability"].round(6).nunique() > 1


def test_a_file_missing_beside_the_new_table_is_reported_not_replaced(
    predictor: Predictor, manifest: pd.DataFrame, tmp_path: Path, caplog
) -> None:
    rows = lesion_only(manifest, n=3)
    rows.to_csv(tmp_path / "new.csv", index=False)  # no image beside it
    with caplog.at_level(logging.WARNING), pytest.warns(UserWarning, match="no data"):
        table = predictor.predict_manifest(tmp_path / "new.csv")
    assert not table["available_lesion"].any()
    assert table["label_probability"].isna().all()
    logged = caplog.text
    assert all(str(tmp_path / name) in logged for name in rows["lesion_image"])


def test_a_table_without_a_modalitys_columns_predicts_it_as_missing(
    predictor: Predictor, manifest: pd.DataFrame, tmp_path: Path
) -> None:
    rows = manifest.head(8)
    root = predictor.loaded.spec.data_root
    rows.assign(ct_volume="").to_csv(tmp_path / "blank_ct.csv", index=False)
    rows.drop(columns=["ct_volume", "patient_id"]).to_csv(tmp_path / "no_ct.csv", index=False)
    blank = predictor.predict_manifest(tmp_path / "blank_ct.csv", root=root)
    with pytest.warns(UserWarning, match=r"no column of modality 'ct' \(ct_volume\)"):
        absent = predictor.predict_manifest(tmp_path / "no_ct.csv", root=root)
    assert not absent["available_ct"].any()
    pd.testing.assert_frame_equal(absent, blank)


def test_the_id_column_is_still_required(
    predictor: Predictor, manifest: pd.DataFrame, tmp_path: Path
) -> None:
    manifest.head(3).drop(columns=["sample_id"]).to_csv(tmp_path / "no_id.csv", index=False)
    with pytest.raises(ManifestError, match=r"column 'sample_id' \(declared by id_column\)"):
        predictor.predict_manifest(tmp_path / "no_id.csv")


def test_a_row_with_no_data_gets_no_probability_and_a_note(
    predictor: Predictor, manifest: pd.DataFrame, tmp_path: Path
) -> None:
    rows = manifest.head(4).copy()
    rows.loc[[1, 3], [*FILE_COLUMNS, *TEXT_AND_TABULAR]] = ""
    rows.to_csv(tmp_path / "new.csv", index=False)
    root = predictor.loaded.spec.data_root
    with pytest.warns(UserWarning, match=r"2 of 4 rows have no data .*'S00001', 'S00003'"):
        table = predictor.predict_manifest(tmp_path / "new.csv", root=root)
    probability = table["label_probability"]
    assert probability.isna().tolist() == [False, True, False, True]
    assert table["note"].tolist() == ["", NO_DATA_NOTE, "", NO_DATA_NOTE]
    # Without such rows the table keeps its usual columns.
    manifest.head(2).to_csv(tmp_path / "full.csv", index=False)
    assert "note" not in predictor.predict_manifest(tmp_path / "full.csv", root=root)


def test_unseen_categories_and_repeated_ids_are_warned_about(
    predictor: Predictor, manifest: pd.DataFrame, tmp_path: Path
) -> None:
    rows = manifest.head(4).copy()
    rows.loc[0, "site"] = "site_mars"
    rows.loc[2, "sample_id"] = rows.loc[1, "sample_id"]
    rows.to_csv(tmp_path / "new.csv", index=False)
    with pytest.warns(UserWarning) as caught:
        table = predictor.predict_manifest(
            tmp_path / "new.csv", root=predictor.loaded.spec.data_root
        )
    messages = [str(w.message) for w in caught]
    assert any(
        "column 'site' (labs)" in m and "'site_mars'" in m and "treats them as unknown" in m
        for m in messages
    ), messages
    assert any("appear in more than one row: 'S00001'" in m for m in messages), messages
    assert len(table) == 4


@pytest.fixture()
def broken(model_dir: Path) -> Predictor:
    """The tiny model with NaN in one head weight (e.g. a diverged training run)."""
    predictor = Predictor.load(model_dir, batch_size=8)
    head = next(p for n, p in predictor.loaded.model.named_parameters() if n.startswith("heads."))
    with torch.no_grad():
        head.view(-1)[0] = float("nan")
    return predictor


def test_non_finite_outputs_are_an_error_naming_the_rows_and_why(
    broken: Predictor, manifest: pd.DataFrame, tmp_path: Path
) -> None:
    rows = manifest.head(3)
    rows.to_csv(tmp_path / "new.csv", index=False)
    with pytest.raises(ModelError) as err:
        broken.predict_manifest(tmp_path / "new.csv", root=broken.loaded.spec.data_root)
    message = str(err.value)
    assert "outputs for target 'label' are not finite (NaN or inf) in 3 row(s)" in message
    assert "'S00000', 'S00001', 'S00002'" in message
    assert "weight tensor(s) hold NaN or inf ('heads." in message
    # Evaluation goes through the same guard.
    cohort = load_cohort(broken.loaded.spec)
    with pytest.raises(ModelError, match="are not finite"):
        evaluate_model(broken, cohort, split="val", subsets=False, n_boot=2, progress=False)


def run_main(monkeypatch: pytest.MonkeyPatch, capsys, *args: str) -> tuple[int, str]:
    """The real entry point with its error handling: (exit status, everything printed)."""
    monkeypatch.setattr(sys, "argv", ["polymodal", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err


def test_cli_predict_prints_its_warnings_and_refuses_a_table_without_ids(
    model_dir: Path, manifest: pd.DataFrame, tmp_path: Path, monkeypatch, capsys
) -> None:
    rows = manifest.head(3).copy()
    rows.loc[1, [*FILE_COLUMNS, *TEXT_AND_TABULAR]] = ""
    rows.drop(columns=["ct_volume"]).to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "predictions.csv"
    data_root = str(Predictor.load(model_dir).loaded.spec.data_root)
    result = CliRunner().invoke(
        app,
        ["predict", str(model_dir), str(tmp_path / "new.csv"), "--root", data_root, "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "warning: " in result.output and "no column of modality 'ct'" in result.output
    assert "1 of 3 rows have no data" in result.output
    assert pd.read_csv(out)["label_probability"].isna().tolist() == [False, True, False]

    rows.drop(columns=["sample_id"]).to_csv(tmp_path / "no_id.csv", index=False)
    status, output = run_main(
        monkeypatch, capsys, "predict", str(model_dir), str(tmp_path / "no_id.csv")
    )
    assert status == 2 and "column 'sample_id' (declared by id_column)" in output
    assert "Traceback" not in output


def test_cli_evaluate_reads_another_tables_files_beside_it(
    model_dir: Path, tmp_path: Path, caplog
) -> None:
    spec_root = Path(Predictor.load(model_dir).loaded.spec.data_root)
    labelled = pd.read_csv(spec_root / "manifest.csv", dtype=str, keep_default_na=False)
    other = tmp_path / "other_clinic"
    other.mkdir()
    rows = labelled[(labelled["split"] == "test") & (labelled["lesion_image"] != "")].head(6)
    rows.to_csv(other / "manifest.csv", index=False)
    shutil.copytree(spec_root / "images", other / "images")  # only the images travel
    args = ["evaluate", str(model_dir), "--manifest", str(other / "manifest.csv")]
    with caplog.at_level(logging.WARNING):
        result = CliRunner().invoke(
            app, [*args, "--n-boot", "2", "--no-subsets", "--json", str(tmp_path / "r.json")]
        )
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "r.json").read_text())["settings"]
    assert settings["data_root"] == str(other.resolve())
    # Volumes and series are looked for beside the other table (and missing there), never
    # taken from the training cohort; its images are found.
    missing = {
        r.getMessage() for r in caplog.records if "the sample goes on without it" in r.getMessage()
    }
    assert any(str(other / "volumes") in m for m in missing), missing
    assert not any("images" in m for m in missing), missing
    assert not any(str(spec_root) in m for m in missing), missing
    # The spec's own manifest, named explicitly, keeps the spec's root.
    own = ["evaluate", str(model_dir), "--manifest", str(spec_root / "manifest.csv")]
    result = CliRunner().invoke(
        app, [*own, "--n-boot", "2", "--no-subsets", "--json", str(tmp_path / "own.json")]
    )
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "own.json").read_text())["settings"]
    assert settings["data_root"] == str(spec_root)


def test_the_guard_blames_the_inputs_when_the_weights_are_finite(predictor: Predictor) -> None:
    guard = NonFiniteGuard()
    probability = torch.tensor([0.2, float("inf"), float("nan"), float("nan")])
    has_data = torch.tensor([True, True, True, False])  # the last row gets no prediction
    guard.add(["a", "b", "c", "d"], {"label": {"probability": probability}}, has_data)
    with pytest.raises(ModelError) as err:
        guard.check(predictor.loaded)
    message = str(err.value)
    assert "not finite (NaN or inf) in 2 row(s): 'b', 'c';" in message
    assert "the weights are finite, so these rows' inputs drive the model out of range" in message
    NonFiniteGuard().check(predictor.loaded)  # nothing seen, nothing raised
