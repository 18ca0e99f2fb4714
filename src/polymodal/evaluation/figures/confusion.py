"""Confusion matrix of a class-valued target: counts and row-normalised (each true class's
samples spread over the decided classes, so the diagonal is each class's recall)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix

from polymodal.evaluation.report_figures import _text
from polymodal.targets.figure_inputs import DecidedClasses


@dataclass(frozen=True)
class Confusion:
    """``counts`` ``(K, K)``: rows true class, columns decided class; ``normalised``: each row
    divided by its total (NaN for a class without samples); ``names`` and the decision rule."""

    counts: np.ndarray
    normalised: np.ndarray
    names: list[str]
    rule: str


def confusion(decided: DecidedClasses) -> Confusion:
    """The confusion matrix of one model's decided classes (scikit-learn's counts)."""
    labels = list(range(len(decided.names)))
    counts = confusion_matrix(decided.true, decided.predicted, labels=labels)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.where(totals > 0, counts / totals, np.nan)
    return Confusion(counts, normalised, list(decided.names), decided.rule)


def _draw(ax, matrix: np.ndarray, names: list[str], text: np.ndarray, title: str) -> None:
    ax.imshow(np.nan_to_num(matrix / max(np.nanmax(matrix), 1e-12)), cmap="Blues", vmin=0, vmax=1)
    for (row, col), label in np.ndenumerate(text):
        dark = np.nan_to_num(matrix[row, col]) > 0.6 * np.nanmax(matrix)
        ax.text(col, row, label, ha="center", va="center", fontsize=8,
                color="white" if dark else "black")  # fmt: skip
    ticks = range(len(names))
    ax.set_xticks(ticks, [_text(n) for n in names], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, [_text(n) for n in names], fontsize=8)
    ax.set(xlabel="decided class", ylabel="true class", title=_text(title))


def confusion_figure(matrices: Mapping[str, Confusion], title: str) -> Figure:
    """One row per model: counts (left) and row-normalised shares (right)."""
    side = 2.2 + 0.45 * max(len(c.names) for c in matrices.values())
    figure = Figure(figsize=(2 * side + 1, side * len(matrices) + 0.6))
    axes = figure.subplots(len(matrices), 2, squeeze=False)
    for (model, c), (left, right) in zip(matrices.items(), axes, strict=True):
        _draw(left, c.counts.astype(float), c.names, c.counts.astype(str), f"{model}: counts")
        shares = np.vectorize(lambda v: "—" if np.isnan(v) else f"{v:.2f}")(c.normalised)
        _draw(right, c.normalised, c.names, shares, f"{model}: share of each true class")
    figure.suptitle(_text(title))
    figure.tight_layout()
    return figure
