"""What every kind's metrics share: the result type, its error, and the common scores.

Metrics are computed with scikit-learn; undefined means NaN with a reason. A metric that cannot
be computed on the given labels (AUROC when only one class is present, R² of a constant target,
a C-index without comparable pairs) is NaN and :attr:`MetricValues.reasons` says why. It is never
replaced by a neutral-looking number such as 0.5: a silent 0.5 hides exactly the subsets where
evaluation is unreliable. Macro averages are strict: when a per-class value is undefined, the
macro value is undefined too, so a macro figure always averages over the same classes.

Each target kind scores its own predictions (``TargetKind.metrics``) with these pieces.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from polymodal.errors import PolymodalError


@dataclass(frozen=True)
class MetricOptions:
    """Options of :func:`polymodal.evaluation.metrics.compute_metrics` that kinds read.

    classes: class or label names in column order; specificity: the operating point of
    ``sensitivity_at_specificity``; n_bins_ece: bins of the calibration error; threshold: a
    probability at or above it is predicted positive; horizon: time_to_event's extra AUROC
    time; horizons: the names of cumulative_risk's per-horizon metrics.
    """

    classes: Sequence[str] | None = None
    specificity: float = 0.9
    n_bins_ece: int = 15
    threshold: float = 0.5
    horizon: float | None = None
    horizons: Sequence[float] | None = None


class EvaluationError(PolymodalError):
    """Predictions or labels handed to evaluation cannot be scored (shape, range, NaN)."""


class MetricValues(dict[str, float]):
    """Metric name → value; NaN where undefined, with the reason in :attr:`reasons`."""

    def __init__(self) -> None:
        super().__init__()
        self.reasons: dict[str, str] = {}

    def undefined(self, name: str, reason: str) -> None:
        """Record ``name`` as NaN because of ``reason`` (a short user-facing sentence)."""
        self[name] = math.nan
        self.reasons[name] = reason


def expected_calibration_error(y: np.ndarray, prob: np.ndarray, n_bins: int = 15) -> float:
    """ECE: Σ_bins |B|/n · |mean outcome − mean probability|, equal-width bins over [0, 1].

    ``y`` (n,) in {0, 1} is the outcome the probability ``prob`` (n,) claims (the positive class,
    or "the top label is correct" for top-label ECE).
    """
    bins = np.minimum((prob * n_bins).astype(np.int64), n_bins - 1)
    observed = np.bincount(bins, weights=y, minlength=n_bins)
    claimed = np.bincount(bins, weights=prob, minlength=n_bins)
    # |B|/n · |mean_y − mean_p| = |Σ_B y − Σ_B p| / n
    return float(np.abs(observed - claimed).sum() / len(y))


def auroc(positive: np.ndarray, score: np.ndarray) -> float:
    # Imported here, not at the top: scikit-learn/SciPy take seconds to import and a
    # model folder that only predicts never needs them (issue 12: load in < 5 s).
    from sklearn.metrics import auc, roc_curve

    fpr, tpr, _ = roc_curve(positive, score, drop_intermediate=False)
    return float(auc(fpr, tpr))


def roc_summary(positive: np.ndarray, score: np.ndarray, specificity: float) -> tuple[float, float]:
    """(AUROC, highest sensitivity with specificity ≥ ``specificity``) from one ROC curve."""
    # Imported here, not at the top: scikit-learn/SciPy take seconds to import and a
    # model folder that only predicts never needs them (issue 12: load in < 5 s).
    from sklearn.metrics import auc, roc_curve

    # Keep every threshold: dropping collinear points could drop the best admissible one.
    fpr, tpr, _ = roc_curve(positive, score, drop_intermediate=False)
    admissible = fpr <= 1.0 - specificity + 1e-12  # roc_curve starts at (0, 0): never empty
    return float(auc(fpr, tpr)), float(tpr[admissible].max())


def one_class_reason(positive: np.ndarray, what: str) -> str | None:
    """Why a one-vs-rest ranking metric is undefined for ``what``, or None when it is not."""
    n_pos = int(positive.sum())
    if n_pos == 0:
        return f"{what} has no positive samples"
    if n_pos == len(positive):
        return f"{what} has no negative samples"
    return None


def set_macro(out: MetricValues, name: str, values: list[float], reasons: list[str | None]):
    undefined = [r for r in reasons if r is not None]
    if undefined:
        out.undefined(
            name, f"{len(undefined)} of {len(values)} per-class values undefined: {undefined[0]}"
        )
    else:
        out[name] = float(np.mean(values))


def set_per_class(
    out: MetricValues,
    names: list[str],
    per_metric: dict[str, list[float]],
    reasons: list[str | None],
) -> None:
    """Record ``metric[name]`` for every class, NaN with its reason where undefined."""
    for metric, values in per_metric.items():
        for name, value, reason in zip(names, values, reasons, strict=True):
            if reason is None:
                out[f"{metric}[{name}]"] = value
            else:
                out.undefined(f"{metric}[{name}]", reason)


def check_probabilities(kind: str, prob: np.ndarray) -> None:
    bad = np.flatnonzero(~np.isfinite(prob.reshape(len(prob), -1)).all(axis=1))
    if len(bad):
        raise EvaluationError(
            f"{kind} metrics: {len(bad)} prediction rows are NaN or infinite (first: row "
            f"{bad[0]}); drop them or fix the model output"
        )
    outside = np.flatnonzero(((prob < 0) | (prob > 1)).reshape(len(prob), -1).any(axis=1))
    if len(outside):
        raise EvaluationError(
            f"{kind} metrics: predictions of row {outside[0]} are outside [0, 1]; pass "
            "probabilities (sigmoid or softmax of the logits), not logits"
        )


def check_binary_labels(kind: str, y: np.ndarray) -> np.ndarray:
    y = y.astype(np.float64)
    bad = np.argwhere((y != 0) & (y != 1))  # (n_bad, y.ndim)
    if len(bad):
        where = f"row {bad[0][0]}" + (f", column {bad[0][1]}" if y.ndim == 2 else "")
        raise EvaluationError(
            f"{kind} metrics: y_true at {where} is {float(y[tuple(bad[0])])!r}, expected 0 or "
            "1; drop samples without a label (target_mask False) before scoring"
        )
    return y.astype(np.int64)


def class_names(kind: str, classes: Sequence[str] | None, n_columns: int) -> list[str]:
    if classes is None:
        return [str(k) for k in range(n_columns)]
    if len(classes) != n_columns:
        raise EvaluationError(
            f"{kind} metrics: {len(classes)} class names for {n_columns} probability columns; "
            "pass the names in the column order of the model output"
        )
    return [str(c) for c in classes]


def harrell_c_index(
    time: np.ndarray, event: np.ndarray, risk: np.ndarray, *, block_pairs: int = 4_000_000
) -> tuple[float, int]:
    """Harrell's concordance index and the number of comparable pairs.

    A pair (i, j) is comparable when sample i has an event and sample j is known to outlive it:
    ``time[j] > time[i]``, or ``time[j] == time[i]`` with j censored. It is concordant when
    ``risk[i] > risk[j]``; a tie in risk counts one half. Returns (NaN, 0) without comparable
    pairs. Vectorised over blocks of event rows: O(n_events · n) time, bounded memory.

    Args:
        time: (n,) follow-up time. event: (n,) bool, True = event observed.
        risk: (n,) higher = earlier event expected.
    """
    time = np.asarray(time, dtype=np.float64)
    event = np.asarray(event, dtype=bool)
    risk = np.asarray(risk, dtype=np.float64)
    event_rows = np.flatnonzero(event)
    n_blocks = max(1, math.ceil(len(event_rows) * len(time) / block_pairs))
    concordant = 0.0
    comparable = 0
    for rows in np.array_split(event_rows, n_blocks):
        t_i, r_i = time[rows, None], risk[rows, None]  # (b, 1) against (n,) → (b, n)
        pairs = (time > t_i) | ((time == t_i) & ~event)
        comparable += int(pairs.sum())
        concordant += (pairs & (risk < r_i)).sum() + 0.5 * (pairs & (risk == r_i)).sum()
    if comparable == 0:
        return math.nan, 0
    return float(concordant / comparable), comparable
