"""Heads: losses against hand-computed values, masking of unlabeled samples, predictions."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from polymodal.errors import ModelError
from polymodal.heads import create_head
from polymodal.targets.time_to_event import CoxHead, DiscreteTimeHead

ALL = torch.tensor([True, True])


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def head(kind: str, **info) -> torch.nn.Module:
    return create_head("y", {"kind": kind, "n_outputs": 1, **info}, in_dim=4)


def test_binary_loss_and_class_weights() -> None:
    logits, target = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0])
    # BCE: −log σ(0) = log 2; −log(1 − σ(2)) = softplus(2)
    plain = head("binary").loss(logits, target, ALL)
    assert plain.item() == pytest.approx((math.log(2) + softplus(2)) / 2, rel=1e-6)
    # [w_negative, w_positive] = [1, 3]: weighted mean (3·log 2 + 1·softplus(2)) / 4
    weighted = head("binary", class_weights=[1.0, 3.0]).loss(logits, target, ALL)
    assert weighted.item() == pytest.approx((3 * math.log(2) + softplus(2)) / 4, rel=1e-6)
    # Up-weighting the positive sample, whose loss is the smaller one here, lowers the mean.
    assert weighted < plain
    probability = head("binary").predict(torch.tensor([0.0, math.log(3)]))["probability"]
    assert torch.allclose(probability, torch.tensor([0.5, 0.75]))


def test_multiclass_loss_class_weights_and_prediction() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    target = torch.tensor([0, 1])
    info = {"n_outputs": 3, "classes": ["a", "b", "c"]}
    loss_b = 2 + math.log(1 + 2 * math.exp(-2))  # −log softmax([2, 0, 0])[1]
    plain = head("multiclass", **info).loss(logits, target, ALL)
    assert plain.item() == pytest.approx((math.log(3) + loss_b) / 2, rel=1e-6)
    weighted = head("multiclass", **info, class_weights=[1.0, 4.0, 1.0]).loss(logits, target, ALL)
    assert weighted.item() == pytest.approx((math.log(3) + 4 * loss_b) / 5, rel=1e-6)
    # Same convention as torch's weighted cross-entropy.
    expected = F.cross_entropy(logits, target, weight=torch.tensor([1.0, 4.0, 1.0]))
    assert torch.allclose(weighted, expected)
    predicted = head("multiclass", **info).predict(logits)
    assert torch.allclose(predicted["probabilities"].sum(-1), torch.ones(2))
    assert predicted["label"].tolist() == [0, 0]


def test_multilabel_loss_averages_labels_then_samples() -> None:
    logits = torch.tensor([[0.0, 2.0], [0.0, 0.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    loss = head("multilabel", n_outputs=2).loss(logits, target, ALL)
    assert loss.item() == pytest.approx(((math.log(2) + softplus(2)) / 2 + math.log(2)) / 2)
    assert head("multilabel", n_outputs=2).predict(logits)["probabilities"].shape == (2, 2)


def test_regression_loss_and_destandardised_prediction() -> None:
    reg = head("regression", mean=10.0, std=2.0)
    loss = reg.loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0]), ALL)
    assert loss.item() == pytest.approx((1 + 4) / 2)
    assert reg.predict(torch.tensor([1.0, 3.0]))["value"].tolist() == [12.0, 16.0]


@pytest.mark.parametrize(
    ("kind", "info", "logits", "garbage"),
    [
        ("binary", {}, torch.randn(3), torch.tensor([float("nan"), 5.0, -1.0])),
        ("multiclass", {"n_outputs": 3}, torch.randn(3, 3), torch.tensor([-1, 99, 2])),
        ("multilabel", {"n_outputs": 2}, torch.randn(3, 2), torch.full((3, 2), float("nan"))),
        ("regression", {}, torch.randn(3), torch.full((3,), float("nan"))),
        (
            "time_to_event",
            {"bins": [1.0, 2.0]},
            torch.randn(3, 2),
            torch.full((3, 2), float("nan")),
        ),
        ("time_to_event", {"loss": "cox"}, torch.randn(3), torch.full((3, 2), float("nan"))),
    ],
)
def test_no_labels_gives_exact_zero_with_a_grad_path(kind, info, logits, garbage) -> None:
    h = head(kind, **info)
    logits = logits.clone().requires_grad_()
    loss = h.loss(logits, garbage, torch.zeros(3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and torch.equal(logits.grad, torch.zeros_like(logits))


def test_unlabeled_samples_do_not_count() -> None:
    h = head("regression")
    mask = torch.tensor([True, False])
    loss = h.loss(torch.tensor([1.0, 100.0]), torch.tensor([0.0, float("nan")]), mask)
    assert loss.item() == pytest.approx(1.0)


def test_discrete_time_loss_matches_hand_computation() -> None:
    # bins are upper edges: bin 0 = (−∞, 1], bin 1 = (1, 2], bin 2 = (2, 3]
    h = head("time_to_event", bins=[1.0, 2.0, 3.0], n_outputs=3)
    assert isinstance(h, DiscreteTimeHead)
    a, b, c = 0.5, -1.0, 0.2
    logits = torch.tensor([[a, b, c]] * 4)
    target = torch.tensor([[1.5, 1.0], [2.5, 0.0], [9.0, 1.0], [2.0, 0.0]])
    losses = [
        softplus(a) + softplus(-b),  # event at 1.5 (bin 1): survived bin 0, event in bin 1
        softplus(a) + softplus(b),  # censored at 2.5: bins ending ≤ 2.5 survived (0, 1)
        softplus(a) + softplus(b) + softplus(c),  # event after the horizon: survived all
        softplus(a) + softplus(b),  # censored exactly at the edge 2: bins 0 and 1 survived
    ]
    loss = h.loss(logits, target, torch.ones(4, dtype=torch.bool))
    assert loss.item() == pytest.approx(sum(losses) / 4, rel=1e-6)


def test_discrete_time_predictions_are_monotone() -> None:
    # Seeded: an unlucky draw of hazards near 1 leaves survivals below allclose's tolerance.
    torch.manual_seed(0)
    h = head("time_to_event", bins=[1.0, 2.0, 4.0, 8.0])
    predicted = h.predict(torch.randn(5, 4) * 3)
    survival, risk = predicted["survival"], predicted["cumulative_risk"]
    assert survival.shape == (5, 4)
    assert (survival[:, 1:] <= survival[:, :-1]).all() and (risk[:, 1:] >= risk[:, :-1]).all()
    assert ((survival > 0) & (survival < 1)).all()
    assert torch.allclose(risk, 1 - survival) and torch.allclose(predicted["risk"], risk[:, -1])
    hazard = predicted["hazard"]
    assert torch.allclose(survival[:, 1], (1 - hazard[:, 0]) * (1 - hazard[:, 1]))


def test_cox_loss_matches_hand_computation_for_three_samples() -> None:
    h = head("time_to_event", loss="cox")
    assert isinstance(h, CoxHead)
    eta = torch.tensor([0.1, 0.5, -0.2])
    target = torch.tensor([[1.0, 1.0], [2.0, 0.0], [3.0, 1.0]])
    e = [math.exp(v) for v in eta.tolist()]
    # events at t=1 (risk set: all three) and t=3 (risk set: itself)
    expected = -((0.1 - math.log(sum(e))) + (-0.2 - math.log(e[2]))) / 2
    loss = h.loss(eta, target, torch.ones(3, dtype=torch.bool))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # Breslow ties: two events at t=1 share the full risk set.
    tied = torch.tensor([[1.0, 1.0], [1.0, 1.0], [3.0, 0.0]])
    expected_tied = -((0.1 - math.log(sum(e))) + (0.5 - math.log(sum(e)))) / 2
    loss_tied = h.loss(eta, tied, torch.ones(3, dtype=torch.bool))
    assert loss_tied.item() == pytest.approx(expected_tied, rel=1e-6)
    # An unlabeled sample leaves the risk sets: only samples 0 and 2 remain.
    masked = h.loss(eta, target, torch.tensor([True, False, True]))
    expected_masked = -((0.1 - math.log(e[0] + e[2])) + (-0.2 - math.log(e[2]))) / 2
    assert masked.item() == pytest.approx(expected_masked, rel=1e-6)
    assert torch.equal(h.predict(eta)["risk"], eta)


def test_forward_shapes() -> None:
    features = torch.randn(2, 4)
    assert head("binary")(features).shape == (2,)
    assert head("multiclass", n_outputs=3)(features).shape == (2, 3)
    assert head("time_to_event", bins=[1.0, 2.0])(features).shape == (2, 2)
    assert head("time_to_event", loss="cox")(features).shape == (2,)


@pytest.mark.parametrize(
    ("info", "message"),
    [
        ({"kind": "grade"}, "target 'y': unknown kind 'grade'; known kinds: binary"),
        ({"kind": "time_to_event", "bins": None}, "needs 'bins'"),
        ({"kind": "time_to_event", "bins": [2.0, 1.0]}, "strictly increasing"),
        ({"kind": "time_to_event", "loss": "aft"}, "loss 'aft' is not one of discrete, cox"),
        ({"kind": "multiclass", "n_outputs": 3, "class_weights": [1.0]}, "3 non-negative"),
        ({"kind": "multiclass", "n_outputs": 1}, "at least 2 classes"),
        ({"kind": "multilabel", "n_outputs": 2, "class_weights": [1, 2]}, "not supported"),
    ],
)
def test_bad_target_info_is_a_model_error(info: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        create_head("y", info, in_dim=4)
