"""Kaplan–Meier curves of the observed event-free share in groups of predicted risk (thirds
of the risk score): a model that ranks patients well separates the curves, highest risk lowest.

The product-limit estimate S(t) = Π_{event times s ≤ t} (1 − d_s / n_s), with d_s events at s
and n_s samples still followed just before s (censored samples leave after their time).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from polymodal.evaluation.report_figures import _text
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
        ax.legend(loc="lower left", fontsize=8)
    figure.suptitle(_text(title))
    return figure
