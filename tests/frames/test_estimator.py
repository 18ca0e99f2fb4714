"""PolymodalEstimator in a scikit-learn workflow: clone, fit, predict, predict_proba, score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import accuracy_score, roc_auc_score

import polymodal


def test_the_estimator_fits_and_predicts_like_a_scikit_learn_classifier(
    tmp_path: Path, make_patients, tiny_settings
) -> None:
    data = make_patients(80)
    X, y = data.drop(columns=["outcome"]), data["outcome"]
    estimator = polymodal.PolymodalEstimator(core="concat", settings=tiny_settings, out=tmp_path)
    fresh = clone(estimator)  # get_params/set_params round-trip
    assert fresh.get_params() == estimator.get_params()
    fresh.fit(X.iloc[:60], y.iloc[:60])
    assert fresh.classes_.tolist() == [0, 1]  # as y gave them
    predicted = fresh.predict(X.iloc[60:])
    proba = fresh.predict_proba(X.iloc[60:])
    assert proba.shape == (20, 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert set(predicted) <= {0, 1}
    assert (predicted == fresh.classes_[proba.argmax(axis=1)]).all()
    # score is accuracy (sklearn's meaning); the ranking shows the model learned the note.
    assert fresh.score(X.iloc[60:], y.iloc[60:]) == accuracy_score(y.iloc[60:], predicted)
    assert roc_auc_score(y.iloc[60:], proba[:, 1]) > 0.8


def test_x_must_be_a_frame(tmp_path: Path, tiny_settings) -> None:
    estimator = polymodal.PolymodalEstimator(settings=tiny_settings, out=tmp_path)
    with pytest.raises(polymodal.SpecError, match="DataFrame"):
        estimator.fit(np.zeros((4, 2)), [0, 1, 0, 1])
