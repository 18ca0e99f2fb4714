"""Every registered target kind's recalibration and conformal hooks, from its own example: a
kind that lists a method can be fitted with it, and one that gives class probabilities or a
point value gets sets or intervals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polymodal.calibration.conformal import ConformalConfig, calibrate, conformal_targets, family
from polymodal.calibration.recalibration import METHODS, calibrated_targets, fit_target
from polymodal.errors import SpecError

from .test_target_kinds import KINDS, Fitted


@pytest.fixture(params=KINDS)
def fitted(request: pytest.FixtureRequest) -> Fitted:
    return Fitted(request.param)


def labelled(fitted: Fitted) -> tuple[torch.Tensor, torch.Tensor]:
    return fitted.logits.detach()[fitted.mask], fitted.target[fitted.mask]


def test_every_listed_recalibration_fits_the_kinds_logits(fitted: Fitted) -> None:
    infos = {"y": fitted.info}
    assert set(fitted.kind.recalibrations) <= set(METHODS)
    for method in METHODS:
        if method not in fitted.kind.recalibrations:
            with pytest.raises(SpecError, match=f"not {method}"):
                calibrated_targets(method, infos)
            continue
        logits, labels = labelled(fitted)
        calibration, record = fit_target("y", fitted.kind.name, method, logits, labels)
        assert np.isfinite([record["nll_before"], record["nll_after"]]).all()
        assert calibration.apply(logits).shape == logits.shape


def test_sets_or_intervals_come_from_the_kinds_outputs(fitted: Fitted) -> None:
    outputs = {k: v.detach().numpy() for k, v in fitted.head.predict(fitted.logits).items()}
    outputs = {k: v[fitted.mask.numpy()] for k, v in outputs.items()}
    scored = fitted.kind.scored_labels(fitted.info, fitted.target.numpy())[fitted.mask.numpy()]
    kind_family = family(fitted.kind)
    if kind_family is None:
        with pytest.raises(SpecError, match="no target of this cohort takes"):
            conformal_targets({"y": fitted.info})
        return
    if kind_family == "set":
        probabilities = fitted.kind.class_probabilities(fitted.info, outputs)
        assert probabilities.shape == (len(scored), len(fitted.info["classes"]))
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    else:
        assert fitted.kind.point_values(fitted.info, outputs).shape == (len(scored),)
    config = ConformalConfig(coverage=0.5)
    conformal, _ = calibrate("y", fitted.info, outputs, scored, config)
    covered, size = conformal.hits(fitted.info, outputs, scored)
    assert covered.shape == size.shape == (len(scored),) and covered.mean() >= 0.5
