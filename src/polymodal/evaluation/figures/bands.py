"""A curve with a pointwise band from the patient-grouped bootstrap.

A curve is a function of the data evaluated on a fixed grid (TPR at each false-positive rate,
net benefit at each threshold), so every resample gives values at the same grid points and the
band is the percentile interval at each point, computed by
:func:`~polymodal.evaluation.bootstrap.bootstrap_ci` (patients, not rows, are resampled).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from polymodal.evaluation.bootstrap import MetricCI, bootstrap_ci

POINT = "_"  # the key of each grid point is its index; extra scalars keep their names


@dataclass(frozen=True)
class Band:
    """Values of a curve on ``grid`` ``(G,)``: ``point``, ``low``, ``high`` ``(G,)`` each
    (NaN where fewer than two resamples were defined), and scalar summaries with their CI
    (``extras["area"]``: the AUROC of a ROC curve)."""

    grid: np.ndarray
    point: np.ndarray
    low: np.ndarray
    high: np.ndarray
    extras: dict[str, MetricCI]
    n_boot: int


def curve_band(
    curve: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, dict[str, float]]],
    grid: np.ndarray,
    positive: np.ndarray,
    probability: np.ndarray,
    groups: np.ndarray | None,
    *,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> Band:
    """``curve(positive, probability) → (values on grid (G,), {name: scalar})`` on the data
    and on ``n_boot`` resamples of patients.

    Args:
        positive: ``(n,)`` bool. probability: ``(n,)``. groups: ``(n,)`` patient ids.
    """

    def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
        values, extras = curve(y.astype(bool), p)
        return {f"{POINT}{i}": float(v) for i, v in enumerate(values)} | extras

    ci = bootstrap_ci(
        metrics, (positive, probability), groups, n_boot=n_boot, level=level, seed=seed
    )
    keys = [f"{POINT}{i}" for i in range(len(grid))]
    return Band(
        grid=np.asarray(grid, dtype=float),
        point=np.array([ci[k].point for k in keys]),
        low=np.array([ci[k].low for k in keys]),
        high=np.array([ci[k].high for k in keys]),
        extras={k: v for k, v in ci.items() if not k.startswith(POINT)},
        n_boot=n_boot,
    )
