"""Reliability diagram: observed frequency against predicted probability in equal-width bins,
with the expected calibration error (ECE) and their patient-grouped bootstrap intervals.

The bins and the ECE are those of the evaluation tables
(:func:`~polymodal.targets.scores.expected_calibration_error`, 15 equal-width bins), so the ECE
in the figure is the one in the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from polymodal.evaluation.bootstrap import MetricCI, bootstrap_ci
from polymodal.evaluation.report_figures import _text, model_colors
from polymodal.targets.scores import expected_calibration_error

N_BINS = 15


@dataclass(frozen=True)
class Reliability:
    """Per bin ``(N_BINS,)``: mean predicted probability, observed frequency with its CI and
    the sample count (NaN where a bin is empty); the ECE with its CI."""

    predicted: np.ndarray
    observed: np.ndarray
    low: np.ndarray
    high: np.ndarray
    counts: np.ndarray
    ece: MetricCI
    n_boot: int


def _bins(probability: np.ndarray) -> np.ndarray:
    return np.minimum((probability * N_BINS).astype(np.int64), N_BINS - 1)


def _binned(positive: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    bins = _bins(probability)
    counts = np.bincount(bins, minlength=N_BINS)
    events = np.bincount(bins, weights=positive.astype(float), minlength=N_BINS)
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = events / counts
    out = {f"observed{i}": float(v) for i, v in enumerate(observed)}
    out["ece"] = expected_calibration_error(positive.astype(float), probability, N_BINS)
    return out


def reliability(
    positive: np.ndarray, probability: np.ndarray, groups, *, n_boot: int = 200, seed: int = 0
) -> Reliability:
    """Bins, observed frequencies and ECE of one outcome, with bootstrap intervals."""
    positive, probability = np.asarray(positive, bool), np.asarray(probability, float)
    ci = bootstrap_ci(_binned, (positive, probability), groups, n_boot=n_boot, seed=seed)
    bins = _bins(probability)
    counts = np.bincount(bins, minlength=N_BINS)
    with np.errstate(invalid="ignore", divide="ignore"):
        predicted = np.bincount(bins, weights=probability, minlength=N_BINS) / counts
    keys = [f"observed{i}" for i in range(N_BINS)]
    return Reliability(
        predicted=predicted,
        observed=np.array([ci[k].point for k in keys]),
        low=np.array([ci[k].low for k in keys]),
        high=np.array([ci[k].high for k in keys]),
        counts=counts,
        ece=ci["ece"],
        n_boot=n_boot,
    )


def reliability_figure(curves: Mapping[str, Reliability], prevalence: float, title: str) -> Figure:
    """Observed vs predicted per bin for each model (with CI bars), the diagonal of perfect
    calibration, the prevalence (no skill), and the sample counts per bin below."""
    colors = model_colors(list(curves))
    figure = Figure(figsize=(6.2, 6.0))
    ax, counts_ax = figure.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], color="black", linewidth=1, label="perfect calibration")
    ax.axhline(prevalence, color="grey", linestyle="--",
               label=f"no skill (prevalence {prevalence:.2f})")  # fmt: skip
    width = 1.0 / N_BINS / max(len(curves), 1)
    for i, (model, r) in enumerate(curves.items()):
        shown = r.counts > 0
        below = np.nan_to_num(r.observed - r.low)[shown]
        above = np.nan_to_num(r.high - r.observed)[shown]
        ece = r.ece
        interval = "" if np.isnan(ece.low) else f" ({ece.low:.3f}–{ece.high:.3f})"
        ax.errorbar(r.predicted[shown], r.observed[shown], yerr=[below, above], fmt="o-",
                    color=colors[model], capsize=2, markersize=4,
                    label=_text(f"{model}: ECE {ece.point:.3f}{interval}"))  # fmt: skip
        left = np.arange(N_BINS) / N_BINS + i * width
        counts_ax.bar(left, r.counts, width=width, align="edge", color=colors[model])
    ax.set(xlim=(0, 1), ylim=(0, 1.02), ylabel="observed frequency", title=_text(title))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    counts_ax.set(xlabel="predicted probability", ylabel="samples")
    counts_ax.grid(axis="y", alpha=0.3)
    return figure
