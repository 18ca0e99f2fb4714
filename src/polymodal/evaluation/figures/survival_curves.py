"""Kaplan–Meier curves of the observed event-free share in groups of predicted risk (thirds
of the risk score): a model that ranks patients well separates the curves, highest risk lowest;
and the time-dependent AUROC (cases: event by the horizon; controls: event-free beyond it) over
horizons at the percentiles of the event times, with a patient-grouped bootstrap band.

The product-limit estimate S(t) = Π_{event times s ≤ t} (1 − d_s / n_s), with d_s events at s
and n_s samples still followed just before s (censored samples leave after their time).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score

from polymodal.evaluation.bootstrap import bootstrap_ci
from polymodal.evaluation.report_figures import _text, model_colors
from polymodal.targets.figure_inputs import SurvivalRows

GROUPS = ("low risk", "middle risk", "high risk")


@dataclass(frozen=True)
class Curve:
    """A step function: ``time`` ``(m,)`` from 0 and the event-free share from then on."""

    time: np.ndarray
    survival: np.ndarray
    n: int
    events: int


def kaplan_meier(time: np.ndarray, event: np.ndarray) -> Curve:
    """The product-limit estimate of samples with follow-up ``time`` and ``event`` (bool)."""
    time, event = np.asarray(time, float), np.asarray(event, bool)
    times = np.unique(time[event])
    at_risk = np.array([(time >= t).sum() for t in times])
    deaths = np.array([(time[event] == t).sum() for t in times])
    survival = np.cumprod(1.0 - deaths / at_risk) if len(times) else np.array([])
    return Curve(np.r_[0.0, times], np.r_[1.0, survival], len(time), int(event.sum()))


def risk_groups(rows: SurvivalRows) -> dict[str, Curve]:
    """Kaplan–Meier curve of each third of the predicted risk (ties kept in one group)."""
    cuts = np.quantile(rows.risk, [1 / 3, 2 / 3])
    group = np.searchsorted(cuts, rows.risk, side="left")  # 0, 1, 2
    return {
        GROUPS[g]: kaplan_meier(rows.time[group == g], rows.event[group == g])
        for g in range(3)
        if (group == g).any()
    }


def survival_figure(curves: Mapping[str, dict[str, Curve]], title: str) -> Figure:
    """One panel per model: the risk groups' Kaplan–Meier curves."""
    figure = Figure(figsize=(5.0 * len(curves), 4.0))
    axes = np.atleast_1d(figure.subplots(1, len(curves), squeeze=False)[0])
    colors = {"low risk": "#1b9e77", "middle risk": "#7570b3", "high risk": "#d95f02"}
    for ax, (model, groups) in zip(axes, curves.items(), strict=True):
        for name, curve in groups.items():
            ax.step(curve.time, curve.survival, where="post", color=colors[name],
                    label=f"{name} (n={curve.n}, events={curve.events})")  # fmt: skip
        ax.set(xlabel="time", ylabel="event-free share (Kaplan–Meier)", ylim=(0, 1.02))
        ax.set_title(_text(model))
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    figure.suptitle(_text(title))
    return figure


def auroc_over_time(time: np.ndarray, event: np.ndarray, risk: np.ndarray, horizons: np.ndarray):
    """Cumulative/dynamic AUROC at each horizon ``(H,)``: cases had the event by the horizon,
    controls are event-free beyond it, samples censored before it are left out (no censoring
    weights), as the tables' ``auroc_at_horizon``; NaN where cases or controls are missing."""
    event = np.asarray(event, bool)
    out = np.full(len(horizons), np.nan)
    for i, horizon in enumerate(horizons):
        case, control = event & (time <= horizon), time > horizon
        if case.any() and control.any():
            keep = case | control
            out[i] = roc_auc_score(case[keep], risk[keep])
    return out


def horizons_of(rows: SurvivalRows, count: int = 9) -> np.ndarray:
    """Horizons at the 10th … 90th percentiles of the event times (``count`` of them)."""
    times = rows.time[rows.event] if rows.event.any() else rows.time
    return np.unique(np.quantile(times, np.linspace(0.1, 0.9, count)))


def auroc_band(rows: SurvivalRows, groups, horizons: np.ndarray, *, n_boot: int, seed: int):
    """AUROC over time with its patient-grouped bootstrap band: (point, low, high) ``(H,)``."""

    def metrics(time, event, risk):
        values = auroc_over_time(time, event, risk, horizons)
        return {f"_{i}": float(v) for i, v in enumerate(values)}

    ci = bootstrap_ci(metrics, (rows.time, rows.event, rows.risk), groups, n_boot=n_boot, seed=seed)
    keys = [f"_{i}" for i in range(len(horizons))]
    return tuple(
        np.array([getattr(ci[k], part) for k in keys]) for part in ("point", "low", "high")
    )


def auroc_figure(bands: Mapping[str, tuple], horizons: np.ndarray, title: str) -> Figure:
    """Time-dependent AUROC per model with its band, and the no-skill 0.5 line."""
    colors = model_colors(list(bands))
    figure = Figure(figsize=(7.0, 4.0))
    ax = figure.add_subplot()
    ax.axhline(0.5, color="grey", linestyle="--", label="no skill (0.5)")
    for model, (point, low, high) in bands.items():
        ax.fill_between(horizons, low, high, color=colors[model], alpha=0.18)
        ax.plot(horizons, point, "o-", color=colors[model], markersize=3, label=_text(model))
    ax.set(xlabel="horizon (time)", ylabel="AUROC at the horizon", ylim=(0, 1.02))
    ax.set_title(_text(title))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return figure
