"""The Predictor: new rows with any subset of modalities, and the per-subset matrix it feeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from polymodal.data.collate import collate_samples
from polymodal.data.dataset import CohortDataset
from polymodal.data.manifest import load_cohort
from polymodal.errors import ModelError
from polymodal.fusion import list_cores
from polymodal.predictor import Predictor
from training.conftest import tiny_run

MODALITIES = ["lesion", "ct", "labs", "note", "vitals"]
TABULAR = ["age", "crp", "sodium", "hemoglobin", "bmi", "sex", "smoking", "site"]
# The manifest columns of each demo modality (`labs` is the whole tabular block).
COLUMNS = {
    "lesion": ["lesion_image"],
    "ct": ["ct_volume"],
    "labs": TABULAR,
    "note": ["note"],
    "vitals": ["vitals_series"],
}


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    return Predictor.load(tiny_run(tmp_path_factory.getbasetemp()) / "model", batch_size=8)


@pytest.fixture(scope="module")
def manifest(predictor: Predictor) -> pd.DataFrame:
    """The training manifest as strings (empty cell = missing)."""
    return pd.read_csv(predictor.loaded.spec.manifest_path, dtype=str, keep_default_na=False)


def _present(frame: pd.DataFrame, modality: str) -> pd.Series:
    return (frame[COLUMNS[modality]] != "").any(axis=1)


def _new_patients(manifest: pd.DataFrame) -> tuple[pd.DataFrame, list[set[str]]]:
    """Rows of new patients, without label or split: one with each single modality, one with
    a pair, one with all five; returned with the modalities each row was given."""
    rows, given = [], []
    wanted = [{m} for m in MODALITIES] + [{"ct", "note"}, set(MODALITIES)]
    used: set[int] = set()
    for modalities in wanted:
        candidates = manifest.index[
            np.logical_and.reduce([_present(manifest, m) for m in modalities])
        ]
        index = next(i for i in candidates if i not in used)
        used.add(index)
        row = manifest.loc[index].copy()
        for other in set(MODALITIES) - modalities:
            row[COLUMNS[other]] = ""
        rows.append(row)
        given.append(modalities)
    frame = pd.DataFrame(rows).drop(columns=["label", "split"])
    # Not in the order of the training manifest, so a sorted output would show.
    return frame.iloc[::-1].reset_index(drop=True), given[::-1]


def test_rows_with_any_subset_of_modalities_each_get_a_probability(
    predictor: Predictor, manifest: pd.DataFrame, tmp_path: Path
) -> None:
    frame, given = _new_patients(manifest)
    path = tmp_path / "new_patients.csv"
    frame.to_csv(path, index=False)
    # The rows name files of the training cohort: say where they are.
    table = predictor.predict_manifest(path, root=predictor.loaded.spec.data_root)
    assert list(table.columns) == [
        "sample_id",
        *(f"available_{m}" for m in MODALITIES),
        "label_probability",
    ]
    # One output row per input row, in the input's order.
    assert table["sample_id"].tolist() == frame["sample_id"].tolist()
    for (_, out), modalities in zip(table.iterrows(), given, strict=True):
        assert {m for m in MODALITIES if out[f"available_{m}"]} == modalities
    probability = table["label_probability"].to_numpy()
    assert np.isfinite(probability).all()
    assert ((probability > 0) & (probability < 1)).all()
    # The inputs reach the output: rows with different modalities do not all score alike.
    assert len(np.unique(probability.round(6))) > 1


def test_a_row_predicts_the_same_alone_in_a_new_manifest_as_during_evaluation(
    predictor: Predictor, manifest: pd.DataFrame, tmp_path: Path
) -> None:
    test_rows = manifest[manifest["split"] == "test"]
    # Label and split removed, shuffled, and batched differently from the evaluation pass.
    new = test_rows.drop(columns=["label", "split"]).sample(frac=1.0, random_state=0)
    path = tmp_path / "unlabelled.csv"
    new.to_csv(path, index=False)
    table = predictor.predict_manifest(path, root=predictor.loaded.spec.data_root)
    assert len(table) == len(new)
    evaluation = predictor.predict_cohort(load_cohort(predictor.loaded.spec), split="test")
    assert sorted(evaluation["sample_id"]) == sorted(table["sample_id"])
    merged = table.merge(evaluation, on="sample_id", suffixes=("_new", "_eval"))
    np.testing.assert_allclose(
        merged["label_probability_new"], merged["label_probability_eval"], rtol=1e-5, atol=1e-6
    )
    for m in MODALITIES:
        assert (merged[f"available_{m}_new"] == merged[f"available_{m}_eval"]).all()
        assert (merged[f"available_{m}_new"] == _present(new, m).to_numpy()).all()


SUBSETS = [
    ("lesion",),
    ("ct",),
    ("labs",),
    ("note",),
    ("vitals",),
    ("ct", "vitals"),
    ("lesion", "labs", "note"),
    tuple(MODALITIES),
]


def test_masking_a_modality_equals_building_samples_without_it(predictor: Predictor) -> None:
    cohort = load_cohort(predictor.loaded.spec)
    collectors, available = predictor.collect_subsets(cohort, SUBSETS, split="test")
    model = predictor.loaded.model.eval()
    n_test = len(cohort.indices("test"))
    for m in MODALITIES:
        assert available[m].shape == (n_test,)
    for subset in SUBSETS:
        dataset = CohortDataset(cohort, predictor.loaded.preprocessor, "test", modalities=subset)
        batch = collate_samples([dataset[i] for i in range(len(dataset))])
        for m in set(MODALITIES) - set(subset):
            assert not batch["available"][m].any()
        with torch.no_grad():
            expected = model.predict(batch)["label"]["probability"].numpy()
        got = collectors[subset].predictions("label")["probability"]
        assert collectors[subset].ids == batch["ids"]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=str(subset))
    # Different subsets are different inputs: the single-modality rows do not coincide.
    singles = [collectors[(m,)].predictions("label")["probability"] for m in MODALITIES]
    assert not all(np.allclose(singles[0], s) for s in singles[1:])


def test_collect_with_all_modalities_is_the_full_model(predictor: Predictor) -> None:
    cohort = load_cohort(predictor.loaded.spec)
    collector, available = predictor.collect(cohort, split="val")
    dataset = CohortDataset(cohort, predictor.loaded.preprocessor, "val")
    batch = collate_samples([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        expected = predictor.loaded.model.eval().predict(batch)["label"]["probability"].numpy()
    np.testing.assert_allclose(
        collector.predictions("label")["probability"], expected, rtol=1e-5, atol=1e-6
    )
    for m in MODALITIES:
        assert (available[m] == batch["available"][m].numpy()).all()


def test_unknown_modality_in_a_subset_names_the_known_ones(predictor: Predictor) -> None:
    cohort = load_cohort(predictor.loaded.spec)
    with pytest.raises(ModelError, match=r"no modality \['xray'\]; it knows \['lesion', 'ct'"):
        predictor.collect_subsets(cohort, [("lesion", "xray")], split="test")


def test_prompts_for_a_core_that_takes_none_name_the_cores_that_do(predictor: Predictor) -> None:
    assert not predictor.loaded.model.core.takes_prompts
    prompting = ", ".join(list_cores(takes_prompts=True))
    assert prompting  # a core that takes prompts is registered, so the message names one
    with pytest.raises(ModelError, match=rf"takes no task prompts.*\({prompting}\)"):
        Predictor(predictor.loaded, prompts={"label": "Is the lesion malignant?"})
