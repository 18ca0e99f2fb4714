"""Calibration of survival targets at each horizon: predicted P(event by the horizon) against
the Kaplan–Meier observed probability in groups of the prediction, on synthetic cohorts whose
true event probabilities are known; and the figure in the report."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from polymodal import targets
from polymodal.evaluation import EvaluationResult, bootstrap_metrics, read_predictions
from polymodal.evaluation.figures import survival_calibration as sc
from polymodal.evaluation.figures import survival_curves
from polymodal.evaluation.figures.clinical import ClinicalFigures
from polymodal.evaluation.kept_predictions import predictions_table, write_predictions
from polymodal.evaluation.report import build_report
from polymodal.targets import MetricOptions
from polymodal.targets.figure_inputs import HorizonRisks
from polymodal.targets.predictions import PredictionCollector

HORIZONS = np.array([2.0, 5.0, 10.0])


def exponential_cohort(n: int, seed: int = 0, censoring: float = 0.1):
    """Event times exponential with a per-sample rate, independent exponential censoring
    (about half the samples censored). Returns time, event and the true P(event by each of
    HORIZONS) ``(n, 3)``."""
    rng = np.random.default_rng(seed)
    rate = 0.1 * np.exp(rng.normal(size=n))
    event_time = rng.exponential(1 / rate)
    censor_time = rng.exponential(1 / censoring, size=n)
    time, event = np.minimum(event_time, censor_time), event_time <= censor_time
    return time, event, 1 - np.exp(-rate[:, None] * HORIZONS)


def errors(time, event, probability) -> list[float]:
    count = sc.group_count(len(time))
    return [
        sc.calibration_error(*sc.grouped(time, event, probability[:, k], h, count))
        for k, h in enumerate(HORIZONS)
    ]


def test_kaplan_meier_event_probability_is_the_curves_and_unknown_past_the_follow_up() -> None:
    time = np.array([1.0, 2.0, 2.0, 3.0, 4.0, 5.0])
    event = np.array([True, True, False, True, False, False])
    curve = survival_curves.kaplan_meier(time, event)
    for horizon in (0.5, 1.0, 2.5, 3.0, 4.5):
        at = curve.survival[np.searchsorted(curve.time, horizon, side="right") - 1]
        assert sc.km_event_probability(time, event, horizon) == pytest.approx(1 - at)
    # 1 − (5/6)(4/5)(2/3): the censored sample at 2 is at risk at the event at 2.
    assert sc.km_event_probability(time, event, 3.0) == pytest.approx(1 - 5 / 6 * 4 / 5 * 2 / 3)
    assert event[time <= 3.0].mean() == 0.75  # the share of events would say 0.75
    assert np.isnan(sc.km_event_probability(time, event, 6.0))  # nobody followed that far
    assert sc.km_event_probability(np.array([1.0, 2.0]), np.array([True, True]), 9.0) == 1.0


def test_true_probabilities_are_calibrated_and_doubled_ones_are_not() -> None:
    time, event, truth = exponential_cohort(20_000)
    assert 0.3 < 1 - event.mean() < 0.7  # censoring is common
    calibrated = errors(time, event, truth)
    doubled = errors(time, event, np.minimum(2 * truth, 1.0))
    assert max(calibrated) < 0.025, calibrated
    assert all(d > 0.1 and d > 5 * c for d, c in zip(doubled, calibrated, strict=True))


def test_censoring_is_handled_by_kaplan_meier_not_the_share_of_events() -> None:
    time, event, truth = exponential_cohort(20_000)
    k = 2  # the last horizon, by which most censoring has happened
    count = sc.group_count(len(time))
    predicted, observed, sizes = sc.grouped(time, event, truth[:, k], HORIZONS[k], count)
    group = sc.prediction_groups(truth[:, k], count)
    naive = np.bincount(group, weights=event & (time <= HORIZONS[k])) / sizes
    assert sc.calibration_error(predicted, observed, sizes) < 0.025
    assert sc.calibration_error(predicted, naive, sizes) > 0.1  # what a share would claim


def test_few_rows_make_fewer_groups_and_each_group_has_its_share() -> None:
    assert [sc.group_count(n) for n in (5, 60, 199, 5000)] == [1, 3, 9, 10]
    group = sc.prediction_groups(np.linspace(1, 0, 60), 3)
    assert np.bincount(group).tolist() == [20, 20, 20] and group[0] == 2 and group[-1] == 0


def test_the_bootstrap_interval_holds_the_error_and_horizons_are_thinned() -> None:
    time, event, truth = exponential_cohort(400, seed=1)
    rows = HorizonRisks(time, event, HORIZONS, np.minimum(2 * truth, 1.0))
    curves = sc.horizon_calibration(rows, np.arange(400) // 2, n_boot=30, seed=0)
    assert [c.horizon for c in curves] == HORIZONS.tolist()
    for c in curves:
        assert c.error.low <= c.error.point <= c.error.high
        assert len(c.sizes) == 10 and c.sizes.sum() == 400
    assert sc.shown_horizons(np.arange(10.0)).tolist() == [0, 2, 4, 5, 7, 9]


def test_cumulative_risk_follow_up_sits_on_the_horizon_grid() -> None:
    kind = targets.get("cumulative_risk")
    cfg = kind.spec(kind="cumulative_risk", time_column="t", event_column="e", horizons=[1, 2, 3])
    cells = [("1.5", "1"), ("2.5", "0"), ("0.5", "0"), ("9", "0"), ("0.2", "1")]
    y = np.stack([kind.encode(cfg, None, {"t": t, "e": e}).numpy() for t, e in cells])
    risk = np.full((5, 3), 0.25)
    rows = kind.horizon_risks(y, risk, {}, MetricOptions(horizons=[1.0, 2.0, 3.0]))
    # event in (1, 2] → at 2; event-free known through 2 → 2; nothing known → 0; all → 3.
    assert rows.time.tolist() == [2.0, 2.0, 0.0, 3.0, 1.0]
    assert rows.event.tolist() == [True, False, False, False, True]
    assert rows.horizons.tolist() == [1.0, 2.0, 3.0] and rows.probability is not None


def test_time_to_event_discrete_gives_one_minus_survival_and_cox_gives_none() -> None:
    kind = targets.get("time_to_event")
    y = np.array([[1.0, 1.0], [4.0, 0.0]])
    columns = {"risk": np.array([0.6, 0.2]), "survival_t3": np.array([0.4, 0.8]),
               "survival_t1.5": np.array([0.7, 0.9])}  # fmt: skip
    rows = kind.horizon_risks(y, columns["risk"], columns, MetricOptions())
    assert rows.horizons.tolist() == [1.5, 3.0]
    assert rows.probability == pytest.approx(np.array([[0.3, 0.6], [0.1, 0.2]]))
    assert (
        kind.horizon_risks(y, columns["risk"], {"risk": columns["risk"]}, MetricOptions()) is None
    )


DISCRETE = {"kind": "time_to_event", "n_outputs": 3, "loss": "discrete", "bins": HORIZONS.tolist()}


def write_survival_model(folder: Path, scale: float) -> Path:
    """``folder/eval.json`` and its kept predictions: a discrete-time model whose survival at
    each bin edge is the true one's, with event probabilities times ``scale``."""
    n = 300
    time, event, truth = exponential_cohort(n, seed=2)
    probability = np.minimum(scale * truth, 1.0)
    ids, groups = [f"s{i}" for i in range(n)], [f"p{i // 2}" for i in range(n)]
    y = np.stack([time, event], axis=1).astype(np.float32)
    collector = PredictionCollector({"death": DISCRETE})
    batch = {
        "ids": ids,
        "groups": groups,
        "targets": {"death": torch.as_tensor(y)},
        "target_mask": {"death": torch.ones(n, dtype=torch.bool)},
    }
    outputs = {"risk": probability[:, -1], "survival": 1 - probability}
    collector.add(batch, {"death": {k: torch.as_tensor(v) for k, v in outputs.items()}})
    y_true, pred, g = collector.arrays("death")
    result = EvaluationResult(settings={"model": str(folder / "model"), "split": "test"})
    ci = bootstrap_metrics("time_to_event", y_true, pred, g, n_boot=20)
    result.add("death", "time_to_event", ("image",), ci)
    table = predictions_table(
        {("image",): collector}, {"image": np.ones(n, dtype=bool)}, {"death": DISCRETE},
        result.settings,
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    write_predictions(folder / "eval.predictions.parquet", table)
    (folder / "eval.json").write_text(result.to_json(), encoding="utf-8")
    return folder / "eval.json"


def test_the_report_shows_calibration_at_each_horizon_beside_the_auroc(tmp_path: Path) -> None:
    paths = {
        "true": write_survival_model(tmp_path / "true", 1.0),
        "doubled": write_survival_model(tmp_path / "doubled", 2.0),
    }
    results = {m: EvaluationResult.from_json(p.read_text()) for m, p in paths.items()}
    kept = {m: read_predictions(p.with_name("eval.predictions.parquet")) for m, p in paths.items()}
    html = build_report(results, tmp_path / "report", predictions=kept, figure_boot=10)
    page = html.read_text(encoding="utf-8")
    alts = re.findall(r'alt="([^"]*)"', page)
    auroc = next(i for i, a in enumerate(alts) if a.startswith("Time-dependent AUROC"))
    calibration = alts[auroc + 1]  # the next figure
    assert calibration.startswith("Calibration at each horizon, death with image")
    first = {m: float(re.search(rf"{m}: ([0-9.]+) ", calibration)[1]) for m in paths}
    assert first["doubled"] > first["true"] + 0.05  # the first horizon's error
    assert "by 2, " in calibration and "by 10." in calibration
    assert (tmp_path / "report" / "horizon_calibration_death_with_image.png").is_file()
    assert "Calibration at each horizon: the next figure." in page


def test_clinical_figures_draw_calibration_for_cumulative_risk(tmp_path: Path) -> None:
    kind = targets.get("cumulative_risk")
    info = {"kind": "cumulative_risk", "n_outputs": 4, "horizons": HORIZONS.tolist()}
    cfg = kind.spec(
        kind="cumulative_risk", time_column="t", event_column="e", horizons=HORIZONS.tolist()
    )
    time, event, truth = exponential_cohort(120, seed=3)
    y = np.stack([
        kind.encode(cfg, None, {"t": f"{t}", "e": str(int(e))}).numpy()
        for t, e in zip(time, event, strict=True)
    ])  # fmt: skip
    collector = PredictionCollector({"cancer": info})
    collector.add(
        {
            "ids": [f"s{i}" for i in range(120)],
            "groups": [f"p{i}" for i in range(120)],
            "targets": {"cancer": torch.as_tensor(y)},
            "target_mask": {"cancer": torch.ones(120, dtype=torch.bool)},
        },
        {"cancer": {"risk": torch.as_tensor(truth, dtype=torch.float32)}},
    )
    table = predictions_table(
        {("ct",): collector}, {"ct": np.ones(120, dtype=bool)}, {"cancer": info}, {}
    )
    kept = read_predictions(write_predictions(tmp_path / "c.parquet", table))
    sections = ClinicalFigures({"a": kept}, tmp_path, n_boot=10, seed=0).target("cancer", [("ct",)])
    (figure,) = sections[0].figures  # no Kaplan–Meier by risk group: the label keeps no times
    assert figure.file_name == "horizon_calibration_cancer_with_ct.png"
    assert "in 6 groups" in figure.alt  # 120 rows: 20 per group
    assert re.search(r"a: [0-9.]+ \([0-9.]+–[0-9.]+\) by 2, .* by 5, .* by 10\.$", figure.alt)
