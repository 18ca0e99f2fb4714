"""The ordinal kind: ordered grades with a cumulative-link head, trained and predicted end to end.

polymodal/targets/ordinal.py is the only file this kind adds (plus its import in
targets/__init__.py); the registry-wide tests in test_target_kinds.py cover it as every kind.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import cohen_kappa_score

from polymodal import targets
from polymodal.data.spec import load_spec, parse_spec
from polymodal.errors import SpecError
from polymodal.evaluation.metrics import compute_metrics
from polymodal.predictor import Predictor
from polymodal.targets.ordinal import CumulativeLinkHead, median_grade
from polymodal.training.fit import fit
from polymodal.training.run_config import load_run_config

GRADES = ["mild", "moderate", "severe"]


def test_thresholds_stay_ordered_and_grade_probabilities_sum_to_one() -> None:
    torch.manual_seed(0)
    head = CumulativeLinkHead(in_dim=4, n_classes=4)
    with torch.no_grad():
        head.gaps.copy_(torch.tensor([-5.0, 3.0]))  # any raw value: the thresholds still rise
    assert (head.thresholds().diff() > 0).all()
    predicted = head.predict(head(torch.randn(6, 4) * 5))
    probabilities = predicted["probabilities"]
    assert probabilities.shape == (6, 4) and (probabilities >= 0).all()
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(6))
    expected = (probabilities * torch.arange(4.0)).sum(-1)
    torch.testing.assert_close(predicted["score"], expected)  # the expected grade


def test_the_loss_falls_as_the_score_moves_towards_the_true_grade() -> None:
    head = CumulativeLinkHead(in_dim=1, n_classes=3)
    with torch.no_grad():
        head.proj.weight.fill_(1.0)
        head.proj.bias.zero_()
    severe = torch.tensor([2])
    mask = torch.tensor([True])
    losses = [
        float(head.loss(head(torch.tensor([[s]])), severe, mask).detach()) for s in (-2.0, 0.0, 4.0)
    ]
    assert losses[0] > losses[1] > losses[2]


def test_metrics_score_the_median_grade_and_qwk_is_the_headline() -> None:
    prob = np.array([[0.6, 0.3, 0.1], [0.1, 0.5, 0.4], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]])
    # P(grade > 0) / P(grade > 1): 0.4/0.1, 0.9/0.4, 0.9/0.7, 0.7/0.4 → medians 0, 1, 2, 1 (not
    # the most probable grade 2 of the last row).
    assert median_grade(prob).tolist() == [0, 1, 2, 1]
    y = np.array([0, 2, 2, 1])
    metrics = compute_metrics("ordinal", y, prob, classes=GRADES)
    assert metrics["mae"] == pytest.approx(0.25)
    assert metrics["accuracy"] == pytest.approx(0.75)
    kappa = cohen_kappa_score(y, [0, 1, 2, 1], weights="quadratic")
    assert metrics["qwk"] == pytest.approx(kappa)
    assert targets.headline("ordinal") == ("qwk", "max")
    assert targets.lower_is_better("mae")


def test_the_grades_must_be_given_in_order_and_once() -> None:
    base = {"name": "c", "manifest": "m.csv", "id_column": "id", "split": {"column": "s"}}
    base["modalities"] = {"labs": {"kind": "tabular", "numeric": ["age"]}}
    with pytest.raises(SpecError, match=r"targets\.grade\.classes: Field required"):
        parse_spec({**base, "targets": {"grade": {"kind": "ordinal", "column": "g"}}})
    repeated = {"kind": "ordinal", "column": "g", "classes": ["mild", "mild"]}
    with pytest.raises(SpecError, match=r"targets\.grade\.classes: each grade must appear once"):
        parse_spec({**base, "targets": {"grade": repeated}})


def write_cohort(root: Path, n: int = 48) -> Path:
    """A tabular cohort whose grade rises with ``severity``; a few grades are blank."""
    rng = np.random.default_rng(0)
    severity = rng.normal(size=n)
    grade = np.digitize(severity + 0.3 * rng.normal(size=n), [-0.5, 0.5])
    frame = pd.DataFrame(
        {
            "id": [f"p{i}" for i in range(n)],
            "split": ["train"] * (n - 16) + ["val"] * 8 + ["test"] * 8,
            "severity": severity.round(3),
            "age": rng.integers(40, 80, size=n),
            "grade": [("" if i % 11 == 5 else GRADES[g]) for i, g in enumerate(grade)],
        }
    )
    root.mkdir(parents=True, exist_ok=True)
    frame.to_csv(root / "manifest.csv", index=False)
    spec = {
        "name": "graded",
        "manifest": "manifest.csv",
        "id_column": "id",
        "split": {"column": "split"},
        "targets": {"grade": {"kind": "ordinal", "column": "grade", "classes": GRADES}},
        "modalities": {"labs": {"kind": "tabular", "numeric": ["severity", "age"]}},
    }
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    return root / "spec.yaml"


def test_an_ordinal_target_trains_and_predicts_end_to_end(tmp_path: Path) -> None:
    spec = load_spec(write_cohort(tmp_path / "cohort"))
    run = load_run_config(
        None,
        [
            "model.dim=16",
            "train.max_epochs=1",
            "train.batch_size=8",
            "train.early_stopping_patience=null",
        ],
    )
    fit(spec, tmp_path / "run", run, progress=False)
    metrics = pd.read_csv(tmp_path / "run" / "logs" / "metrics.csv")
    assert metrics["val/grade/mae"].dropna().between(0, 2).all()
    # Checkpoints are chosen by the kind's headline.
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["monitor"] == "val/grade/qwk"

    table = Predictor.load(tmp_path / "run" / "model").predict_manifest(spec.manifest_path)
    assert len(table) == 48
    probability_columns = [f"grade_probability_{g}" for g in GRADES]
    np.testing.assert_allclose(table[probability_columns].sum(axis=1), 1.0, rtol=1e-5)
    assert set(table["grade_predicted"]) <= set(GRADES)
