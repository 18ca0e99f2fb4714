"""The multitask demo cohort: spec and prompts, labels per task, censoring through the data
layer, every planted rule learnable from its own factors and not from another's, the planted
informative element, determinism."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import r2_score, roc_auc_score
from typer.testing import CliRunner

from polymodal.cli import app
from polymodal.data.collate import collate_samples
from polymodal.data.dataset import CohortDataset
from polymodal.data.manifest import load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.serialize import TabularToText
from polymodal.data.spec import load_spec, target_columns
from polymodal.datasets.demo_multitask import (
    BREATHLESS,
    CHEST_PAIN,
    HORIZONS,
    INFORMATIVE_ELEMENT,
    LABELLED_FRACTION,
    PROMPTS,
    make_multitask_cohort,
    read_multitask_settings,
)
from polymodal.errors import PolymodalError

N = 400


def _manifest(spec_path: Path) -> pd.DataFrame:
    return pd.read_csv(spec_path.parent / "manifest.csv", dtype=str, keep_default_na=False)


def _planted(spec_path: Path) -> pd.DataFrame:
    return pd.read_csv(spec_path.parent / "planted_features.csv")


@pytest.fixture(scope="module")
def cohort_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 16³ volumes keep the module fast; the rules do not depend on the volume size.
    return make_multitask_cohort(tmp_path_factory.mktemp("mt") / "c", n=N, seed=3, volume_size=16)


def _fit_auroc(features: pd.DataFrame, labels: np.ndarray) -> float:
    """In-sample AUROC of a logistic regression: how much the features say about the label."""
    x = features.astype(float).to_numpy()
    model = LogisticRegression(max_iter=2000).fit(x, labels)
    return float(roc_auc_score(labels, model.decision_function(x)))


# --------------------------------------------------------------------------------------------
# Spec, prompts, labels per task
# --------------------------------------------------------------------------------------------


def test_spec_has_five_prompted_tasks_of_five_kinds(cohort_spec: Path) -> None:
    spec = load_spec(cohort_spec)
    kinds = {name: t.kind for name, t in spec.targets.items()}
    assert kinds == {
        "lung_cancer": "cumulative_risk",
        "cardiac": "binary",
        "lung_rads": "multiclass",
        "fev1": "regression",
        "pack_years": "digits",
    }
    assert spec.targets["lung_cancer"].horizons == list(HORIZONS) == [1, 2, 3, 4, 5, 6]
    for name, target in spec.targets.items():
        assert target.prompts == PROMPTS[name] and 3 <= len(target.prompts) <= 4
    assert spec.targets["lung_cancer"].prompts[0] == "Predict the lung cancer risk over six years."
    assert {name: m.kind for name, m in spec.modalities.items()} == {
        "ct": "volume",
        "labs": "tabular",
        "clinical": "text",
        "note": "text",
    }
    assert spec.modalities["clinical"].from_columns is not None
    assert read_multitask_settings(cohort_spec.parent).n == N


def test_every_task_has_labels_on_its_own_subset(cohort_spec: Path) -> None:
    spec, manifest = load_spec(cohort_spec), _manifest(cohort_spec)
    labelled = {}
    for name, target in spec.targets.items():
        has_label = (manifest[target_columns(target)] != "").all(axis=1)
        # Every label column of a task is blank on exactly the same rows.
        assert ((manifest[target_columns(target)] == "").all(axis=1) == ~has_label).all()
        assert has_label.sum() == round(LABELLED_FRACTION[name] * N)
        assert 0.6 <= has_label.mean() <= 0.9
        labelled[name] = has_label.to_numpy()
    subsets = list(labelled.values())
    for i, first in enumerate(subsets):
        for second in subsets[i + 1 :]:
            assert (first != second).any()
    for name, rows in labelled.items():
        assert rows.any() and not rows.all(), name


def test_modalities_are_missing_at_the_rate_and_never_all(cohort_spec: Path) -> None:
    planted = _planted(cohort_spec)
    available = planted[[f"available_{m}" for m in ("ct", "labs", "clinical", "note")]]
    assert available.any(axis=1).all()
    assert (1 - available.mean() > 0.1).all() and (1 - available.mean() < 0.3).all()
    manifest = _manifest(cohort_spec)
    np.testing.assert_array_equal(manifest["ct_volume"] != "", planted["available_ct"])
    present = list((cohort_spec.parent / "volumes").iterdir())
    assert len(present) == int(planted["available_ct"].sum())


# --------------------------------------------------------------------------------------------
# Censoring through the real data layer
# --------------------------------------------------------------------------------------------


def test_censored_rows_leave_later_horizons_unknown(cohort_spec: Path) -> None:
    cohort = load_cohort(load_spec(cohort_spec))
    prep = Preprocessor.fit(cohort)
    dataset = CohortDataset(cohort, prep, None, modalities=["labs"])
    manifest = _manifest(cohort_spec).set_index("sample_id")
    k = len(HORIZONS)
    horizons = np.array(HORIZONS)
    censored_early = events = 0
    for index in range(len(dataset)):
        sample = dataset[index]
        row = manifest.loc[sample["id"]]
        if row["cancer_years"] == "":
            assert not sample["target_mask"]["lung_cancer"]
            continue
        assert sample["target_mask"]["lung_cancer"]
        encoded = sample["targets"]["lung_cancer"].numpy()
        assert encoded.shape == (2 * k,)
        labels, known = encoded[:k], encoded[k:]
        time, event = float(row["cancer_years"]), row["cancer_event"] == "1"
        if event:
            events += 1
            np.testing.assert_array_equal(known, 1)
            np.testing.assert_array_equal(labels, horizons >= time)
        else:
            np.testing.assert_array_equal(labels, 0)
            np.testing.assert_array_equal(known, horizons <= time)
            if time < horizons[-1]:
                censored_early += 1
                # Known up to the censoring time, unknown after: never known again.
                assert known[-1] == 0 and (np.diff(known) <= 0).all()
    labelled = int((manifest["cancer_years"] != "").sum())
    assert events > 0.15 * labelled
    assert censored_early > 0.15 * labelled


def test_censoring_zero_leaves_only_the_end_of_follow_up(tmp_path: Path) -> None:
    spec_path = make_multitask_cohort(tmp_path / "c", n=200, seed=1, censoring=0.0, volume_size=16)
    censor = _planted(spec_path)["censor_time"]
    assert censor.min() >= 4.0 and censor.max() <= 9.0
    default = _planted(make_multitask_cohort(tmp_path / "d", n=200, seed=1, volume_size=16))
    assert (default["censor_time"] < 4.0).sum() > 10  # lost to follow-up before the end


def test_a_batch_has_every_target_in_the_agreed_shape(cohort_spec: Path) -> None:
    cohort = load_cohort(load_spec(cohort_spec))
    dataset = CohortDataset(cohort, Preprocessor.fit(cohort), "train")
    batch = collate_samples([dataset[i] for i in range(6)])
    targets = batch["targets"]
    assert targets["lung_cancer"].shape == (6, 12) and targets["lung_cancer"].dtype == torch.float32
    assert targets["pack_years"].shape == (6, 3) and targets["pack_years"].dtype == torch.int64
    assert targets["lung_rads"].dtype == torch.int64 and targets["cardiac"].shape == (6,)
    assert batch["inputs"]["ct"]["voxels"].shape == (6, 1, 16, 16, 16)
    assert set(batch["available"]) == {"ct", "labs", "clinical", "note"}


# --------------------------------------------------------------------------------------------
# The planted rules: each learnable from its factors, not from another task's
# --------------------------------------------------------------------------------------------


def test_lung_cancer_risk_follows_nodule_smoking_age_not_ldl(cohort_spec: Path) -> None:
    manifest, planted = _manifest(cohort_spec), _planted(cohort_spec)
    times = pd.to_numeric(manifest["cancer_years"].replace("", np.nan))
    events = manifest["cancer_event"] == "1"
    known = (events | (times >= 3.0)).to_numpy() & times.notna().to_numpy()
    by_year_3 = (events & (times <= 3.0)).to_numpy()[known]
    factors = planted.loc[known, ["large_nodule", "pack_years", "age", "family_history"]]
    assert _fit_auroc(factors, by_year_3) > 0.7
    assert _fit_auroc(planted.loc[known, ["ldl"]], by_year_3) < 0.62
    assert _fit_auroc(planted.loc[known, ["emphysema"]], by_year_3) < 0.62


def test_cardiac_follows_ldl_and_chest_pain(cohort_spec: Path) -> None:
    manifest, planted = _manifest(cohort_spec), _planted(cohort_spec)
    rows = (manifest["cardiac"] != "").to_numpy()
    label = (manifest["cardiac"] == "1").to_numpy()[rows]
    assert _fit_auroc(planted.loc[rows, ["ldl", "chest_pain"]], label) > 0.8
    for wrong in ("pack_years", "large_nodule", "emphysema", "age"):
        assert _fit_auroc(planted.loc[rows, [wrong]], label) < 0.62, wrong
    # The risk is the stated rule and never certain, so no ldl range fixes the label.
    logit = (planted["ldl"] - 150) / 12 + planted["chest_pain"].astype(float)
    np.testing.assert_allclose(
        planted["cardiac_risk"], 0.05 + 0.9 / (1 + np.exp(-logit)), atol=1e-6
    )


def test_lung_rads_follows_the_nodule_radius_in_mm(cohort_spec: Path) -> None:
    manifest, planted = _manifest(cohort_spec), _planted(cohort_spec)
    rows = (manifest["lung_rads"] != "").to_numpy()
    category = manifest.loc[rows, "lung_rads"].astype(int).to_numpy()
    radius = planted.loc[rows, "nodule_radius_mm"].to_numpy()
    expected = 1 + (radius >= 4.5).astype(int) + (radius >= 5.5) + (radius >= 8.25)
    np.testing.assert_array_equal(category, expected)
    assert set(category) == {1, 2, 3, 4}
    wrong = LogisticRegression(max_iter=2000).fit(planted.loc[rows, ["ldl"]], category)
    assert wrong.score(planted.loc[rows, ["ldl"]], category) < 0.5


def test_fev1_follows_emphysema_smoking_breathlessness(cohort_spec: Path) -> None:
    manifest, planted = _manifest(cohort_spec), _planted(cohort_spec)
    rows = (manifest["fev1_percent"] != "").to_numpy()
    fev1 = manifest.loc[rows, "fev1_percent"].astype(float).to_numpy()

    def r2(columns: list[str]) -> float:
        x = planted.loc[rows, columns].astype(float).to_numpy()
        return float(r2_score(fev1, LinearRegression().fit(x, fev1).predict(x)))

    assert r2(["emphysema", "pack_years", "breathless"]) > 0.85
    assert r2(["ldl"]) < 0.05 and r2(["large_nodule"]) < 0.05


def test_pack_years_answer_is_stated_in_the_clinical_text(cohort_spec: Path) -> None:
    spec, manifest = load_spec(cohort_spec), _manifest(cohort_spec)
    serializer = TabularToText.from_modality(spec.modalities["clinical"])
    rows = manifest[(manifest["pack_years_answer"] != "") & (manifest["pack_years"] != "")]
    assert len(rows) > 150
    for _, row in rows.iterrows():
        text = serializer(row.to_dict()).text
        assert f"Smoking history of {row['pack_years_answer']} pack-years." in text
    answers = manifest.loc[manifest["pack_years_answer"] != "", "pack_years_answer"].astype(int)
    assert answers.between(0, 999).all() and (answers == 0).any() and (answers > 40).any()


def test_volumes_and_notes_show_their_factors(cohort_spec: Path) -> None:
    manifest, planted = _manifest(cohort_spec), _planted(cohort_spec).set_index("sample_id")
    rows = manifest[manifest["ct_volume"] != ""].head(60)
    dark_share, zooms = [], []
    for path in rows["ct_volume"]:
        image = nib.load(cohort_spec.parent / path)
        voxels = np.asarray(image.dataobj, dtype=np.float32)
        dark_share.append(float((voxels < np.median(voxels) - 50).mean()))
        zooms.append(image.header.get_zooms())
    emphysema = planted.loc[rows["sample_id"], "emphysema"].to_numpy()
    assert spearmanr(dark_share, emphysema).statistic > 0.9
    spacing = planted.loc[rows["sample_id"], ["spacing_x", "spacing_y", "spacing_z"]]
    np.testing.assert_allclose(zooms, spacing.to_numpy(), rtol=1e-5)
    for sample_id, note in zip(manifest["sample_id"], manifest["note"], strict=True):
        if note:
            assert any(p in note for p in CHEST_PAIN) == planted.loc[sample_id, "chest_pain"]
            assert any(p in note for p in BREATHLESS) == planted.loc[sample_id, "breathless"]


# --------------------------------------------------------------------------------------------
# The planted informative element
# --------------------------------------------------------------------------------------------


def test_ldl_is_the_informative_element_of_cardiac(cohort_spec: Path) -> None:
    spec, manifest = load_spec(cohort_spec), _manifest(cohort_spec)
    target, column = INFORMATIVE_ELEMENT["target"], INFORMATIVE_ELEMENT["column"]
    assert target in spec.targets
    assert column in spec.modalities[INFORMATIVE_ELEMENT["modality"]].numeric
    labelled = manifest[manifest[target] != ""]
    label = (labelled[target] == "1").to_numpy()
    # Every element a model sees, alone, on the rows where it is present (what a user sees).
    separation = {}
    numeric = [*spec.modalities["labs"].numeric, "age", "pack_years", "bmi"]
    for name in numeric:
        present = (labelled[name] != "").to_numpy()
        auroc = roc_auc_score(label[present], labelled.loc[present, name].astype(float))
        separation[name] = max(auroc, 1 - auroc)
    mentions = labelled["note"].map(lambda note: any(p in note for p in CHEST_PAIN))
    separation["note: chest pain"] = roc_auc_score(label, mentions)
    ranked = sorted(separation, key=separation.get, reverse=True)
    assert ranked[0] == column and separation[column] > 0.8
    assert separation[ranked[1]] < 0.65


# --------------------------------------------------------------------------------------------
# Determinism, settings, command line
# --------------------------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_cohort(tmp_path: Path) -> None:
    first = make_multitask_cohort(tmp_path / "a", n=30, seed=5, volume_size=16)
    second = make_multitask_cohort(tmp_path / "b", n=30, seed=5, volume_size=16)
    other = make_multitask_cohort(tmp_path / "c", n=30, seed=6, volume_size=16)
    for name in ("manifest.csv", "planted_features.csv", "spec.yaml"):
        assert (first.parent / name).read_bytes() == (second.parent / name).read_bytes()
    volumes = sorted(p.name for p in (first.parent / "volumes").iterdir())
    assert volumes == sorted(p.name for p in (second.parent / "volumes").iterdir())
    for name in volumes:
        a, b = first.parent / "volumes" / name, second.parent / "volumes" / name
        assert a.read_bytes() == b.read_bytes()
    assert (first.parent / "manifest.csv").read_bytes() != (
        other.parent / "manifest.csv"
    ).read_bytes()


def test_bad_settings_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(PolymodalError, match=r"censoring must be a yearly rate of at least 0"):
        make_multitask_cohort(tmp_path / "x", n=20, censoring=-0.1)
    with pytest.raises(PolymodalError, match=r"missing_rate must be in \[0, 1\) \(got 1.0\)"):
        make_multitask_cohort(tmp_path / "x", n=20, missing_rate=1.0)
    assert not (tmp_path / "x").exists()


def test_command_line_writes_the_multitask_cohort(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "mt"
    args = ["demo-data", str(out), "--multitask", "--n", "20", "--censoring", "0.2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"cohort spec: {out / 'spec.yaml'}" in result.output
    assert load_spec(out / "spec.yaml").name == "polymodal-demo-multitask"
    assert read_multitask_settings(out).censoring == 0.2
    refused = runner.invoke(app, [*args[:3], "--label-noise", "0.1", "--force"])
    assert isinstance(refused.exception, PolymodalError)
    assert "apply to the single-task demo, not --multitask" in str(refused.exception)
