"""The two figures of the robustness report, drawn with matplotlib's Agg canvas.

``robustness_figure``: a metric against the number of missing modalities, one line per model.
``subsets_figure``: a forest plot of every modality subset × model with its interval.

Figures are built with :class:`matplotlib.figure.Figure` (not pyplot), so no display and no global
backend state are involved, and saved without a timestamp, so the same results give the same
PNG bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from polymodal.evaluation.report_plan import TargetPlan, lower_is_better
from polymodal.evaluation.tables import SubsetResult, _header

DPI = 110


@dataclass(frozen=True)
class MissingCount:
    """The line point of one model at one number of missing modalities.

    Attributes:
        n_missing: how many of the modalities are missing (0 = all available).
        mean: mean of the subsets' point estimates; NaN when no subset has a defined estimate.
        points: the defined point estimates that were averaged, one per subset.
    """

    n_missing: int
    mean: float
    points: tuple[float, ...]


def mean_by_missing(
    subsets: Iterable[SubsetResult], metric: str, n_modalities: int
) -> list[MissingCount]:
    """Mean point estimate of ``metric`` per number of missing modalities, 0 … M − 1.

    A subset of size k misses ``n_modalities − k`` modalities. Subsets where the metric is
    absent or undefined (NaN) are left out of the mean.
    """
    by_count: dict[int, list[float]] = {k: [] for k in range(n_modalities)}
    for subset in subsets:
        n_missing = n_modalities - len(subset.modalities)
        ci = subset.metrics.get(metric)
        if n_missing in by_count and ci is not None and not math.isnan(ci.point):
            by_count[n_missing].append(ci.point)
    return [
        MissingCount(k, sum(points) / len(points) if points else math.nan, tuple(points))
        for k, points in by_count.items()
    ]


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG bytes, cropped to its content, without a Software/time stamp."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def model_colors(models: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """One tab10 colour per model, in order (cycling after ten)."""
    palette = matplotlib.colormaps["tab10"].colors
    return {model: palette[i % len(palette)] for i, model in enumerate(models)}


def _text(label: str) -> str:
    """A model name as literal matplotlib text: ``$`` would start mathtext."""
    return label.replace("$", r"\$")


def _metric_label(metric: str) -> str:
    better = "lower is better" if lower_is_better(metric) else "higher is better"
    return f"{_header(metric)} ({better})"


def _interval(subset: SubsetResult, metric: str) -> tuple[float, float, float] | None:
    """(point, below, above) error-bar lengths; None when the point is undefined."""
    ci = subset.metrics.get(metric)
    if ci is None or math.isnan(ci.point):
        return None
    if math.isnan(ci.low) or math.isnan(ci.high):
        return ci.point, 0.0, 0.0
    return ci.point, max(ci.point - ci.low, 0.0), max(ci.high - ci.point, 0.0)


def robustness_figure(plan: TargetPlan, models: Sequence[str]) -> Figure:
    """The plan's metric against missing-modality count: mean line + each subset with its CI."""
    colors = model_colors(models)
    n_modalities = len(plan.modalities)
    figure = Figure(figsize=(7.5, 4.2))
    ax = figure.add_subplot()
    # models side by side around each integer count, and the subsets of one count spread
    # within a model's slot, so no two error bars are drawn on top of each other
    slot = 0.7 / max(len(models), 1)
    for i, model in enumerate(models):
        shift = (i - (len(models) - 1) / 2) * slot
        subsets = [r for s in plan.subsets if (r := plan.result(model, s)) is not None]
        for n_missing in range(n_modalities):
            group = [
                (r, bar)
                for r in subsets
                if n_modalities - len(r.modalities) == n_missing
                and (bar := _interval(r, plan.metric)) is not None
            ]
            for j, (_, (point, below, above)) in enumerate(group):
                spread = (j - (len(group) - 1) / 2) * slot * 0.8 / max(len(group), 1)
                ax.errorbar(
                    n_missing + shift + spread,
                    point,
                    yerr=[[below], [above]],
                    fmt="o",
                    color=colors[model],
                    alpha=0.35,
                    markersize=4,
                    elinewidth=1,
                    capsize=2,
                )
        means = mean_by_missing(subsets, plan.metric, n_modalities)
        ax.plot(
            [m.n_missing + shift for m in means],
            [m.mean for m in means],
            marker="s",
            linewidth=2,
            markersize=6,
            color=colors[model],
        )
    ax.set_xticks(range(n_modalities))
    ax.set_xticklabels([str(k) for k in range(n_modalities)])
    ax.set_xlim(-0.5, n_modalities - 0.5)
    ax.set_xlabel(f"modalities missing (of {n_modalities}: {', '.join(plan.modalities)})")
    ax.set_ylabel(_metric_label(plan.metric))
    ax.set_title(_text(f"{plan.name}: {_header(plan.metric)} vs missing modalities"))
    ax.grid(axis="y", alpha=0.3)
    handles = [
        Line2D([], [], color=colors[m], marker="s", linewidth=2, label=_text(m)) for m in models
    ]
    handles += [
        Line2D([], [], color="grey", marker="s", linewidth=2, label="mean over subsets"),
        Line2D([], [], color="grey", marker="o", alpha=0.4, linestyle="", label="one subset (CI)"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return figure


def subsets_figure(plan: TargetPlan, models: Sequence[str]) -> Figure:
    """Forest plot: one row per subset (largest on top), one point with its CI per model."""
    colors = model_colors(models)
    n_rows = len(plan.subsets)
    row_height = 0.2 + 0.12 * len(models)
    figure = Figure(figsize=(7.5, 1.4 + row_height * n_rows))
    ax = figure.add_subplot()
    slot = 0.7 / max(len(models), 1)
    for row in range(0, n_rows, 2):  # shade every other row so a model's point finds its row
        ax.axhspan(row - 0.5, row + 0.5, color="#f2f2f2", zorder=0)
    for i, model in enumerate(models):
        shift = (i - (len(models) - 1) / 2) * slot
        reference = plan.result(model, plan.subsets[0])
        reference_bar = None if reference is None else _interval(reference, plan.metric)
        if reference_bar is not None:
            ax.axvline(reference_bar[0], color=colors[model], linestyle="--", linewidth=1)
        for row, subset in enumerate(plan.subsets):
            result = plan.result(model, subset)
            bar = None if result is None else _interval(result, plan.metric)
            if bar is None:
                continue
            point, below, above = bar
            ax.errorbar(
                point,
                row + shift,
                xerr=[[below], [above]],
                fmt="o",
                color=colors[model],
                markersize=5,
                capsize=2,
            )
    ax.set_yticks(range(n_rows))
    ax.set_yticklabels([_subset_label(s, plan.modalities) for s in plan.subsets])
    ax.set_ylim(n_rows - 0.5, -0.5)  # largest subset on top
    ax.set_xlabel(_metric_label(plan.metric))
    ax.set_ylabel("modalities available")
    ax.set_title(_text(f"{plan.name}: {_header(plan.metric)} per modality subset"))
    ax.grid(axis="x", alpha=0.3)
    handles = [
        Line2D([], [], color=colors[m], marker="o", linestyle="", label=_text(m)) for m in models
    ]
    handles.append(
        Line2D(
            [], [], color="grey", linestyle="--", label=_text(f"on {' + '.join(plan.subsets[0])}")
        )
    )
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return figure


def _subset_label(subset: tuple[str, ...], modalities: Sequence[str]) -> str:
    """``"image + tabular (no text)"``: the tick says which modalities are gone."""
    missing = [m for m in modalities if m not in subset]
    label = " + ".join(subset)
    return _text(f"{label} (no {', '.join(missing)})" if missing else label)
