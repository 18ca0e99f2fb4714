"""Paired tests: DeLong (by hand and against the bootstrap), McNemar, Holm, grouped resampling."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from polymodal.evaluation.paired_tests import (
    bootstrap_difference,
    delong,
    delong_covariance,
    group_codes,
    grouped_weights,
    holm,
    mcnemar,
)
from polymodal.evaluation.resampled_metrics import Ranking


def test_delong_matches_a_hand_computed_example() -> None:
    # 2 positives, 3 negatives; model A ranks them 0.9, 0.4 | 0.5, 0.2, 0.1 (one swap),
    # model B ranks 0.8, 0.6 | 0.6, 0.3, 0.7 (a tie and a swap).
    positive = np.array([True, True, False, False, False])
    a = np.array([0.9, 0.4, 0.5, 0.2, 0.1])
    b = np.array([0.8, 0.6, 0.6, 0.3, 0.7])
    # Placement values (share of the other class beaten, ties count ½):
    # A: V10 = (3/3, 2/3) for the positives; V01 = (1/2, 1, 1) for the negatives (share of
    #    positives above each).
    # B: V10 = (3/3, (1 + ½)/3) = (1, 1/2); V01 = ((1 + ½)/2, 1, 1/2) = (3/4, 1, 1/2).
    # AUROC = mean V10: A 5/6, B 3/4.
    # S10 (sample covariances over the 2 positives, ddof 1): var A = 1/18, var B = 1/8,
    #   cov = (1/6·1/4 + (−1/6)(−1/4)) / 1 = 1/12.
    # S01 (over the 3 negatives, deviations A (−1/3, 1/6, 1/6), B (0, 1/4, −1/4)):
    #   var A = (1/9 + 1/36 + 1/36)/2 = 1/12, var B = (1/16 + 1/16)/2 = 1/16, cov = 0.
    # Cov = S10/2 + S01/3: [[1/36 + 1/36, 1/24 + 0], [·, 1/16 + 1/48]] = [[1/18, 1/24], [·, 1/12]]
    # Var(A − B) = 1/18 + 1/12 − 2/24 = 1/18; z = (1/12)/√(1/18) = 0.353553.
    aurocs, cov = delong_covariance(positive, np.stack([a, b]))
    assert aurocs == pytest.approx([5 / 6, 3 / 4])
    assert cov == pytest.approx(np.array([[1 / 18, 1 / 24], [1 / 24, 1 / 12]]))
    result = delong(positive, a, b)
    assert result.difference == pytest.approx(1 / 12)
    assert result.variance == pytest.approx(1 / 18)
    assert result.z == pytest.approx((1 / 12) / np.sqrt(1 / 18))
    assert result.p == pytest.approx(0.7236736, rel=1e-6)  # 2·Φ(−0.353553)


def test_delong_aurocs_equal_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(1)
    positive = rng.random(200) < 0.3
    scores = np.round(rng.random((3, 200)) + positive * 0.3, 1)  # many ties
    aurocs, _ = delong_covariance(positive, scores)
    assert aurocs == pytest.approx([roc_auc_score(positive, s) for s in scores])


def test_delong_agrees_with_the_paired_bootstrap_on_a_large_sample() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    positive = rng.random(n) < 0.3
    shared = rng.normal(size=n)  # the models share most of their signal: a paired design
    a = positive * 1.0 + shared + 0.6 * rng.normal(size=n)
    b = positive * 0.9 + shared + 0.6 * rng.normal(size=n)
    result = delong(positive, a, b)
    codes, n_groups = group_codes(np.arange(n))  # every row its own patient: DeLong's setting
    rank_a, rank_b = Ranking(positive, a), Ranking(positive, b)
    differences = np.concatenate(
        [
            rank_a.summaries(w, 0.9)[0] - rank_b.summaries(w, 0.9)[0]
            for w in grouped_weights(codes, n_groups, 1000, seed=3)
        ]
    )
    assert np.var(differences) == pytest.approx(result.variance, rel=0.15)
    bootstrap_p = bootstrap_difference(result.difference, differences).p
    assert 0.001 < result.p < 0.2  # a real but small difference: p-values worth comparing
    assert bootstrap_p == pytest.approx(result.p, rel=0.3)


def test_delong_of_a_model_against_itself_is_zero_with_p_one() -> None:
    rng = np.random.default_rng(2)
    positive = rng.random(50) < 0.5
    score = rng.random(50)
    result = delong(positive, score, score)
    assert result.difference == 0.0 and result.p == 1.0


def test_mcnemar_on_a_known_table() -> None:
    # 10 rows only A gets right, 2 only B, 30 both, 8 neither.
    correct_a = np.array([True] * 10 + [False] * 2 + [True] * 30 + [False] * 8)
    correct_b = np.array([False] * 10 + [True] * 2 + [True] * 30 + [False] * 8)
    result = mcnemar(correct_a, correct_b)
    assert (result.only_a_correct, result.only_b_correct) == (10, 2)
    # Exact: 2·P(X ≤ 2 | 12, ½) = 2·(1 + 12 + 66)/4096; mid-p: 2·(1 + 12 + 66/2)/4096.
    assert result.p_exact == pytest.approx(158 / 4096)
    assert result.p_mid == pytest.approx(92 / 4096)


def test_mcnemar_without_discordant_rows_is_p_one() -> None:
    same = np.array([True, False, True])
    assert mcnemar(same, same).p_exact == 1.0 and mcnemar(same, same).p_mid == 1.0


def test_holm_matches_a_hand_computed_example() -> None:
    # Sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → max so far 0.06.
    adjusted = holm([0.01, 0.04, 0.03, 0.005, np.nan])
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert np.isnan(adjusted[4])  # not a test: not counted in m
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_grouped_weights_keep_every_patient_whole_and_draw_g_patients() -> None:
    groups = np.array(["p1", "p1", "p2", "p3", "p3", "p3"])
    codes, n_groups = group_codes(groups)
    blocks = list(grouped_weights(codes, n_groups, 500, seed=0))
    weights = np.concatenate(blocks)
    assert weights.shape == (500, 6)
    # rows of one patient always share their weight; the draws per resample sum to G
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 3] == weights[:, 5]).all()
    per_patient = weights[:, [0, 2, 3]]
    assert (per_patient.sum(axis=1) == n_groups).all()
    again = np.concatenate(list(grouped_weights(codes, n_groups, 500, seed=0)))
    assert (again == weights).all()  # the same seed, the same resamples


def test_bootstrap_difference_of_identical_models_is_zero_with_p_one() -> None:
    summary = bootstrap_difference(0.0, np.zeros(1000))
    assert (summary.difference, summary.low, summary.high) == (0.0, 0.0, 0.0)
    assert summary.p == 1.0 and summary.p_percentile == 1.0


def test_the_bootstrap_p_value_has_no_floor_but_the_counting_one_has() -> None:
    rng = np.random.default_rng(0)
    resampled = 0.1 + 0.02 * rng.normal(size=1000)  # five standard errors from 0
    summary = bootstrap_difference(0.1, resampled)
    assert summary.standard_error == pytest.approx(0.02, rel=0.1)
    assert summary.p == pytest.approx(2 * norm.sf(5), rel=0.5)  # ~6e-7
    assert summary.p_percentile == pytest.approx(2 / 1001)  # all it can tell with 1000
    assert summary.low == pytest.approx(0.1 - 1.96 * 0.02, abs=0.005)


def _probabilities(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    e = np.exp(rng.normal(size=(n, k)))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize(
    ("kind", "make"),
    [
        ("binary", lambda r, n: (r.integers(0, 2, n), np.round(r.random(n), 2))),
        ("multiclass", lambda r, n: (r.integers(0, 3, n), _probabilities(r, n, 3))),
        ("multilabel", lambda r, n: (r.integers(0, 2, (n, 3)), np.round(r.random((n, 3)), 2))),
        ("regression", lambda r, n: (r.normal(size=n), r.normal(size=n))),
    ],
)
def test_resampled_metrics_equal_the_kinds_metrics_on_the_repeated_rows(kind, make) -> None:
    """A resample's weights score exactly what compute_metrics scores on the rows it drew."""
    from polymodal import targets
    from polymodal.evaluation.metrics import compute_metrics
    from polymodal.evaluation.resampled_metrics import scores_for
    from polymodal.targets import MetricOptions

    rng = np.random.default_rng(7)
    n = 120
    y, prediction = make(rng, n)
    classes = ["a", "b", "c"] if kind in ("multiclass", "multilabel") else None
    scores = scores_for(targets.get(kind), y, prediction, MetricOptions(classes=classes))
    codes, n_groups = group_codes(rng.integers(0, 40, n))  # 40 patients, ~3 rows each
    w = next(grouped_weights(codes, n_groups, 3, seed=1))  # (3, n)
    resampled = scores.metrics(w)
    for r in range(3):
        rows = np.repeat(np.arange(n), w[r].astype(int))
        expected = compute_metrics(kind, y[rows], prediction[rows], classes=classes)
        for name, value in expected.items():
            assert resampled[name][r] == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), (
                kind,
                name,
            )
