"""evaluate keeps its per-sample predictions as Parquet: every metric is recomputed from the file
alone, and `polymodal compare` reads two of them end to end on a tiny cohort."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from polymodal.cli import app
from polymodal.data.manifest import load_cohort
from polymodal.evaluation import read_predictions
from polymodal.evaluation.evaluate import evaluate_model
from polymodal.evaluation.kept_predictions import subset_name
from polymodal.evaluation.metrics import EvaluationError, compute_metrics
from polymodal.predictor import Predictor
from training.conftest import tiny_run

MODALITIES = ["lesion", "labs"]  # 3 subsets keep the test fast
runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def evaluated(run: Path, tmp_path_factory: pytest.TempPathFactory):
    predictor = Predictor.load(run / "model")
    cohort = load_cohort(predictor.loaded.spec)
    path = tmp_path_factory.mktemp("kept") / "eval.predictions.parquet"
    result = evaluate_model(
        predictor,
        cohort,
        split="test",
        modalities=MODALITIES,
        n_boot=5,
        progress=False,
        predictions_path=path,
    )
    return result, read_predictions(path), cohort


def test_every_metric_is_recomputed_from_the_file_alone(evaluated) -> None:
    result, kept, _ = evaluated
    info = kept.targets["label"]
    assert info["kind"] == "binary"
    assert kept.subsets == [("lesion", "labs"), ("lesion",), ("labs",)]
    for subset_result in result.targets["label"].subsets:
        rows = kept.arrays(subset_result.modalities, "label")
        again = compute_metrics(
            info["kind"],
            rows.y_true,
            rows.prediction,
            classes=info["classes"],
            specificity=kept.settings["specificity"],
        )
        assert len(rows.ids) == subset_result.n_samples
        assert len(set(rows.groups)) == subset_result.n_groups
        for name, ci in subset_result.metrics.items():
            assert (math.isnan(ci.point) and math.isnan(again[name])) or again[
                name
            ] == pytest.approx(ci.point, abs=1e-12), (subset_result.label, name)


def test_the_schema_holds_ids_groups_availability_labels_and_scores(evaluated) -> None:
    _, kept, cohort = evaluated
    frame = kept.frame()
    test_rows = cohort.indices("test")
    assert len(frame) == 3 * len(test_rows)  # one row per (subset, sample)
    for column in (
        "subset",
        "sample_id",
        "group_id",
        "label[label]",
        "score[label]",
        "label_probability",  # the readable column `polymodal predict` writes
        *(f"available[{m}]" for m in kept.modalities),
    ):
        assert column in frame.columns, column
    assert set(kept.modalities) == {"lesion", "ct", "labs", "note", "vitals"}
    assert frame["subset"].unique().tolist() == [subset_name(s) for s in kept.subsets]
    one_subset = frame[frame["subset"] == "lesion + labs"]
    ids = cohort.frame.iloc[test_rows][cohort.spec.id_column].astype(str).tolist()
    assert one_subset["sample_id"].tolist() == ids
    assert one_subset["group_id"].tolist() == cohort.groups.iloc[test_rows].astype(str).tolist()
    # availability is the data's, the same in every subset; missing modalities do occur
    lesion = frame.groupby("subset", sort=False)["available[lesion]"].apply(list).tolist()
    assert lesion[0] == lesion[1] == lesion[2] and not all(lesion[0])
    np.testing.assert_array_equal(one_subset["score[label]"], one_subset["label_probability"])
    assert kept.settings["split"] == "test" and kept.settings["cohort"] == "polymodal-demo"


def test_a_file_that_is_not_kept_predictions_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="not found"):
        read_predictions(tmp_path / "missing.parquet")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(EvaluationError, match="not a readable Parquet file"):
        read_predictions(tmp_path / "junk.parquet")


def test_evaluate_then_compare_end_to_end(run: Path, tmp_path: Path) -> None:
    for name, extra in (("plain", []), ("tta", ["--tta"])):
        evaluated = runner.invoke(
            app,
            [
                "evaluate",
                str(run / "model"),
                "--n-boot",
                "5",
                "--no-subsets",
                "--json",
                str(tmp_path / name / "eval" / "eval.json"),
                *extra,
            ],
        )
        assert evaluated.exit_code == 0, evaluated.output
        assert "eval.predictions.parquet" in evaluated.output
        assert (tmp_path / name / "eval" / "eval.predictions.parquet").is_file()
    out = tmp_path / "cmp"
    compared = runner.invoke(
        app,
        [
            "compare",
            str(tmp_path / "plain" / "eval"),
            str(tmp_path / "tta" / "eval"),
            "--out",
            str(out),
            "--n-boot",
            "200",
        ],
    )
    assert compared.exit_code == 0, compared.output
    saved = json.loads((out / "compare.json").read_text())
    assert list(saved["models"]) == ["plain", "tta"]
    metrics = {r["metric"] for r in saved["rows"]}
    assert {"auroc", "accuracy", "brier"} <= metrics
    auroc = next(r for r in saved["rows"] if r["metric"] == "auroc")
    assert auroc["subset"] == "lesion + ct + labs + note + vitals"
    assert auroc["delong_p"] is not None and auroc["p_holm"] >= auroc["p"]
    assert "independent rows" in saved["notes"][0]  # the demo cohort has patients with several rows
    assert "| plain − tta |" in (out / "compare.md").read_text()


def test_unlabelled_rows_are_null_and_class_probabilities_are_one_list_per_row(
    tmp_path: Path,
) -> None:
    import pyarrow as pa
    import torch

    from polymodal.evaluation.kept_predictions import predictions_table, write_predictions
    from polymodal.targets.predictions import PredictionCollector

    infos = {
        "grade": {"kind": "multiclass", "classes": ["low", "mid", "high"], "n_outputs": 3},
        "size": {"kind": "regression", "n_outputs": 1, "mean": None, "std": None},
    }
    probabilities = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
    batch = {
        "ids": ["a", "b", "c"],
        "groups": ["p1", "p1", "p2"],
        "targets": {"grade": torch.tensor([0, 2, 1]), "size": torch.tensor([1.5, 0.0, 2.5])},
        "target_mask": {
            "grade": torch.tensor([True, True, False]),
            "size": torch.tensor([True, False, True]),
        },
    }
    predictions = {
        "grade": {"probabilities": probabilities, "label": probabilities.argmax(dim=1)},
        "size": {"value": torch.tensor([1.0, 2.0, 3.0])},
    }
    collectors = {}
    for subset in [("x", "y"), ("x",)]:
        collectors[subset] = PredictionCollector(infos)
        collectors[subset].add(batch, predictions)
    available = {"x": np.array([True, True, False]), "y": np.array([True, False, True])}
    path = tmp_path / "p.parquet"
    write_predictions(path, predictions_table(collectors, available, infos, {"split": "test"}))
    kept = read_predictions(path)
    assert kept.table.num_rows == 6
    assert pa.types.is_fixed_size_list(kept.table.schema.field("score[grade]").type)
    assert kept.table["label[grade]"].to_pylist()[:3] == [0, 2, None]
    assert kept.table["label[size]"].to_pylist()[:3] == [1.5, None, 2.5]
    assert kept.table["grade_predicted"].to_pylist()[:3] == ["low", "high", "mid"]
    grade = kept.arrays(("x",), "grade")
    assert grade.ids.tolist() == ["a", "b"] and grade.groups.tolist() == ["p1", "p1"]
    np.testing.assert_allclose(grade.prediction, probabilities[:2].numpy())
    assert grade.y_true.tolist() == [0, 2]
    size = kept.arrays(("x", "y"), "size")
    assert size.ids.tolist() == ["a", "c"] and size.prediction.tolist() == [1.0, 3.0]
    with pytest.raises(EvaluationError, match="was not evaluated"):
        kept.arrays(("y",), "size")
