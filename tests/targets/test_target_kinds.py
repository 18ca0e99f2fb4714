"""Every registered target kind, from its own example: no table of kinds is kept here.

A new kind (one file in polymodal/targets plus its import) is covered by these tests as it is.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import TypeAdapter

from polymodal import targets
from polymodal.data.spec import Target
from polymodal.errors import ModelError, SpecError
from polymodal.evaluation.metrics import compute_metrics
from polymodal.targets.base import LabelFrame, TargetKind
from polymodal.targets.checks import MISSING_REASON
from polymodal.training.distill import distillation_loss

KINDS = targets.TARGETS.names()
TARGET = TypeAdapter(Target)
IN_DIM = 8


class Fitted:
    """One kind's example fitted, encoded and run through an untrained head."""

    def __init__(self, name: str) -> None:
        self.kind: TargetKind = targets.get(name)
        self.example = self.kind.example()
        self.cfg = TARGET.validate_python(self.example.spec)
        self.frame = self.example.frame()
        self.ids = pd.Series([f"r{i}" for i in range(len(self.frame))])
        self.state = self.kind.fit("targets.y", self.cfg, self.frame, self.ids)
        self.info = self.kind.info(self.cfg, self.state)
        encoded = [self.kind.encode(self.cfg, self.state, cells) for cells in self.example.cells]
        self.mask = torch.tensor([e is not None for e in encoded])
        empty = self.kind.empty(self.cfg)
        self.target = torch.stack([empty if e is None else e for e in encoded])
        torch.manual_seed(0)
        self.head = targets.create_head("y", self.info, in_dim=IN_DIM)
        self.features = torch.randn(len(encoded), IN_DIM, requires_grad=True)
        self.logits = self.head(self.features)


@pytest.fixture(params=KINDS)
def fitted(request: pytest.FixtureRequest) -> Fitted:
    return Fitted(request.param)


def test_the_registry_names_each_kind_as_its_spec_does() -> None:
    assert len(KINDS) >= 8
    for name in KINDS:
        kind = targets.get(name)
        assert kind.name == name
        assert kind.spec.model_fields["kind"].annotation.__args__ == (name,)
    with pytest.raises(
        SpecError, match=r"unknown target kind 'grade'.*binary, .*targets\.<name>\.kind"
    ):
        targets.get("grade")


def test_spec_round_trips_through_its_json(fitted: Fitted) -> None:
    dumped = fitted.cfg.model_dump(mode="json")
    assert TARGET.validate_python(dumped) == fitted.cfg
    for key, value in fitted.example.spec.items():
        assert dumped[key] == value
    # A typo in a key is an error, not a silently ignored setting.
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        TARGET.validate_python({**fitted.example.spec, "colum": "x"})
    assert set(fitted.kind.columns(fitted.cfg)) <= set(fitted.frame.columns)


def test_fitted_state_is_json_and_reads_back_typed(fitted: Fitted) -> None:
    raw = json.loads(json.dumps(fitted.state.model_dump(mode="json")))
    assert fitted.kind.read_state(raw) == fitted.state
    assert isinstance(fitted.state, fitted.kind.state)


def test_missing_label_encodes_as_none_and_empty_matches_the_encoded_shape(fitted: Fitted) -> None:
    assert not fitted.mask.all() and fitted.mask.sum() >= 2
    empty = fitted.kind.empty(fitted.cfg)
    labelled = fitted.target[fitted.mask]
    assert empty.shape == labelled.shape[1:] and empty.dtype == labelled.dtype
    assert fitted.info["kind"] == fitted.kind.name and "n_outputs" in fitted.info


def test_loss_is_finite_and_backpropagates(fitted: Fitted) -> None:
    loss = fitted.head.loss(fitted.logits, fitted.target, fitted.mask)
    assert loss.dim() == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    assert fitted.features.grad is not None and torch.isfinite(fitted.features.grad).all()
    assert fitted.features.grad[fitted.mask].abs().sum() > 0


