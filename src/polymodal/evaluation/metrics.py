"""Metrics for every target kind, computed with scikit-learn; undefined means NaN with a reason.

A metric that cannot be computed on the given labels (AUROC when only one class is present, R²
of a constant target, a C-index without comparable pairs) is NaN and
:attr:`MetricValues.reasons` says why. It is never replaced by a neutral-looking number such as
0.5: a silent 0.5 hides exactly the subsets where evaluation is unreliable.

Macro averages are strict: when a per-class value is undefined, the macro value is undefined
too, so that a macro figure always averages over the same classes (also across bootstrap
resamples).

Inputs of the first kinds (numpy arrays, one row per sample; a kind's file has its own):

===============  ==========================  ============================================
kind             ``y_true``                  ``prob_or_pred``
===============  ==========================  ============================================
binary           ``(n,)`` in {0, 1}          ``(n,)`` P(positive)
multiclass       ``(n,)`` class index        ``(n, K)`` softmax probabilities
multilabel       ``(n, K)`` in {0, 1}        ``(n, K)`` per-label probabilities
regression       ``(n,)`` float              ``(n,)`` prediction
time_to_event    ``(n, 2)`` (time, event)    ``(n,)`` risk score, higher = earlier event
cumulative_risk  ``(n, 2K)`` labels, mask    ``(n, K)`` risk by each of K horizons
digits           ``(n, D)`` digits 0..9      ``(n, D)`` predicted digits
===============  ==========================  ============================================

Each kind scores itself (``TargetKind.metrics`` in its file under :mod:`polymodal.targets`);
this module checks the inputs every kind shares and dispatches.

``cumulative_risk`` labels are encoded as in :mod:`polymodal.data.batch`: the first K columns
say "event by horizon k", the last K whether that is known (not censored before it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sklearn

from polymodal import targets
from polymodal.targets.cumulative_risk import cumulative_risk_metrics
from polymodal.targets.digits import digits_metrics
from polymodal.targets.scores import (
    EvaluationError,
    MetricOptions,
    MetricValues,
    expected_calibration_error,
    harrell_c_index,
)

__all__ = [
    "KINDS",
    "EvaluationError",
    "MetricValues",
    "compute_metrics",
    "cumulative_risk_metrics",
    "digits_metrics",
    "expected_calibration_error",
    "harrell_c_index",
]
KINDS = tuple(targets.TARGETS.names())


def compute_metrics(
    kind: str,
    y_true: np.ndarray | Sequence,
    prob_or_pred: np.ndarray | Sequence,
    *,
    classes: Sequence[str] | None = None,
    specificity: float = 0.9,
    n_bins_ece: int = 15,
    threshold: float = 0.5,
    horizon: float | None = None,
    horizons: Sequence[float] | None = None,
) -> MetricValues:
    """All metrics of one target kind on one set of predictions.

    Args:
        kind: one of :data:`KINDS`.
        y_true: labels, shape per kind in the module docstring.
        prob_or_pred: probabilities, predictions or risk scores, shape per kind.
        classes: class (multiclass) or label (multilabel) names, in column order; "0", "1", …
            when omitted. They name per-class metrics: ``auroc[melanoma]``.
        specificity: operating point for ``sensitivity_at_specificity`` (one-vs-rest per class
            for multiclass): the highest sensitivity whose specificity is at least this.
        n_bins_ece: equal-width bins over [0, 1] for the expected calibration error.
        threshold: a sample is predicted positive when P ≥ threshold (binary and multilabel
            accuracy, F1, balanced accuracy). Multiclass predictions are the argmax.
        horizon: time_to_event only: also report ``auroc_at_horizon`` at this time.
        horizons: cumulative_risk only: the K horizons, which name the per-horizon metrics
            (``auroc[2]``); 1, 2, …, K when omitted.

    Returns:
        binary: auroc, auprc, balanced_accuracy, accuracy, f1, sensitivity_at_specificity,
        brier, ece (of P(positive)).
        multiclass: auroc_macro, auprc_macro, balanced_accuracy, accuracy, f1_macro,
        sensitivity_at_specificity_macro, brier (squared distance of the probability vector
        to the one-hot label, summed over classes, 0–2), ece (top-label), then per class
        ``auroc[c]`` and ``auprc[c]`` (one-vs-rest).
        multilabel: auroc_macro, auprc_macro, f1_macro, brier (mean over all entries), ece
        (over all sample-label pairs), then per label ``auroc[l]``, ``auprc[l]``.
        regression: mae, rmse, r2, pearson_r.
        time_to_event: c_index (Harrell), and auroc_at_horizon when ``horizon`` is given.
        cumulative_risk: auroc_mean (over horizons, strict like the macro averages), c_index
        (see :func:`cumulative_risk_metrics`), then ``auroc[h]`` per horizon h.
        digits: exact_match, digit_accuracy_mean, mae (of the values the digits spell), then
        ``digit_accuracy[i]`` per digit position i (1 = most significant).
        Any other kind: as its file in :mod:`polymodal.targets` documents.

    Raises:
        EvaluationError: shapes disagree, a value is NaN, a label is out of range, or
            probabilities are outside [0, 1] (logits passed by mistake).
    """
    if kind not in targets.TARGETS:
        raise EvaluationError(f"unknown target kind {kind!r}; expected one of {KINDS}")
    if not 0.0 < specificity < 1.0:
        raise EvaluationError(f"specificity must be between 0 and 1, got {specificity}")
    if n_bins_ece < 1:
        raise EvaluationError(f"n_bins_ece must be at least 1, got {n_bins_ece}")
    scorer = targets.get(kind)
    y = scorer.label_array(y_true)
    if y.dtype.kind not in "biuf":
        raise EvaluationError(
            f"{kind} metrics: y_true holds {y.dtype} values; pass encoded numeric labels "
            "(class indices in the order of `classes`, 0/1 for binary and multilabel)"
        )
    pred = np.asarray(prob_or_pred, dtype=np.float64)
    if len(y) == 0:
        raise EvaluationError(f"{kind} metrics: no samples to score (y_true is empty)")
    if len(pred) != len(y):
        raise EvaluationError(
            f"{kind} metrics: y_true has {len(y)} rows but the predictions have {len(pred)}; "
            "pass one prediction per labelled sample"
        )
    options = MetricOptions(classes, specificity, n_bins_ece, threshold, horizon, horizons)
    # Inputs are checked here (with messages naming the row), so scikit-learn's own repeated
    # checks are skipped: they are most of its cost inside a 1000-fold bootstrap.
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        return scorer.metrics(y, pred, options)
