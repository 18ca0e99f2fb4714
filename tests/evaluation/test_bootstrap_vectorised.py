"""bootstrap_metrics scores all resamples at once and gives the intervals of the per-resample loop."""

from __future__ import annotations

import numpy as np
import pytest

from polymodal.evaluation import bootstrap, bootstrap_ci, bootstrap_metrics
from polymodal.evaluation.metrics import compute_metrics


def _no_loop(*args, **kwargs):
    """Stands in for bootstrap_ci: the vectorised path must not fall back to the loop."""
    raise AssertionError("bootstrap_metrics looped over resamples")


def _probabilities(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    e = np.exp(rng.normal(size=(n, k)))
    return e / e.sum(axis=1, keepdims=True)


def _looped(kind, y, prediction, groups, **options):
    """The loop bootstrap_metrics ran before: compute_metrics on the rows of every resample."""
    return bootstrap_ci(
        lambda a, b: compute_metrics(kind, a, b, **options), (y, prediction), groups, n_boot=60
    )


CASES = {
    # rounded scores: tied (score, outcome) runs and ties across outcomes
    "binary": lambda r, n: (r.integers(0, 2, n), np.round(r.random(n), 1), {}),
    "multiclass": lambda r, n: (r.integers(0, 4, n), _probabilities(r, n, 4), {}),
    "multilabel": lambda r, n: (
        r.integers(0, 2, (n, 3)),
        np.round(r.random((n, 3)), 2),
        {"classes": ["a", "b", "c"]},
    ),
    "regression": lambda r, n: (r.normal(size=n), r.normal(size=n), {}),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_vectorised_intervals_equal_the_per_resample_loop(kind, monkeypatch) -> None:
    rng = np.random.default_rng(11)
    y, prediction, options = CASES[kind](rng, 150)
    groups = np.array([f"p{g}" for g in rng.integers(0, 50, 150)], dtype=object)
    slow = _looped(kind, y, prediction, groups, **options)
    with monkeypatch.context() as patch:
        patch.setattr(bootstrap, "bootstrap_ci", _no_loop)
        fast = bootstrap_metrics(kind, y, prediction, groups, n_boot=60, **options)
    assert list(fast) == list(slow)
    for name, expected in slow.items():
        assert fast[name].n_valid == expected.n_valid, name
        assert np.allclose(fast[name][:3], expected[:3], rtol=1e-9, atol=1e-12), name
    assert (fast.n_samples, fast.n_groups) == (slow.n_samples, slow.n_groups)


def test_resamples_without_positives_keep_their_count_and_reason(monkeypatch) -> None:
    # two positive patients of 30: some resamples draw neither, AUROC is undefined there
    groups = np.repeat(np.arange(30), 2)
    y = np.isin(groups, [4, 21]).astype(int)
    prob = np.random.default_rng(3).random(60)
    slow = _looped("binary", y, prob, groups, specificity=0.8)
    with monkeypatch.context() as patch:
        patch.setattr(bootstrap, "bootstrap_ci", _no_loop)
        fast = bootstrap_metrics("binary", y, prob, groups, n_boot=60, specificity=0.8)
    assert 0 < fast["auroc"].n_valid == slow["auroc"].n_valid < 60
    assert fast.reasons == slow.reasons
    assert "no positive samples" in fast.reasons["auroc"]