def test_a_missing_label_is_masked_out_of_the_loss(fitted: Fitted) -> None:
    loss = fitted.head.loss(fitted.logits, fitted.target, fitted.mask)
    garbage = fitted.target.clone()
    garbage[~fitted.mask] = garbage[fitted.mask][0] if garbage.is_floating_point() else 1
    if garbage.is_floating_point():
        garbage[~fitted.mask] = float("nan")
    assert torch.equal(loss, fitted.head.loss(fitted.logits, garbage, fitted.mask))
    none = fitted.head.loss(fitted.logits, garbage, torch.zeros_like(fitted.mask))
    assert none == 0 and none.requires_grad


def test_prediction_columns_name_the_target_and_have_a_row_each(fitted: Fitted) -> None:
    outputs = {k: v.detach().numpy() for k, v in fitted.head.predict(fitted.logits).items()}
    assert fitted.kind.prediction in outputs
    columns = fitted.kind.prediction_columns("y", fitted.info, outputs)
    assert columns and all(c.startswith("y_") for c in columns)
    assert all(len(values) == len(fitted.frame) for values in columns.values())


def test_metrics_include_the_headline_and_its_direction(fitted: Fitted) -> None:
    outputs = {k: v.detach().numpy() for k, v in fitted.head.predict(fitted.logits).items()}
    mask = fitted.mask.numpy()
    y = fitted.kind.scored_labels(fitted.info, fitted.target.numpy()[mask])
    metrics = compute_metrics(
        fitted.kind.name,
        y,
        outputs[fitted.kind.prediction][mask],
        classes=fitted.info.get("classes"),
        horizons=fitted.info.get("horizons"),
    )
    headline, mode = targets.headline(fitted.kind.name)
    assert headline in fitted.kind.table_metrics
    assert headline in metrics
    assert math.isfinite(metrics[headline]) or headline in metrics.reasons
    assert mode == ("min" if headline in fitted.kind.lower_is_better else "max")
    assert all(m in fitted.kind.headers for m in fitted.kind.table_metrics)


def test_distillation_loss_is_zero_for_the_teachers_own_logits(fitted: Fitted) -> None:
    logits = fitted.logits.detach()
    same = distillation_loss(fitted.info, logits.clone(), logits, temperature=2.0)
    assert same.abs() < 1e-6
    other = distillation_loss(
        fitted.info, logits + torch.randn_like(logits), logits, temperature=2.0
    )
    assert other > 0


def test_explanation_score_is_one_number_per_sample(fitted: Fitted) -> None:
    predictions = fitted.head.predict(fitted.logits.detach())
    reference = fitted.kind.reference_index({k: v[:1] for k, v in predictions.items()})
    score = fitted.kind.explanation_score(predictions, reference)
    assert score.shape == (len(fitted.frame),) and torch.isfinite(score).all()
    assert fitted.kind.score_description(fitted.info, reference)


def test_label_checks_warn_on_the_missing_label_only(fitted: Fitted) -> None:
    problems: list[tuple] = []

    def add(pos, column, reason, action, *, warn=False):
        problems.append((pos, column, reason, warn))

    train = np.ones(len(fitted.frame), dtype=bool)
    labels = LabelFrame("y", fitted.frame, train, add)
    usable, shown = fitted.kind.check_labels(fitted.cfg, labels)
    missing = np.flatnonzero(~fitted.mask.numpy())
    assert usable.isna().to_numpy().nonzero()[0].tolist() == missing.tolist()
    assert all(warn and reason == MISSING_REASON for _, _, reason, warn in problems)
    assert {pos for pos, *_ in problems} == set(missing)
    assert sum(fitted.kind.count_labels(shown).values()) > 0


def test_an_unknown_label_is_an_error_naming_the_row(fitted: Fitted) -> None:
    problems: list[tuple] = []
    frame = fitted.frame.copy()
    frame.iloc[0, 0] = "banana"
    train = np.arange(len(frame)) > 0  # a class never seen in training is unknown too
    labels = LabelFrame("y", frame, train, lambda *a, warn=False: problems.append(a))
    usable, _ = fitted.kind.check_labels(fitted.cfg, labels)
    assert usable.iat[0] is None
    assert any(pos == 0 and column == frame.columns[0] for pos, column, *_ in problems)


def test_head_info_that_does_not_fit_the_kind_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="unknown kind 'grade'; known kinds: binary"):
        targets.create_head("y", {"kind": "grade"}, in_dim=4)
