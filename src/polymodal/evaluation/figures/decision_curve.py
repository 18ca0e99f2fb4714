"""Decision curve: the net benefit of treating the patients whose predicted probability is at
least a threshold t, against t, with treat-all and treat-none (Vickers & Elkin 2006).

net benefit(t) = TP/n − FP/n · t/(1 − t): the true positives found, less the false positives
weighted by the odds at which a clinician would accept one unnecessary treatment. Treat all:
prevalence − (1 − prevalence) · t/(1 − t); treat none: 0.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from polymodal.evaluation.figures.bands import Band, curve_band
from polymodal.evaluation.report_figures import _text, model_colors

THRESHOLDS = np.round(np.arange(0.01, 0.99, 0.01), 2)  # (98,): 0.01 … 0.98


def net_benefit(positive: np.ndarray, probability: np.ndarray, thresholds=THRESHOLDS):
    """Net benefit ``(T,)`` of treating where ``probability ≥ t``, for each threshold."""
    positive = np.asarray(positive, bool)
    treated = np.asarray(probability)[None, :] >= thresholds[:, None]  # (T, n)
    n = len(positive)
    true_pos = (treated & positive).sum(axis=1) / n
    false_pos = (treated & ~positive).sum(axis=1) / n
    return true_pos - false_pos * thresholds / (1.0 - thresholds)


def treat_all(prevalence: float, thresholds=THRESHOLDS) -> np.ndarray:
    """Net benefit ``(T,)`` of treating everyone."""
    return prevalence - (1.0 - prevalence) * thresholds / (1.0 - thresholds)


def decision_band(positive, probability, groups, *, n_boot: int = 200, seed: int = 0) -> Band:
    """The model's decision curve with its bootstrap band."""
    return curve_band(
        lambda y, p: (net_benefit(y, p), {}),
        THRESHOLDS,
        positive,
        probability,
        groups,
        n_boot=n_boot,
        seed=seed,
    )


def decision_figure(bands: Mapping[str, Band], prevalence: float, title: str) -> Figure:
    """Net benefit against threshold for each model, treat-all and treat-none."""
    colors = model_colors(list(bands))
    figure = Figure(figsize=(7.5, 4.3))
    ax = figure.add_subplot()
    everyone = treat_all(prevalence)
    ax.plot(THRESHOLDS, everyone, color="grey", linestyle="--", label="treat all")
    ax.axhline(0.0, color="black", linewidth=1, label="treat none")
    for model, band in bands.items():
        ax.fill_between(band.grid, band.low, band.high, color=colors[model], alpha=0.18)
        ax.plot(band.grid, band.point, color=colors[model], linewidth=2, label=_text(model))
    top = max(prevalence, np.nanmax([np.nanmax(b.high) for b in bands.values()] + [0.0]))
    ax.set_ylim(-0.05 - 0.1 * top, top * 1.1 + 0.02)
    ax.set_xlim(0, 1)
    ax.set(xlabel="threshold probability (treat if predicted ≥ threshold)", ylabel="net benefit")
    ax.set_title(_text(title))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    return figure
