"""Empirical coverage of conformal prediction sets or intervals, with grouped bootstrap CIs.

``polymodal evaluate`` on a model folder with ``conformal.json`` adds, per target and modality
subset, three entries to the metrics: ``coverage`` (the share of labelled rows whose set or
interval holds the label), ``set_size`` (mean classes per set) or ``interval_width`` (mean
width), and ``coverage_target`` (what the thresholds were calibrated for, as a point without an
interval). The intervals resample patients, as every other metric's
(:func:`polymodal.evaluation.bootstrap.bootstrap_ci`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from polymodal.calibration.conformal import TargetConformal
from polymodal.evaluation.bootstrap import BootstrapResult, MetricCI, bootstrap_ci
from polymodal.evaluation.tables import EvaluationResult


def coverage_metrics(
    conformal: TargetConformal,
    coverage_target: float,
    info: Mapping,
    outputs: Mapping[str, np.ndarray],
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    n_boot: int,
    seed: int,
) -> BootstrapResult:
    """Coverage and mean size of the labelled rows' sets/intervals (``outputs`` and ``labels``
    of those rows, ``(n, …)``), with percentile intervals over resampled patients."""
    covered, size = conformal.hits(info, outputs, labels)
    size_name = "interval_width" if conformal.family == "interval" else "set_size"

    def summary(covered: np.ndarray, size: np.ndarray) -> dict[str, float]:
        return {"coverage": float(np.mean(covered)), size_name: float(np.mean(size))}

    result = bootstrap_ci(summary, (covered, size), groups, n_boot=n_boot, seed=seed)
    result["coverage_target"] = MetricCI(coverage_target, math.nan, math.nan, 0)
    return result


def coverage_lines(result: EvaluationResult) -> list[str]:
    """One sentence per target and subset whose metrics hold a conformal coverage, e.g.
    ``label (lesion + labs): 90 % sets held the label in 0.91 (0.87–0.94) of rows; mean set
    size 1.32 (1.25–1.40)``."""
    lines = []
    for name, target in result.targets.items():
        for subset in target.subsets:
            metrics = subset.metrics
            if "coverage" not in metrics:
                continue
            size_name = "set_size" if "set_size" in metrics else "interval_width"
            what = "sets" if size_name == "set_size" else "intervals"
            lines.append(
                f"{name} ({subset.label}): {metrics['coverage_target'].point:.0%} conformal "
                f"{what} held the label in {_ci(metrics['coverage'])} of rows; mean "
                f"{size_name.replace('_', ' ')} {_ci(metrics[size_name])}"
            )
    return lines


def _ci(value: MetricCI) -> str:
    if math.isnan(value.low):
        return f"{value.point:.3f}"
    return f"{value.point:.3f} ({value.low:.3f}–{value.high:.3f})"
