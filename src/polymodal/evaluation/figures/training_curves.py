"""Training curves from a run's Lightning log (``RUN/logs/metrics.csv``, written by
``polymodal fit``): the training and validation loss and the validation metrics per epoch.

The log has one row per logging step; training values are averaged over each epoch's rows and
validation values are logged once per epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from polymodal.evaluation.report_figures import _text, model_colors

LOSSES = ("train/loss", "val/loss")


def metrics_csv(model_folder: Path | str) -> Path:
    """Where ``polymodal fit --out RUN`` logs: ``RUN/logs/metrics.csv`` beside ``RUN/model``."""
    return Path(model_folder).parent / "logs" / "metrics.csv"


def per_epoch(path: Path | str) -> pd.DataFrame:
    """The log as one row per epoch (index: epoch), each column the mean of its logged values;
    columns never logged are dropped."""
    frame = pd.read_csv(path)
    if "epoch" not in frame:
        raise ValueError(f"{path}: no 'epoch' column; is it a Lightning metrics.csv?")
    frame = frame.dropna(subset=["epoch"])
    frame["epoch"] = frame["epoch"].astype(int)
    return frame.groupby("epoch").mean(numeric_only=True).dropna(axis=1, how="all")


def validation_metrics(epochs: pd.DataFrame, headlines: Mapping[str, str]) -> list[str]:
    """The columns ``val/<target>/<metric>`` of each target's headline metric present."""
    return [c for t, m in headlines.items() if (c := f"val/{t}/{m}") in epochs]


def training_figure(
    runs: Mapping[str, pd.DataFrame], headlines: Mapping[str, str], title: str
) -> Figure:
    """Left: training (solid) and validation (dashed) loss per model; right: the targets'
    headline validation metrics."""
    colors = model_colors(list(runs))
    figure = Figure(figsize=(10, 3.8))
    loss_ax, metric_ax = figure.subplots(1, 2)
    for model, epochs in runs.items():
        for column, style in zip(LOSSES, ("-", "--"), strict=True):
            if column in epochs:
                loss_ax.plot(epochs.index, epochs[column], style, color=colors[model],
                             label=_text(f"{model}: {column}"))  # fmt: skip
        for column in validation_metrics(epochs, headlines):
            metric_ax.plot(epochs.index, epochs[column], "o-", color=colors[model],
                           markersize=3, label=_text(f"{model}: {column}"))  # fmt: skip
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
    metric_ax.set(xlabel="epoch", ylabel="validation metric", title="validation metrics")
    for ax in (loss_ax, metric_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    figure.suptitle(_text(title))
    return figure
