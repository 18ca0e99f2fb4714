"""ROC and precision–recall curves of one yes/no outcome, models overlaid, with bootstrap bands
and the no-skill line (the diagonal; the prevalence).

The curves are scikit-learn's (``roc_curve``, ``precision_recall_curve``) read on fixed grids:
the ROC as the best true-positive rate reachable at each false-positive rate, the PR curve as
the interpolated precision (the best precision at that recall or more), so the bootstrap's
resamples can be compared point by point.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

from polymodal.evaluation.figures.bands import Band, curve_band
from polymodal.evaluation.report_figures import _text, model_colors

GRID = np.linspace(0.0, 1.0, 101)  # false-positive rate (ROC) or recall (PR)
NAN_CURVE = np.full(len(GRID), np.nan)


def _one_class(positive: np.ndarray) -> bool:
    return positive.all() or not positive.any()


def roc_on_grid(positive: np.ndarray, probability: np.ndarray):
    """TPR at each false-positive rate of :data:`GRID` (the step curve), and ``area``
    (AUROC, scikit-learn's trapezoid over every threshold); NaN with a single class."""
    if _one_class(positive):
        return NAN_CURVE, {"area": np.nan}
    fpr, tpr, _ = roc_curve(positive, probability, drop_intermediate=False)
    at = np.searchsorted(fpr, GRID, side="right") - 1  # last point with fpr ≤ grid
    return tpr[at], {"area": float(auc(fpr, tpr))}


def pr_on_grid(positive: np.ndarray, probability: np.ndarray):
    """Interpolated precision at each recall of :data:`GRID`, and ``area`` (average
    precision, scikit-learn's AUPRC); NaN without positives or negatives."""
    if _one_class(positive):
        return NAN_CURVE, {"area": np.nan}
    precision, recall, _ = precision_recall_curve(positive, probability)
    # recall decreases along the arrays; the best precision at recall ≥ r
    order = np.argsort(recall, kind="stable")
    best = np.maximum.accumulate(precision[order][::-1])[::-1]
    at = np.searchsorted(recall[order], GRID, side="left")
    values = best[np.minimum(at, len(best) - 1)]
    return values, {"area": float(average_precision_score(positive, probability))}


def roc_band(positive, probability, groups, *, n_boot: int = 200, seed: int = 0) -> Band:
    """The ROC curve of one outcome with its bootstrap band and AUROC CI (``extras["area"]``)."""
    return curve_band(roc_on_grid, GRID, positive, probability, groups, n_boot=n_boot, seed=seed)


def pr_band(positive, probability, groups, *, n_boot: int = 200, seed: int = 0) -> Band:
    """The PR curve of one outcome with its bootstrap band and AUPRC CI (``extras["area"]``)."""
    return curve_band(pr_on_grid, GRID, positive, probability, groups, n_boot=n_boot, seed=seed)


def _area_label(model: str, name: str, band: Band) -> str:
    area = band.extras["area"]
    if np.isnan(area.point):
        return _text(f"{model}: {name} n/a (one class only)")
    interval = "" if np.isnan(area.low) else f" ({area.low:.3f}–{area.high:.3f})"
    return _text(f"{model}: {name} {area.point:.3f}{interval}")


def roc_pr_figure(bands: Mapping[str, tuple[Band, Band]], prevalence: float, title: str) -> Figure:
    """Two panels: ROC (left) and PR (right), one line and band per model, no-skill dashed.

    Args:
        bands: model → (ROC band, PR band). prevalence: share of positives (PR's no skill).
    """
    colors = model_colors(list(bands))
    figure = Figure(figsize=(10, 4.3))
    roc_ax, pr_ax = figure.subplots(1, 2)
    for model, (roc, pr) in bands.items():
        for ax, band, name in ((roc_ax, roc, "AUROC"), (pr_ax, pr, "AUPRC")):
            ax.fill_between(band.grid, band.low, band.high, color=colors[model], alpha=0.18)
            ax.plot(band.grid, band.point, color=colors[model], linewidth=2,
                    label=_area_label(model, name, band))  # fmt: skip
    roc_ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="no skill (0.5)")
    pr_ax.axhline(prevalence, color="grey", linestyle="--",
                  label=f"no skill (prevalence {prevalence:.2f})")  # fmt: skip
    roc_ax.set(xlabel="1 − specificity (false-positive rate)", ylabel="sensitivity", title="ROC")
    pr_ax.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title="Precision–recall")
    for ax in (roc_ax, pr_ax):
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right" if ax is roc_ax else "upper right", fontsize=8)
    figure.suptitle(_text(title))
    return figure
