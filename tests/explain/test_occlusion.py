"""Occlusion on a model fitted where one field decides the label."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from polymodal.errors import ModelError
from polymodal.explain import ExplainResult, explain_model
from polymodal.predictor import Predictor

SAMPLES = 40


@pytest.fixture(scope="module")
def result(key_model: Path, key_cohort: Path) -> ExplainResult:
    return explain_model(
        key_model,
        key_cohort.parent / "manifest.csv",
        "label",
        method="occlusion",
        max_samples=SAMPLES,
    )


def test_the_deciding_field_and_its_modality_rank_first(result: ExplainResult) -> None:
    cohort = result.cohort.set_index("element")
    fields = cohort[cohort["kind"] == "field"].sort_values("rank_in_kind")
    assert fields.index[0] == "labs.key"
    assert fields.loc["labs.key", "mean_abs_effect"] > 3 * fields["mean_abs_effect"].iloc[1]
    modalities = cohort[cohort["kind"] == "modality"].sort_values("rank_in_kind")
    assert list(modalities.index) == ["labs", "note"]
    low, high = cohort.loc["labs.key", ["ci_low", "ci_high"]]
    assert low <= cohort.loc["labs.key", "mean_abs_effect"] <= high
    assert result.per_sample["sample_id"].nunique() == SAMPLES
    assert result.methods == ("occlusion",) and result.score == "probability of '1'"


def test_field_and_modality_occlusion_equal_predictions_with_blank_cells(
    result: ExplainResult, key_model: Path, key_cohort: Path, tmp_path: Path
) -> None:
    manifest = pd.read_csv(key_cohort.parent / "manifest.csv", dtype=str, keep_default_na=False)
    rows = result.per_sample.set_index(["sample_id", "element"])
    predictor = Predictor.load(key_model)
    ids = result.per_sample["sample_id"].unique()[:10]
    subset = manifest[manifest["sample_id"].isin(ids)]

    full = predictor.predict_manifest(_write(subset, tmp_path / "full.csv")).set_index("sample_id")
    no_key = predictor.predict_manifest(
        _write(subset.assign(key=""), tmp_path / "no_key.csv")
    ).set_index("sample_id")
    no_note = predictor.predict_manifest(
        _write(subset.assign(note=""), tmp_path / "no_note.csv")
    ).set_index("sample_id")
    for sample in ids:
        assert rows.loc[(sample, "labs"), "prediction"] == pytest.approx(
            full.loc[sample, "label_probability"], abs=1e-5
        )
        assert rows.loc[(sample, "labs.key"), "occluded_prediction"] == pytest.approx(
            no_key.loc[sample, "label_probability"], abs=1e-5
        )
        assert rows.loc[(sample, "note"), "occluded_prediction"] == pytest.approx(
            no_note.loc[sample, "label_probability"], abs=1e-5
        )
        effect = rows.loc[(sample, "labs.key")]
        assert effect["occlusion_effect"] == pytest.approx(
            effect["prediction"] - effect["occluded_prediction"]
        )
    assert np.isnan(result.per_sample["rollout_share"]).all()


def _write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_an_unknown_task_names_the_targets(key_model: Path, key_cohort: Path) -> None:
    with pytest.raises(ModelError, match="unknown task 'risk'; the model's targets are: label"):
        explain_model(key_model, key_cohort.parent / "manifest.csv", "risk", max_samples=2)


def test_non_finite_weights_are_refused_naming_the_tensor(
    key_model: Path, key_cohort: Path
) -> None:
    """Effects measured against a NaN prediction would rank elements by nothing: explain stops."""
    from polymodal.model_folder import load_model_folder

    loaded = load_model_folder(key_model)
    name, weight = next(
        (n, p) for n, p in loaded.model.named_parameters() if n.startswith("heads.")
    )
    with torch.no_grad():
        weight.fill_(float("nan"))
    with pytest.raises(ModelError, match=rf"not finite.*{name}"):
        explain_model(loaded, key_cohort.parent / "manifest.csv", "label", max_samples=3)
