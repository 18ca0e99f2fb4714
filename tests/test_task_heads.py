"""The M3FM heads (cumulative risk, digits): losses against hand-computed values, monotone vs
faithful hazards, masking, their metrics, and the path from a manifest to prediction columns."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from polymodal.config import ModelConfig
from polymodal.data.collate import collate_samples
from polymodal.data.dataset import CohortDataset
from polymodal.data.manifest import load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.spec import parse_spec
from polymodal.errors import ModelError
from polymodal.evaluation.bootstrap import bootstrap_metrics
from polymodal.evaluation.metrics import EvaluationError, compute_metrics
from polymodal.evaluation.tables import EvaluationResult
from polymodal.heads import create_head
from polymodal.model import build_model
from polymodal.predictor import _prediction_columns
from polymodal.targets.cumulative_risk import CumulativeRiskHead
from polymodal.targets.digits import DigitsHead
from polymodal.targets.predictions import PredictionCollector

HORIZONS = [1.0, 2.0, 3.0]


def risk_head(monotone: bool = True, in_dim: int = 4) -> CumulativeRiskHead:
    info = {"kind": "cumulative_risk", "horizons": HORIZONS, "monotone": monotone}
    head = create_head("risk", info, in_dim=in_dim)
    assert isinstance(head, CumulativeRiskHead)
    return head


def digits_head(num_digits: int = 3, in_dim: int = 4) -> DigitsHead:
    head = create_head("count", {"kind": "digits", "num_digits": num_digits}, in_dim=in_dim)
    assert isinstance(head, DigitsHead)
    return head


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ------------------------------------------------------------------------------------------------
# Cumulative risk
# ------------------------------------------------------------------------------------------------


def test_additive_hazards_give_the_cumulative_risk() -> None:
    # Hazards 0.5, −1, 2 and base −2: cumulative logits −1.5, −2.5, −0.5 (faithful).
    logits = torch.tensor([[0.5, -1.0, 2.0, -2.0]])
    faithful = risk_head(monotone=False).predict(logits)["risk"]
    assert faithful.shape == (1, 3)
    assert faithful[0].tolist() == pytest.approx([sigmoid(-1.5), sigmoid(-2.5), sigmoid(-0.5)])
    # Monotone: softplus hazards, so the −1 hazard still adds log(1 + e^−1) > 0.
    sp = [math.log1p(math.exp(h)) for h in (0.5, -1.0, 2.0)]
    cumulative = [-2.0 + sum(sp[: k + 1]) for k in range(3)]
    monotone = risk_head(monotone=True).predict(logits)["risk"]
    assert monotone[0].tolist() == pytest.approx([sigmoid(c) for c in cumulative], rel=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_monotone_risk_never_falls_with_the_horizon(seed: int) -> None:
    torch.manual_seed(seed)
    head = risk_head(monotone=True, in_dim=16)
    torch.nn.init.normal_(head.proj.weight, std=3.0)
    risk = head.predict(head(torch.randn(64, 16) * 3))["risk"]  # (64, 3)
    assert bool((risk[:, 1:] >= risk[:, :-1]).all())


def test_faithful_risk_can_fall_with_the_horizon() -> None:
    # The official M3FM layer applies no ReLU: negative hazards lower the later risks.
    risk = risk_head(monotone=False).predict(torch.tensor([[-3.0, -3.0, -3.0, 2.0]]))["risk"]
    assert bool((risk[:, 1:] < risk[:, :-1]).all())


def test_cumulative_risk_loss_uses_the_label_mask() -> None:
    head = risk_head(monotone=False)
    logits = torch.tensor([[0.0, 0.0, 0.0, 1.0], [1.0, -1.0, 2.0, 0.0]])
    # Sample 0: event by horizon 2, all known. Sample 1: censored at 1.5, known at horizon 1.
    target = torch.tensor([[0.0, 1.0, 1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]])
    loss = head.loss(logits, target, torch.tensor([True, True]))
    # Cumulative logits: sample 0 → 1, 1, 1; sample 1 → 1, 0, 2 (only the first is known).
    bce = lambda z, y: -math.log(sigmoid(z)) if y else -math.log(1 - sigmoid(z))  # noqa: E731
    expected = (bce(1, 0) + bce(1, 1) + bce(1, 1) + bce(1, 0)) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # An unlabelled sample's values are never read, even NaN.
    target[1] = float("nan")
    partial = head.loss(logits, target, torch.tensor([True, False]))
    assert partial.item() == pytest.approx((bce(1, 0) + 2 * bce(1, 1)) / 3, rel=1e-6)


def test_cumulative_risk_loss_equals_masked_sum_over_mask_sum() -> None:
    torch.manual_seed(0)
    head = risk_head(monotone=True)
    logits = torch.randn(8, 4)
    labels = (torch.rand(8, 3) > 0.5).float()
    known = (torch.rand(8, 3) > 0.3).float()
    loss = head.loss(logits, torch.cat([labels, known], dim=1), torch.ones(8, dtype=torch.bool))
    bce = F.binary_cross_entropy_with_logits(
        head.cumulative_logits(logits), labels, reduction="none"
    )
    assert loss.item() == pytest.approx(((bce * known).sum() / known.sum()).item(), rel=1e-6)


def test_nothing_known_gives_zero_loss_and_other_targets_still_train() -> None:
    torch.manual_seed(0)
    trunk = torch.nn.Linear(4, 8)
    risk = risk_head(in_dim=8)
    label = create_head("label", {"kind": "binary"}, in_dim=8)
    features = trunk(torch.randn(3, 4))
    # Every sample censored before the first horizon (labelled, but nothing known) ...
    censored_early = torch.zeros(3, 6)
    risk_loss = risk.loss(risk(features), censored_early, torch.ones(3, dtype=torch.bool))
    # ... or no sample labelled at all: both exactly 0.
    unlabelled = risk.loss(risk(features), torch.full((3, 6), float("nan")), torch.zeros(3).bool())
    assert risk_loss.item() == 0.0 and unlabelled.item() == 0.0
    label_loss = label.loss(label(features), torch.tensor([1.0, 0.0, 1.0]), torch.ones(3).bool())
    (risk_loss + unlabelled + label_loss).backward()
    assert risk.proj.weight.grad is not None and risk.proj.weight.grad.abs().sum() == 0
    assert trunk.weight.grad.abs().sum() > 0 and label.proj.weight.grad.abs().sum() > 0


def test_bad_cumulative_risk_info_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="'risk': a cumulative_risk target needs 'horizons'"):
        create_head("risk", {"kind": "cumulative_risk", "horizons": [2.0, 1.0]}, in_dim=4)
    with pytest.raises(ModelError, match="'count': a digits target needs 'num_digits' from 1"):
        create_head("count", {"kind": "digits", "num_digits": 9}, in_dim=4)


# ------------------------------------------------------------------------------------------------
# Digits
# ------------------------------------------------------------------------------------------------


def test_digits_round_trip_and_loss() -> None:
    head = digits_head(num_digits=3)
    target = torch.tensor([[0, 4, 2], [9, 0, 7]])
    logits = 8.0 * F.one_hot(target, 10).float()  # (2, 3, 10): the right digit wins
    predicted = head.predict(logits)
    assert predicted["digits"].tolist() == target.tolist()
    assert predicted["value"].dtype == torch.float32
    assert predicted["value"].tolist() == [42.0, 907.0]
    # Every digit: −log softmax = log(1 + 9·e^−2); averaged over digits and samples.
    loss = head.loss(logits / 4, target, torch.tensor([True, True]))
    assert loss.item() == pytest.approx(math.log1p(9 * math.exp(-2)), rel=1e-6)
    uniform = head.loss(torch.zeros(2, 3, 10), target, torch.tensor([True, True]))
    assert uniform.item() == pytest.approx(math.log(10), rel=1e-6)
    assert head.loss(logits, target, torch.tensor([False, False])).item() == 0.0


def test_digits_head_shapes_and_six_digits_in_half_precision() -> None:
    head = digits_head(num_digits=6, in_dim=5)
    assert head(torch.randn(4, 5)).shape == (4, 6, 10)
    head = head.half()
    logits = 8.0 * F.one_hot(torch.tensor([[9, 8, 7, 6, 5, 4]]), 10).half()
    assert head.predict(logits)["value"].tolist() == [987654.0]


# ------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------


def risk_case() -> tuple[np.ndarray, np.ndarray]:
    """Four samples over horizons [1, 2]: labels then mask, and the predicted risks."""
    y = np.array(
        [
            [1, 1, 1, 1],  # A: event by 1
            [0, 1, 1, 1],  # B: event between 1 and 2
            [0, 0, 1, 1],  # C: event-free through 2
            [0, 0, 1, 0],  # D: event-free at 1, censored before 2
        ],
        dtype=np.float32,
    )
    risk = np.array([[0.8, 0.9], [0.3, 0.7], [0.4, 0.8], [0.9, 0.95]])
    return y, risk


def test_cumulative_risk_metrics_on_a_hand_checked_case() -> None:
    y, risk = risk_case()
    metrics = compute_metrics("cumulative_risk", y, risk, horizons=[1.0, 2.0])
    # Horizon 1: case A (0.8) against B 0.3, C 0.4, D 0.9 → 2/3. Horizon 2 (D unknown): cases
    # A 0.9, B 0.7 against C 0.8 → 1/2.
    assert metrics["auroc[1]"] == pytest.approx(2 / 3)
    assert metrics["auroc[2]"] == pytest.approx(1 / 2)
    assert metrics["auroc_mean"] == pytest.approx(7 / 12)
    # Last-horizon risk; comparable pairs (A,B) (A,C) (A,D) (B,C); concordant (A,B) (A,C).
    assert metrics["c_index"] == pytest.approx(2 / 4)
    # Without horizons the per-horizon metrics are numbered from 1.
    assert compute_metrics("cumulative_risk", y, risk)["auroc[2]"] == pytest.approx(1 / 2)


def test_cumulative_risk_metrics_undefined_and_bad_inputs() -> None:
    y, risk = risk_case()
    y[:, 3] = 0  # nobody known at horizon 2
    metrics = compute_metrics("cumulative_risk", y, risk, horizons=[1.0, 2.0])
    assert math.isnan(metrics["auroc[2]"]) and math.isnan(metrics["auroc_mean"])
    assert metrics.reasons["auroc[2]"] == "no sample's status is known at horizon 2"
    with pytest.raises(EvaluationError, match=r"expected y_true \(n, 2K\)"):
        compute_metrics("cumulative_risk", y[:, :3], risk)
    with pytest.raises(EvaluationError, match="outside \\[0, 1\\]"):
        compute_metrics("cumulative_risk", y, risk * 3)


def test_digits_metrics_on_a_hand_checked_case() -> None:
    y = np.array([[0, 4, 2], [1, 2, 3], [9, 9, 9]])
    predicted = np.array([[0, 4, 2], [1, 3, 3], [0, 9, 9]])
    metrics = compute_metrics("digits", y, predicted)
    assert metrics["exact_match"] == pytest.approx(1 / 3)
    assert metrics["digit_accuracy[1]"] == pytest.approx(2 / 3)
    assert metrics["digit_accuracy[2]"] == pytest.approx(2 / 3)
    assert metrics["digit_accuracy[3]"] == pytest.approx(1.0)
    assert metrics["digit_accuracy_mean"] == pytest.approx(7 / 9)
    assert metrics["mae"] == pytest.approx((0 + 10 + 900) / 3)  # 42/42, 123/133, 999/99
    with pytest.raises(EvaluationError, match="y_true at row 0, digit 2 is 11"):
        compute_metrics("digits", np.array([[0, 11, 2]]), predicted[:1])


def test_bootstrap_and_tables_show_the_new_kinds() -> None:
    y, risk = risk_case()
    groups = np.array(["p1", "p2", "p3", "p4"])
    result = EvaluationResult()
    ci = bootstrap_metrics(
        "cumulative_risk", y, risk, groups, n_boot=20, horizons=[1.0, 2.0], seed=0
    )
    assert ci["auroc_mean"].point == pytest.approx(7 / 12) and ci.n_groups == 4
    result.add("risk", "cumulative_risk", ["labs"], ci)
    y_digits = np.array([[0, 4], [1, 2], [9, 9], [5, 5]])
    ci = bootstrap_metrics("digits", y_digits, y_digits, groups, n_boot=20)
    result.add("count", "digits", ["labs"], ci)
    markdown = result.to_markdown(per_class=True)
    assert "AUROC (mean over horizons)" in markdown and "C-index" in markdown
    assert "## risk (cumulative_risk, per horizon)" in markdown and "AUROC 2" in markdown
    assert "| labs | 4 (4) | 1.000 (1.000–1.000) |" in markdown  # count: exact match
    again = EvaluationResult.from_json(result.to_json())
    assert again.targets["count"].subsets[0].metrics["mae"].point == 0.0


# ------------------------------------------------------------------------------------------------
# End to end: manifest -> batch -> model -> loss, metrics and prediction columns
# ------------------------------------------------------------------------------------------------


def test_manifest_to_predictions_end_to_end(tmp_path) -> None:
    torch.manual_seed(0)
    pd.DataFrame(
        {
            "id": list("abcdef"),
            "split": ["train"] * 6,
            "age": ["60", "70", "65", "55", "50", "72"],
            "years": ["2", "3", "0.5", "1", "1.5", "4"],
            "cancer": ["1", "0", "0", "1", "1", "0"],
            "pack_years": ["42", "7", "", "120", "0", "999"],
        }
    ).to_csv(tmp_path / "manifest.csv", index=False)
    risk_spec = {"time_column": "years", "event_column": "cancer", "horizons": HORIZONS}
    spec = parse_spec(
        {
            "manifest": "manifest.csv",
            "id_column": "id",
            "split": {"column": "split"},
            "targets": {
                "risk": {"kind": "cumulative_risk", **risk_spec},
                "count": {"kind": "digits", "column": "pack_years"},
            },
            "modalities": {"labs": {"kind": "tabular", "numeric": ["age"]}},
        },
        base_dir=tmp_path,
    )
    cohort = load_cohort(spec)
    prep = Preprocessor.fit(cohort)
    infos = {t: prep.target_info(t) for t in prep.targets}
    model = build_model(ModelConfig(core="concat", dim=8), {"labs": prep.input_info("labs")}, infos)
    dataset = CohortDataset(cohort, prep, "train", on_error="fail")
    batch = collate_samples([dataset[i] for i in range(len(dataset))])
    outputs = model(batch)
    assert outputs["logits"]["risk"].shape == (6, 4)
    assert outputs["logits"]["count"].shape == (6, 3, 10)
    total, per_target = model.loss(batch, outputs)
    assert torch.isfinite(total) and set(per_target) == {"risk", "count"}
    total.backward()
    assert model.heads["risk"].proj.weight.grad.abs().sum() > 0

    model.eval()
    collector = PredictionCollector(infos)
    collector.add(batch, model.predict(batch))
    y_risk, risk, _ = collector.arrays("risk")
    assert y_risk.shape == (6, 6) and risk.shape == (6, 3)
    metrics = compute_metrics("cumulative_risk", y_risk, risk, horizons=infos["risk"]["horizons"])
    assert set(metrics) >= {"auroc_mean", "c_index", "auroc[1]", "auroc[2]", "auroc[3]"}
    y_count, digits, _ = collector.arrays("count")
    assert y_count.shape == digits.shape == (5, 3)  # row c has no pack-years
    assert set(compute_metrics("digits", y_count, digits)) >= {"exact_match", "mae"}

    columns = _prediction_columns("risk", infos["risk"], collector.predictions("risk"))
    assert list(columns) == ["risk_risk_1", "risk_risk_2", "risk_risk_3"]
    columns = _prediction_columns("count", infos["count"], collector.predictions("count"))
    assert list(columns) == ["count_value"] and columns["count_value"].dtype == np.int64
    values = collector.predictions("count")["digits"] @ np.array([100, 10, 1])
    assert columns["count_value"].tolist() == values.tolist()
