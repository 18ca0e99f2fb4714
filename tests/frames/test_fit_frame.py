"""polymodal.fit from a DataFrame: the spec it infers, predict/evaluate/save/load on frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

import polymodal
from polymodal.errors import ManifestError


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, make_patients, tiny_settings
) -> tuple[polymodal.Model, Path]:
    out = tmp_path_factory.mktemp("frame_fit")
    model = polymodal.fit(
        make_patients(80),
        target="outcome",
        core="concat",
        out=out,
        settings=tiny_settings,
        progress=False,
    )
    return model, out


def test_the_inferred_spec_is_written_out_for_reuse(trained) -> None:
    _, out = trained
    spec = yaml.safe_load((out / "cohort" / "spec.yaml").read_text())
    assert spec["targets"]["outcome"] == {"kind": "binary", "column": "outcome", "positive": "1"}
    assert spec["modalities"]["note"] == {"kind": "text", "column": "note"}
    assert spec["modalities"]["clinical"] == {
        "kind": "tabular",
        "numeric": ["age"],
        "categorical": ["sex"],
    }
    # The command line reads the same spec and rows.
    cohort = polymodal.load_cohort(polymodal.load_spec(out / "cohort" / "spec.yaml"))
    assert len(cohort) == 80 and cohort.frame.loc[3, "age"] == ""
    assert cohort.frame.loc[0, "outcome"] in ("0", "1")  # ints, not "1.0"


def test_predict_takes_new_rows_as_a_frame_without_labels(trained, make_patients) -> None:
    model, _ = trained
    new = make_patients(10, seed=1).drop(columns=["outcome"])
    table = model.predict(new)
    assert len(table) == 10
    assert table["outcome_probability"].between(0, 1).all()
    assert table["available_note"].all() and table["available_clinical"].all()


def test_a_missing_modality_column_is_predicted_without_it(trained, make_patients) -> None:
    model, _ = trained
    new = make_patients(5, seed=2).drop(columns=["outcome", "note"])
    with pytest.warns(UserWarning):
        table = model.predict(new)
    assert not table["available_note"].any() and table["available_clinical"].all()


def test_evaluate_scores_a_labelled_frame(trained, make_patients) -> None:
    model, _ = trained
    result = model.evaluate(make_patients(40, seed=3), n_boot=20, subsets=False)
    auroc = result.targets["outcome"].subsets[0].metrics["auroc"]
    assert auroc.point > 0.8  # the note names the outcome: even two epochs learn it


def test_save_and_load_give_the_same_predictions(trained, tmp_path: Path, make_patients) -> None:
    model, _ = trained
    saved = model.save(tmp_path / "shared_model")
    again = polymodal.load(saved)
    assert isinstance(again, polymodal.Model) and isinstance(again, polymodal.Predictor)
    new = make_patients(8, seed=4).drop(columns=["outcome"])
    first, second = model.predict(new), again.predict(new)
    np.testing.assert_allclose(first["outcome_probability"], second["outcome_probability"])
    with pytest.raises(polymodal.PolymodalError, match="already exists"):
        model.save(saved)


def test_a_root_that_is_not_a_folder_is_refused(trained, tmp_path: Path, make_patients) -> None:
    model, _ = trained
    new = make_patients(2, seed=5).drop(columns=["outcome"])
    # The model reads no file modality; the root must still be a folder.
    with pytest.raises(ManifestError, match="not a folder"):
        model.predict(new, root=tmp_path / "absent")


def test_an_unknown_target_column_names_the_columns(
    tmp_path: Path, make_patients, tiny_settings
) -> None:
    with pytest.raises(polymodal.SpecError, match=r"'dx' is not in the DataFrame.*age"):
        polymodal.fit(
            make_patients(20), target="dx", out=tmp_path, settings=tiny_settings, progress=False
        )


def test_the_written_spec_trains_again_through_the_spec_path(
    trained, tmp_path: Path, tiny_settings
) -> None:
    _, out = trained
    run = polymodal.load_run_config(None, [*tiny_settings, "model.core=concat"])
    result = polymodal.fit(
        str(out / "cohort" / "spec.yaml"), tmp_path / "again", run, progress=False
    )
    assert isinstance(result, polymodal.FitResult)
    assert polymodal.load(result.model_dir).modalities == ["note", "clinical"]
