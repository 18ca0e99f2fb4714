"""Calibration of a survival target at each horizon: the predicted probability of an event by
the horizon against the observed one, in equal-count groups of the prediction (deciles; fewer
groups when there are few rows), with a calibration error and its patient-grouped bootstrap
interval. One panel per horizon, the diagonal marking perfect calibration.

The observed probability of a group is the Kaplan–Meier estimate 1 − S(horizon), not the share
of its samples with an event by the horizon: a sample censored before the horizon has an unknown
status there, and counting it as event-free would bias the observed probability down by as much
as censoring is common.

Calibration error at a horizon (an ECE against Kaplan–Meier): Σ_g n_g |p̄_g − KM_g| / Σ_g n_g
over the groups g whose Kaplan–Meier estimate reaches the horizon, with p̄_g the group's mean
predicted probability and n_g its size. It is 0 for a model whose probabilities are the true
ones (up to sampling noise) and grows with how far they are off.

Only kinds that predict a probability of an event by a time get this figure
(:meth:`~polymodal.targets.base.TargetKind.horizon_risks`): ``cumulative_risk`` (its risk by
each horizon) and ``time_to_event`` with the discrete-time loss (1 − its survival at each bin
edge). The Cox loss predicts a risk score with no baseline hazard, which is no probability.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from polymodal.evaluation.bootstrap import MetricCI, bootstrap_ci
from polymodal.evaluation.report_figures import _text, model_colors
from polymodal.targets.figure_inputs import HorizonRisks

MAX_GROUPS = 10  # deciles of the prediction
MIN_PER_GROUP = 20  # fewer rows per group make each Kaplan–Meier estimate too noisy to read
MAX_HORIZONS = 6  # panels; more horizons are thinned evenly (the first and last kept)


def km_event_probability(time: np.ndarray, event: np.ndarray, horizon: float) -> float:
    """Kaplan–Meier probability of an event by ``horizon``, 1 − S(horizon), of samples with
    follow-up ``time`` ``(n,)`` and ``event`` ``(n,)`` bool. NaN when no sample is followed to
    the horizon and the estimate has not reached 1 (its value there is unknown)."""
    time, event = np.asarray(time, float), np.asarray(event, bool)
    if len(time) == 0:
        return np.nan
    event_times, deaths = np.unique(time[event & (time <= horizon)], return_counts=True)
    # At risk just before t: samples whose follow-up reaches t (censored ones leave after it).
    at_risk = len(time) - np.searchsorted(np.sort(time), event_times, side="left")
    survival = float(np.prod(1.0 - deaths / at_risk))
    if survival > 0 and not (time >= horizon).any():
        return np.nan
    return 1.0 - survival


def group_count(n: int) -> int:
    """How many groups ``n`` rows make: deciles, fewer so that each holds ≥ MIN_PER_GROUP."""
    return int(np.clip(n // MIN_PER_GROUP, 1, MAX_GROUPS))


def prediction_groups(probability: np.ndarray, count: int) -> np.ndarray:
    """Group index ``(n,)`` in 0 … count − 1: equal-count groups by rank of ``probability``."""
    order = np.argsort(probability, kind="stable")
    group = np.empty(len(probability), dtype=np.int64)
    group[order] = np.arange(len(probability)) * count // max(len(probability), 1)
    return group


def grouped(time, event, probability, horizon: float, count: int):
    """Per group ``(count,)``: mean predicted probability, Kaplan–Meier observed probability
    by ``horizon`` (NaN where unknown) and size."""
    group = prediction_groups(probability, count)
    sizes = np.bincount(group, minlength=count)
    with np.errstate(invalid="ignore", divide="ignore"):
        predicted = np.bincount(group, weights=probability, minlength=count) / sizes
    observed = np.array(
        [km_event_probability(time[group == g], event[group == g], horizon) for g in range(count)]
    )
    return predicted, observed, sizes


def calibration_error(predicted: np.ndarray, observed: np.ndarray, sizes: np.ndarray) -> float:
    """Σ n_g |p̄_g − KM_g| / Σ n_g over the groups with a known observed probability."""
    known = np.isfinite(observed) & (sizes > 0)
    if not known.any():
        return np.nan
    return float(np.average(np.abs(predicted[known] - observed[known]), weights=sizes[known]))


def shown_horizons(horizons: np.ndarray) -> np.ndarray:
    """Indices of the horizons drawn: all, or MAX_HORIZONS spread evenly over them."""
    if len(horizons) <= MAX_HORIZONS:
        return np.arange(len(horizons))
    return np.unique(np.linspace(0, len(horizons) - 1, MAX_HORIZONS).round().astype(int))


@dataclass(frozen=True)
class HorizonCalibration:
    """One model at one horizon. Per group ``(G,)``: mean predicted probability, Kaplan–Meier
    observed probability with its bootstrap interval, and size; the calibration error with
    its interval."""

    horizon: float
    predicted: np.ndarray
    observed: np.ndarray
    low: np.ndarray
    high: np.ndarray
    sizes: np.ndarray
    error: MetricCI


def horizon_calibration(
    rows: HorizonRisks, groups, *, n_boot: int = 200, seed: int = 0
) -> list[HorizonCalibration]:
    """Calibration at each shown horizon of one model, with patient-grouped bootstrap
    intervals (each resample regroups its rows by its own ranks of the prediction)."""
    shown = shown_horizons(rows.horizons)
    count = group_count(len(rows.time))

    def metrics(time, event, probability):
        out = {}
        for k in shown:
            predicted, observed, sizes = grouped(
                time, event, probability[:, k], rows.horizons[k], count
            )
            out[f"error{k}"] = calibration_error(predicted, observed, sizes)
            out |= {f"observed{k}_{g}": float(v) for g, v in enumerate(observed)}
        return out

    data = (rows.time, rows.event, rows.probability)
    ci = bootstrap_ci(metrics, data, groups, n_boot=n_boot, seed=seed)
    out = []
    for k in shown:
        predicted, _, sizes = grouped(
            rows.time, rows.event, rows.probability[:, k], rows.horizons[k], count
        )
        parts = [[ci[f"observed{k}_{g}"][i] for g in range(count)] for i in range(3)]
        out.append(
            HorizonCalibration(
                float(rows.horizons[k]), predicted, *map(np.array, parts), sizes, ci[f"error{k}"]
            )
        )
    return out


def error_text(error: MetricCI) -> str:
    """``"0.031 (0.018–0.052)"``; ``"n/a"`` when undefined."""
    if np.isnan(error.point):
        return "n/a"
    interval = "" if np.isnan(error.low) else f" ({error.low:.3f}–{error.high:.3f})"
    return f"{error.point:.3f}{interval}"


def calibration_figure(curves: Mapping[str, list[HorizonCalibration]], title: str) -> Figure:
    """One panel per horizon: each model's observed (Kaplan–Meier, with its bootstrap bars)
    against predicted probability per group, and the diagonal of perfect calibration."""
    colors = model_colors(list(curves))
    n_panels = len(next(iter(curves.values())))
    n_cols = min(3, n_panels)
    n_rows = -(-n_panels // n_cols)
    figure = Figure(figsize=(4.0 * n_cols, 3.8 * n_rows + 0.6), layout="constrained")
    axes = figure.subplots(n_rows, n_cols, squeeze=False).ravel()
    for j, ax in enumerate(axes):
        if j >= n_panels:
            ax.set_axis_off()
            continue
        horizon = next(iter(curves.values()))[j].horizon
        top = 0.05
        for model, per_horizon in curves.items():
            c = per_horizon[j]
            shown = np.isfinite(c.observed) & (c.sizes > 0)
            # A resample regroups its rows, so a group's point can lie outside its interval.
            below = np.clip(np.nan_to_num(c.observed - c.low), 0, None)[shown]
            above = np.clip(np.nan_to_num(c.high - c.observed), 0, None)[shown]
            ax.errorbar(c.predicted[shown], c.observed[shown], yerr=[below, above], fmt="o-",
                        color=colors[model], capsize=2, markersize=4,
                        label=_text(f"{model}: ECE {error_text(c.error)}"))  # fmt: skip
            values = np.r_[c.predicted[shown], np.nan_to_num(c.high)[shown]]
            top = max(top, float(values.max()) if len(values) else 0.0)
        limit = min(1.0, 1.1 * top)
        ax.plot([0, limit], [0, limit], color="black", linewidth=1, label="perfect calibration")
        ax.set(xlim=(0, 1.02 * limit), ylim=(0, 1.02 * limit), title=f"by horizon {horizon:g}")
        ax.set(xlabel="predicted P(event by horizon)", ylabel="observed (Kaplan–Meier)")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=7)
    figure.suptitle(_text(title))
    return figure
