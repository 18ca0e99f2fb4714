"""Grouped bootstrap: groups stay whole, intervals have the right width, undefined is counted."""

from __future__ import annotations

import math

import numpy as np
import pytest

from polymodal.evaluation import EvaluationError, bootstrap_ci, bootstrap_metrics


def _mean(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(values.mean())}


def test_every_resample_keeps_each_drawn_group_whole():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 6, 30)
    groups = np.repeat([f"patient-{g}" for g in range(30)], sizes)
    codes = np.repeat(np.arange(30), sizes)

    def whole_groups(code: np.ndarray) -> dict[str, float]:
        counts = np.bincount(code, minlength=30)
        return {"whole": float(np.all(counts % sizes == 0)), "n_rows": float(len(code))}

    ci = bootstrap_ci(whole_groups, (codes,), groups, n_boot=200)
    assert ci["whole"] == (1.0, 1.0, 1.0, 200)
    # the row count varies across resamples: groups of different sizes were drawn
    assert ci["n_rows"].low < ci["n_rows"].high


def test_interval_width_follows_groups_not_rows():
    # 20 patients with 50 identical rows each: the information is in 20 values, not 1000
    rng = np.random.default_rng(1)
    patient_value = np.r_[np.zeros(10), np.ones(10)]
    values = np.repeat(patient_value, 50)
    groups = np.repeat(np.arange(20), 50)
    order = rng.permutation(1000)  # rows of a group need not be adjacent
    values, groups = values[order], groups[order]

    by_group = bootstrap_ci(_mean, (values,), groups, n_boot=500)["mean"]
    by_row = bootstrap_ci(_mean, (values,), None, n_boot=500)["mean"]
    group_width = by_group.high - by_group.low
    row_width = by_row.high - by_row.low
    assert by_group.point == pytest.approx(0.5)
    assert group_width == pytest.approx(2 * 1.96 * math.sqrt(0.25 / 20), rel=0.25)
    assert row_width == pytest.approx(2 * 1.96 * math.sqrt(0.25 / 1000), rel=0.25)
    assert group_width > 4 * row_width


def test_percentile_interval_of_a_mean_has_the_normal_width():
    values = np.random.default_rng(2).normal(10.0, 2.0, 2000)
    wide = bootstrap_ci(_mean, {"values": values}, None, n_boot=400, level=0.95)["mean"]
    narrow = bootstrap_ci(_mean, {"values": values}, None, n_boot=400, level=0.5)["mean"]
    half_width = 1.96 * values.std() / math.sqrt(2000)
    assert wide.low == pytest.approx(values.mean() - half_width, abs=0.03)
    assert wide.high == pytest.approx(values.mean() + half_width, abs=0.03)
    assert narrow.high - narrow.low < 0.5 * (wide.high - wide.low)


def test_a_metric_undefined_in_some_resamples_counts_fewer_valid_resamples():
    # positives only in two of 40 patients: some resamples draw neither of them
    groups = np.repeat(np.arange(40), 3)
    y = np.isin(groups, [3, 17]).astype(int)
    prob = np.clip(0.5 * y + 0.5 * np.random.default_rng(3).random(120), 0, 1)
    ci = bootstrap_metrics("binary", y, prob, groups, n_boot=100)
    assert 0 < ci["auroc"].n_valid < 100
    assert ci["accuracy"].n_valid == 100
    assert math.isfinite(ci["auroc"].low) and math.isfinite(ci["auroc"].high)
    assert ci.reasons["auroc"].startswith(f"undefined in {100 - ci['auroc'].n_valid} of 100")
    assert "no positive samples" in ci.reasons["auroc"]
    assert ci.n_samples == 120 and ci.n_groups == 40


def test_a_metric_undefined_on_the_full_data_reports_nan_and_why():
    y = np.zeros(30, dtype=int)
    prob = np.linspace(0, 1, 30)
    ci = bootstrap_metrics("binary", y, prob, np.arange(30) // 3, n_boot=50)
    auroc = ci["auroc"]
    assert math.isnan(auroc.point) and math.isnan(auroc.low) and math.isnan(auroc.high)
    assert auroc.n_valid == 0
    assert "no positive samples" in ci.reasons["auroc"]


def test_same_seed_same_interval_other_seed_other_interval():
    values = np.random.default_rng(4).random(200)
    groups = np.arange(200) // 4
    first = bootstrap_ci(_mean, (values,), groups, n_boot=100, seed=7)
    assert bootstrap_ci(_mean, (values,), groups, n_boot=100, seed=7) == first
    assert bootstrap_ci(_mean, (values,), groups, n_boot=100, seed=8) != first


def test_time_to_event_accepts_time_and_event_arrays():
    rng = np.random.default_rng(5)
    time = rng.exponential(1.0, 100)
    event = (rng.random(100) < 0.6).astype(int)
    risk = -time + 0.5 * rng.normal(size=100)  # higher risk, earlier event
    ci = bootstrap_metrics("time_to_event", (time, event), risk, np.arange(100), n_boot=100)
    assert ci["c_index"].low < ci["c_index"].point < ci["c_index"].high
    assert ci["c_index"].point > 0.7


@pytest.mark.parametrize(
    ("data", "groups", "fragment"),
    [
        ((np.zeros(4), np.zeros(3)), None, "different numbers of rows [3, 4]"),
        ((np.zeros(3),), ["a", "b"], "2 group ids for 3 samples"),
        ((np.zeros(3),), np.array(["a", None, "b"], dtype=object), "group id of row 1"),
        ((np.zeros(3),), np.array([1.0, 2.0, np.nan]), "group id of row 2"),
    ],
)
def test_bad_bootstrap_input_raises_a_clear_error(data, groups, fragment):
    with pytest.raises(EvaluationError) as err:
        bootstrap_ci(lambda v, *rest: {"mean": float(v.mean())}, data, groups, n_boot=5)
    assert fragment in str(err.value)
