"""Metrics per target kind: hand-computed values, scikit-learn agreement, honest NaN."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from polymodal.evaluation import EvaluationError, compute_metrics, harrell_c_index


def test_binary_metrics_equal_hand_computed_values():
    y = np.array([0, 0, 1, 1])
    prob = np.array([0.1, 0.4, 0.35, 0.8])
    m = compute_metrics("binary", y, prob)
    assert m["auroc"] == pytest.approx(0.75)
    # ranked 0.8(+) 0.4(−) 0.35(+) 0.1(−): precision 1 at recall ½, ⅔ at recall 1
    assert m["auprc"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # threshold 0.5 predicts [0, 0, 0, 1]
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["balanced_accuracy"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["f1"] == pytest.approx(2 * 1 / (2 * 1 + 0 + 1))
    # only one of two negatives may score above the threshold: specificity ≥ 0.9 → fpr 0
    assert m["sensitivity_at_specificity"] == pytest.approx(0.5)
    assert m["brier"] == pytest.approx((0.1**2 + 0.4**2 + 0.65**2 + 0.2**2) / 4)
    # 15 bins: every sample alone in its bin → mean |y − p|
    assert m["ece"] == pytest.approx((0.1 + 0.4 + 0.65 + 0.2) / 4)
    assert m.reasons == {}


def test_binary_threshold_is_configurable():
    y = np.array([0, 0, 1, 1])
    prob = np.array([0.1, 0.4, 0.35, 0.8])
    m = compute_metrics("binary", y, prob, threshold=0.3)  # predicts [0, 1, 1, 1]
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 0))


def test_sensitivity_at_specificity_on_a_constructed_example():
    negatives = np.arange(10) / 10  # 0.0 … 0.9
    positives = np.array([0.55, 0.6, 0.65, 0.7, 0.75, 0.82, 0.85, 0.88, 0.95, 1.0])
    y = np.r_[np.zeros(10), np.ones(10)]
    prob = np.r_[negatives, positives]
    # specificity ≥ 0.9 allows one negative (0.9) above the threshold: threshold 0.82 → 5 of 10
    assert compute_metrics("binary", y, prob, specificity=0.9)[
        "sensitivity_at_specificity"
    ] == pytest.approx(0.5)
    # ≥ 0.8 allows 0.8 and 0.9: threshold 0.75 → 6 of 10
    assert compute_metrics("binary", y, prob, specificity=0.8)[
        "sensitivity_at_specificity"
    ] == pytest.approx(0.6)


def test_sensitivity_at_specificity_keeps_operating_points_on_a_straight_roc_segment():
    # a positive and a negative tie at 0.9, 0.8 and 0.7: the ROC points (0.1, 0.1), (0.2, 0.2),
    # (0.3, 0.3) are collinear, and (0.2, 0.2) is the best one with specificity ≥ 0.8
    y = np.r_[np.zeros(10), np.ones(10)]
    prob = np.r_[[0.9, 0.8, 0.7], np.full(7, 0.1), [0.9, 0.8, 0.7], np.full(7, 0.05)]
    m = compute_metrics("binary", y, prob, specificity=0.8)
    assert m["sensitivity_at_specificity"] == pytest.approx(0.2)


def test_sensitivity_at_specificity_matches_a_scan_over_all_thresholds():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    prob = np.round(np.clip(0.3 * y + 0.7 * rng.random(300), 0, 1), 2)  # many ties
    best = 0.0
    for t in np.unique(prob):
        specificity = np.mean(prob[y == 0] < t)
        if specificity >= 0.9:
            best = max(best, np.mean(prob[y == 1] >= t))
    assert compute_metrics("binary", y, prob)["sensitivity_at_specificity"] == pytest.approx(best)


def test_binary_ranking_metrics_agree_with_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    prob = np.round(rng.random(200), 1)  # ties
    m = compute_metrics("binary", y, prob)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, prob))
    assert m["auprc"] == pytest.approx(average_precision_score(y, prob))


def test_one_class_gives_nan_with_a_reason_never_half():
    y = np.zeros(5)
    prob = np.array([0.1, 0.2, 0.3, 0.6, 0.7])
    m = compute_metrics("binary", y, prob)
    for name in ("auroc", "auprc", "balanced_accuracy", "sensitivity_at_specificity"):
        assert math.isnan(m[name])
        assert "no positive samples" in m.reasons[name]
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["f1"] == 0.0  # positives predicted, none true: precision 0


def test_ece_is_near_zero_when_calibrated_and_large_when_overconfident():
    rng = np.random.default_rng(0)
    prob = rng.random(50_000)
    y = (rng.random(50_000) < prob).astype(int)
    assert compute_metrics("binary", y, prob)["ece"] < 0.01
    overconfident = np.where(prob > 0.5, 0.99, 0.01)
    assert compute_metrics("binary", y, overconfident)["ece"] > 0.2


def test_multiclass_metrics_equal_hand_computed_values():
    y = np.array([0, 1, 2, 0, 1, 2])
    prob = np.array(
        [
            [0.7, 0.2, 0.1],
            [0.1, 0.6, 0.3],
            [0.2, 0.5, 0.3],  # wrong: predicts class 1
            [0.6, 0.3, 0.1],
            [0.3, 0.4, 0.3],
            [0.1, 0.2, 0.7],
        ]
    )
    m = compute_metrics("multiclass", y, prob, classes=["nv", "mel", "bcc"])
    assert m["accuracy"] == pytest.approx(5 / 6)
    assert m["balanced_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
    one_hot = np.eye(3)[y]
    assert m["brier"] == pytest.approx(np.mean(np.sum((prob - one_hot) ** 2, axis=1)))
    for k, name in enumerate(["nv", "mel", "bcc"]):
        assert m[f"auroc[{name}]"] == pytest.approx(roc_auc_score(y == k, prob[:, k]))
    assert m["auroc_macro"] == pytest.approx(roc_auc_score(y, prob, multi_class="ovr"))
    # per-class F1: nv 1, mel 2·2/(4+1) = 0.8, bcc 2·1/(2+1) = ⅔
    assert m["f1_macro"] == pytest.approx((1 + 0.8 + 2 / 3) / 3)


def test_multiclass_top_label_ece():
    # top probability always 0.6, right half of the time → ECE 0.1
    prob = np.tile([0.6, 0.3, 0.1], (4, 1))
    y = np.array([0, 0, 1, 2])
    assert compute_metrics("multiclass", y, prob)["ece"] == pytest.approx(0.1)


def test_multiclass_absent_class_makes_macro_undefined_and_names_it():
    rng = np.random.default_rng(1)
    prob = rng.dirichlet(np.ones(3), 20)
    y = rng.integers(0, 2, 20)  # class 2 ("df") never occurs
    m = compute_metrics("multiclass", y, prob, classes=["nv", "mel", "df"])
    assert math.isnan(m["auroc_macro"])
    assert "'df'" in m.reasons["auroc_macro"]
    assert math.isnan(m["auroc[df]"])
    assert math.isfinite(m["auroc[nv]"])
    assert math.isnan(m["balanced_accuracy"])
    assert math.isfinite(m["accuracy"])


def test_multilabel_per_label_and_macro_agree_with_sklearn():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, (60, 3))
    prob = np.clip(0.4 * y + 0.6 * rng.random((60, 3)), 0, 1)
    m = compute_metrics("multilabel", y, prob, classes=["edema", "effusion", "mass"])
    per_label = roc_auc_score(y, prob, average=None)
    assert [m["auroc[edema]"], m["auroc[effusion]"], m["auroc[mass]"]] == pytest.approx(per_label)
    assert m["auroc_macro"] == pytest.approx(per_label.mean())
    assert m["auprc_macro"] == pytest.approx(average_precision_score(y, prob, average="macro"))
    assert m["brier"] == pytest.approx(np.mean((prob - y) ** 2))


def test_multilabel_constant_label_is_undefined():
    y = np.array([[0, 1], [0, 0], [0, 1]])
    prob = np.array([[0.2, 0.9], [0.1, 0.2], [0.3, 0.6]])
    m = compute_metrics("multilabel", y, prob, classes=["mass", "edema"])
    assert math.isnan(m["auroc[mass]"])
    assert m["auroc[edema]"] == pytest.approx(1.0)
    assert "label 'mass' has no positive samples" in m.reasons["auroc_macro"]


def test_regression_metrics_equal_hand_computed_values():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    pred = np.array([1.0, 2.0, 3.0, 5.0])
    m = compute_metrics("regression", y, pred)
    assert m["mae"] == pytest.approx(0.25)
    assert m["rmse"] == pytest.approx(0.5)
    assert m["r2"] == pytest.approx(1 - 1 / 5)
    assert m["pearson_r"] == pytest.approx(np.corrcoef(y, pred)[0, 1])


def test_regression_constant_target_has_no_r2():
    m = compute_metrics("regression", np.full(4, 2.0), np.array([1.0, 2.0, 3.0, 2.5]))
    assert math.isnan(m["r2"])
    assert "constant" in m.reasons["r2"]
    assert m["mae"] == pytest.approx(0.625)


def test_c_index_equals_hand_computation_with_ties():
    time = np.array([1, 2, 3, 4, 5, 3, 3])
    event = np.array([1, 0, 1, 1, 0, 0, 1])
    risk = np.array([0.9, 0.1, 0.3, 0.3, 0.5, 0.2, 0.0])
    # comparable (event first): 0 with all 6 others (6 concordant); 2 with 3 (risk tie, ½),
    # 4 (discordant), 5 (same time, censored: concordant); 3 with 4 (discordant);
    # 6 with 3, 4, 5 (all discordant). 2 and 6 share an event time: not comparable.
    expected = (6 + 0.5 + 1) / (6 + 3 + 1 + 3)
    c, n_pairs = harrell_c_index(time, event, risk)
    assert n_pairs == 13
    assert c == pytest.approx(expected)
    m = compute_metrics("time_to_event", np.stack([time, event], axis=1), risk)
    assert m["c_index"] == pytest.approx(expected)


def test_c_index_blocks_match_a_pairwise_loop():
    rng = np.random.default_rng(4)
    time = rng.integers(1, 15, 80).astype(float)
    event = rng.random(80) < 0.5
    risk = rng.integers(0, 5, 80).astype(float)
    num = den = 0.0
    for i in range(80):
        for j in range(80):
            if event[i] and (time[j] > time[i] or (time[j] == time[i] and not event[j])):
                den += 1
                num += 1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0
    c, n_pairs = harrell_c_index(time, event, risk, block_pairs=100)
    assert n_pairs == den
    assert c == pytest.approx(num / den)


def test_time_to_event_horizon_auroc_leaves_out_early_censoring_and_no_events_is_nan():
    time = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    event = np.array([1, 0, 1, 0, 0])
    risk = np.array([0.9, 0.99, 0.5, 0.95, 0.2])
    # case: sample 0; controls: 2, 3, 4; sample 1 censored before 2.5 is left out
    m = compute_metrics("time_to_event", (time, event), risk, horizon=2.5)
    assert m["auroc_at_horizon"] == pytest.approx(2 / 3)
    none = compute_metrics("time_to_event", (time, np.zeros(5)), risk)
    assert math.isnan(none["c_index"])
    assert "no comparable pairs" in none.reasons["c_index"]


@pytest.mark.parametrize(
    ("kind", "y", "pred", "fragment"),
    [
        ("binary", [0, 1, 1], [0.2, 1.7, 0.5], "row 1 are outside [0, 1]"),
        ("binary", [0, np.nan, 1], [0.2, 0.7, 0.5], "target_mask"),
        ("binary", [0, 1], [0.2, 0.7, 0.5], "y_true has 2 rows but the predictions have 3"),
        ("multiclass", [0, 1], [[0.5, 0.6], [0.2, 0.8]], "sum to 1.1000, not 1"),
        ("multiclass", [0, 3], [[0.5, 0.5], [0.2, 0.8]], "row 1 is 3, outside the 2 classes"),
        ("grade", [0, 1], [0.2, 0.7], "unknown target kind 'grade'"),
        ("regression", [1.0, np.nan], [1.0, 2.0], "y_true at row 1 is nan"),
    ],
)
def test_bad_input_raises_a_clear_error(kind, y, pred, fragment):
    with pytest.raises(EvaluationError) as err:
        compute_metrics(kind, np.asarray(y), np.asarray(pred))
    assert fragment in str(err.value)


def test_class_names_must_match_the_probability_columns():
    with pytest.raises(EvaluationError, match="2 class names for 3 probability columns"):
        compute_metrics("multiclass", np.array([0, 1]), np.full((2, 3), 1 / 3), classes=["a", "b"])


def test_a_bad_multilabel_entry_is_located_by_row_and_column():
    y = np.array([[0, 1], [1, np.nan]])
    with pytest.raises(EvaluationError, match=r"y_true at row 1, column 1 is nan, expected 0 or 1"):
        compute_metrics("multilabel", y, np.full((2, 2), 0.5))
