"""The clinical figures' numbers on tiny synthetic predictions: against scikit-learn, the
decision-curve formulas, hand-counted confusion matrices and a hand-computed Kaplan–Meier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from polymodal import targets
from polymodal.evaluation import compute_metrics
from polymodal.evaluation.bootstrap import MetricCI
from polymodal.evaluation.figures import (
    calibration_plot,
    confusion,
    decision_curve,
    roc_pr,
    survival_curves,
    training_curves,
)
from polymodal.evaluation.report_flags import NO_SKILL, REACHES_NO_SKILL, ZERO_WIDTH, flags
from polymodal.targets import MetricOptions
from polymodal.targets.figure_inputs import DecidedClasses, SurvivalRows


def outcome(n: int = 200, seed: int = 0):
    """Labels at prevalence ~0.3, an informative probability, two rows per patient."""
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < 0.3
    probability = np.clip(0.3 + 0.35 * (positive - 0.3) + rng.normal(0, 0.2, n), 0, 1)
    return positive, probability, np.arange(n) // 2


def test_roc_and_pr_areas_are_scikit_learns_and_the_bands_hold_the_curve() -> None:
    positive, probability, groups = outcome()
    roc = roc_pr.roc_band(positive, probability, groups, n_boot=50)
    pr = roc_pr.pr_band(positive, probability, groups, n_boot=50)
    assert roc.extras["area"].point == pytest.approx(roc_auc_score(positive, probability))
    assert pr.extras["area"].point == pytest.approx(average_precision_score(positive, probability))
    assert roc.extras["area"].low < roc.extras["area"].point < roc.extras["area"].high
    # the ROC starts at the best TPR with no false positive and ends at (1, 1)
    assert roc.point[-1] == 1.0 and 0.0 <= roc.point[0] < roc.point[10] <= roc.point[50]
    fpr, tpr, _ = roc_curve(positive, probability)
    assert roc.point[10] == pytest.approx(tpr[fpr <= 0.1].max())  # best TPR at FPR ≤ 0.1
    assert np.all(np.diff(roc.point) >= 0)
    # interpolated precision at recall r: the best precision at any recall ≥ r
    precision, recall, _ = precision_recall_curve(positive, probability)
    assert pr.point[50] == pytest.approx(precision[recall >= 0.5].max())
    assert np.all(np.diff(pr.point) <= 1e-12)
    inside = (roc.low <= roc.point + 1e-12) & (roc.point <= roc.high + 1e-12)
    assert inside.mean() > 0.9


def test_a_single_class_gives_no_curve_rather_than_a_made_up_one() -> None:
    band = roc_pr.roc_band(np.zeros(20, bool), np.linspace(0, 1, 20), None, n_boot=5)
    assert np.isnan(band.point).all() and np.isnan(band.extras["area"].point)


def test_decision_curve_follows_its_formulas() -> None:
    positive, probability, groups = outcome()
    prevalence = positive.mean()
    t = decision_curve.THRESHOLDS
    everyone = decision_curve.treat_all(prevalence)
    assert everyone == pytest.approx(prevalence - (1 - prevalence) * t / (1 - t))
    # treating everyone is what a model does that gives everyone probability 1
    assert decision_curve.net_benefit(positive, np.ones(len(positive))) == pytest.approx(everyone)
    assert decision_curve.net_benefit(positive, np.zeros(len(positive))) == pytest.approx(0.0)
    at = int(np.flatnonzero(np.isclose(t, 0.2))[0])
    treated = probability >= 0.2
    hand = (treated & positive).sum() / 200 - (treated & ~positive).sum() / 200 * 0.25
    band = decision_curve.decision_band(positive, probability, groups, n_boot=20)
    assert band.point[at] == pytest.approx(hand)


def test_confusion_matrix_counts_and_row_shares() -> None:
    decided = DecidedClasses(
        true=np.array([0, 0, 0, 1, 1, 2]),
        predicted=np.array([0, 1, 0, 1, 1, 1]),
        names=["nevus", "melanoma", "bcc"],
        rule="most probable class",
    )
    found = confusion.confusion(decided)
    assert found.counts.tolist() == [[2, 1, 0], [0, 2, 0], [0, 1, 0]]
    assert found.normalised[0] == pytest.approx([2 / 3, 1 / 3, 0])
    assert found.normalised[2] == pytest.approx([0, 1, 0])
    absent = confusion.confusion(
        DecidedClasses(np.array([0, 0]), np.array([0, 1]), ["a", "b"], "x")
    )
    assert np.isnan(absent.normalised[1]).all()  # no sample of class b: no share, not 0


def test_binary_decided_classes_use_the_threshold() -> None:
    kind = targets.get("binary")
    options = MetricOptions(classes=["benign", "malignant"], threshold=0.5)
    decided = kind.decided_classes(np.array([0, 1, 1]), np.array([0.2, 0.5, 0.49]), options)
    assert decided.predicted.tolist() == [0, 1, 0]
    assert decided.rule == "P(malignant) ≥ 0.5"


def test_reliability_bins_and_ece_are_the_tables() -> None:
    positive, probability, groups = outcome()
    found = calibration_plot.reliability(positive, probability, groups, n_boot=30)
    table = compute_metrics("binary", positive.astype(int), probability)
    assert found.ece.point == pytest.approx(table["ece"])
    bins = np.minimum((probability * 15).astype(int), 14)
    for b in np.unique(bins):
        assert found.observed[b] == pytest.approx(positive[bins == b].mean())
        assert found.predicted[b] == pytest.approx(probability[bins == b].mean())
    assert found.counts.sum() == 200 and np.isnan(found.observed[found.counts == 0]).all()


def test_kaplan_meier_matches_a_hand_computation() -> None:
    # times 1, 2, 2, 3, 4 (events at 1, 2, 4; one censored at 2 and at 3)
    curve = survival_curves.kaplan_meier(
        np.array([1, 2, 2, 3, 4]), np.array([True, True, False, False, True])
    )
    assert curve.time.tolist() == [0, 1, 2, 4]
    assert curve.survival == pytest.approx([1, 4 / 5, 4 / 5 * 3 / 4, 4 / 5 * 3 / 4 * 0])
    rows = SurvivalRows(np.arange(1.0, 10.0), np.ones(9, bool), np.arange(9.0)[::-1])
    groups = survival_curves.risk_groups(rows)
    assert list(groups) == ["low risk", "middle risk", "high risk"]
    assert [g.n for g in groups.values()] == [3, 3, 3]
    # highest risk = earliest events: its curve falls first
    assert groups["high risk"].time[1] < groups["low risk"].time[1]


def test_training_curves_average_each_epoch_of_the_lightning_log(tmp_path: Path) -> None:
    log = tmp_path / "run" / "logs" / "metrics.csv"
    log.parent.mkdir(parents=True)
    log.write_text(
        "epoch,step,train/loss,val/loss,val/melanoma/auroc\n"
        "0,0,1.0,,\n0,1,0.8,,\n0,1,,0.7,0.6\n1,2,0.6,,\n1,3,0.4,,\n1,3,,0.5,0.8\n"
    )
    assert training_curves.metrics_csv(tmp_path / "run" / "model") == log
    epochs = training_curves.per_epoch(log)
    assert epochs["train/loss"].tolist() == pytest.approx([0.9, 0.5])
    assert epochs["val/loss"].tolist() == pytest.approx([0.7, 0.5])
    figure = training_curves.training_figure({"a": epochs}, {"melanoma": "auroc"}, "t")
    loss_ax, metric_ax = figure.axes
    assert len(loss_ax.lines) == 2 and len(metric_ax.lines) == 1
    assert metric_ax.lines[0].get_ydata().tolist() == pytest.approx([0.6, 0.8])


@pytest.mark.parametrize("kind_name", ["binary", "multiclass", "multilabel"])
def test_no_skill_levels_are_what_predicting_the_prevalence_scores(kind_name: str) -> None:
    rng = np.random.default_rng(1)
    kind = targets.get(kind_name)
    options = MetricOptions(classes=["a", "b", "c"] if kind_name != "binary" else None)
    if kind_name == "binary":
        y = (rng.random(50) < 0.3).astype(int)
        constant = np.full(50, y.mean())
    elif kind_name == "multiclass":
        y = rng.integers(0, 3, 50)
        constant = np.tile(np.bincount(y, minlength=3) / 50, (50, 1))
    else:
        y = (rng.random((50, 3)) < [0.2, 0.5, 0.7]).astype(int)
        constant = np.tile(y.mean(axis=0), (50, 1))
    scored = compute_metrics(kind_name, y, constant, classes=options.classes)
    levels = kind.no_skill(y, options)
    assert set(levels) <= set(scored)  # every level names a metric the tables show
    assert levels["brier"] == pytest.approx(scored["brier"])
    for metric, level in levels.items():
        if metric.startswith("auroc"):
            assert level == 0.5 and scored[metric] == pytest.approx(0.5)


def test_flags_name_zero_width_no_skill_and_reaching_intervals() -> None:
    levels = {"auroc": 0.5, "brier": 0.21}
    assert flags(MetricCI(0.0, 0.0, 0.0, 100), "f1", levels) == [ZERO_WIDTH]
    assert flags(MetricCI(0.48, 0.40, 0.55, 100), "auroc", levels) == [NO_SKILL]
    assert flags(MetricCI(0.56, 0.49, 0.62, 100), "auroc", levels) == [REACHES_NO_SKILL]
    assert flags(MetricCI(0.70, 0.62, 0.77, 100), "auroc", levels) == []
    assert flags(MetricCI(0.21, 0.19, 0.23, 100), "brier", levels) == [NO_SKILL]  # lower=better
    assert flags(MetricCI(0.15, 0.12, 0.18, 100), "brier", levels) == []


def test_auroc_over_time_is_the_tables_auroc_at_each_horizon() -> None:
    rng = np.random.default_rng(3)
    risk = rng.normal(size=80)
    time = rng.exponential(np.exp(-risk))
    event = rng.random(80) < 0.7
    rows = SurvivalRows(time, event, risk)
    horizons = survival_curves.horizons_of(rows, count=4)
    found = survival_curves.auroc_over_time(time, event, risk, horizons)
    y = np.stack([time, event], axis=1)
    for horizon, value in zip(horizons, found, strict=True):
        table = compute_metrics("time_to_event", y, risk, horizon=float(horizon))
        assert value == pytest.approx(table["auroc_at_horizon"])
    point, low, high = survival_curves.auroc_band(rows, None, horizons, n_boot=20, seed=0)
    assert point == pytest.approx(found) and np.all(low <= high)
