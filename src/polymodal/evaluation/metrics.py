"""Metrics for every target kind, computed with scikit-learn; undefined means NaN with a reason.

A metric that cannot be computed on the given labels (AUROC when only one class is present, R²
of a constant target, a C-index without comparable pairs) is NaN and
:attr:`MetricValues.reasons` says why. It is never replaced by a neutral-looking number such as
0.5: a silent 0.5 hides exactly the subsets where evaluation is unreliable.

Macro averages are strict: when a per-class value is undefined, the macro value is undefined
too, so that a macro figure always averages over the same classes (also across bootstrap
resamples).

Inputs per kind (numpy arrays, one row per sample):

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

``cumulative_risk`` labels are encoded as in :mod:`polymodal.data.batch`: the first K columns
say "event by horizon k", the last K whether that is known (not censored before it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import sklearn
from scipy.stats import pearsonr
from sklearn.metrics import (
    accuracy_score,
    auc,
    average_precision_score,
    brier_score_loss,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_fscore_support,
    r2_score,
    roc_curve,
)

from polymodal.data.spec import TARGET_KINDS as KINDS
from polymodal.errors import PolymodalError


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

    Raises:
        EvaluationError: shapes disagree, a value is NaN, a label is out of range, or
            probabilities are outside [0, 1] (logits passed by mistake).
    """
    if kind not in KINDS:
        raise EvaluationError(f"unknown target kind {kind!r}; expected one of {KINDS}")
    if not 0.0 < specificity < 1.0:
        raise EvaluationError(f"specificity must be between 0 and 1, got {specificity}")
    if n_bins_ece < 1:
        raise EvaluationError(f"n_bins_ece must be at least 1, got {n_bins_ece}")
    if kind == "time_to_event" and isinstance(y_true, tuple) and len(y_true) == 2:
        y_true = np.stack([np.asarray(y_true[0]), np.asarray(y_true[1])], axis=1)  # (n, 2)
    y = np.asarray(y_true)
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
    # Inputs are checked here (with messages naming the row), so scikit-learn's own repeated
    # checks are skipped: they are most of its cost inside a 1000-fold bootstrap.
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        if kind == "binary":
            return _binary(kind, y, pred, specificity, n_bins_ece, threshold)
        if kind == "multiclass":
            return _multiclass(kind, y, pred, classes, specificity, n_bins_ece)
        if kind == "multilabel":
            return _multilabel(kind, y, pred, classes, n_bins_ece, threshold)
        if kind == "regression":
            return _regression(kind, y, pred)
        if kind == "cumulative_risk":
            return cumulative_risk_metrics(y, pred, horizons)
        if kind == "digits":
            return digits_metrics(y, pred)
        return _time_to_event(kind, y, pred, horizon)


# --------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------


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


def _auroc(positive: np.ndarray, score: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(positive, score, drop_intermediate=False)
    return float(auc(fpr, tpr))


def _roc_summary(
    positive: np.ndarray, score: np.ndarray, specificity: float
) -> tuple[float, float]:
    """(AUROC, highest sensitivity with specificity ≥ ``specificity``) from one ROC curve."""
    # Keep every threshold: dropping collinear points could drop the best admissible one.
    fpr, tpr, _ = roc_curve(positive, score, drop_intermediate=False)
    admissible = fpr <= 1.0 - specificity + 1e-12  # roc_curve starts at (0, 0): never empty
    return float(auc(fpr, tpr)), float(tpr[admissible].max())


def _one_class_reason(positive: np.ndarray, what: str) -> str | None:
    """Why a one-vs-rest ranking metric is undefined for ``what``, or None when it is not."""
    n_pos = int(positive.sum())
    if n_pos == 0:
        return f"{what} has no positive samples"
    if n_pos == len(positive):
        return f"{what} has no negative samples"
    return None


def _set_macro(out: MetricValues, name: str, values: list[float], reasons: list[str | None]):
    undefined = [r for r in reasons if r is not None]
    if undefined:
        out.undefined(
            name, f"{len(undefined)} of {len(values)} per-class values undefined: {undefined[0]}"
        )
    else:
        out[name] = float(np.mean(values))


def _set_per_class(
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


def _check_probabilities(kind: str, prob: np.ndarray) -> None:
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


def _check_binary_labels(kind: str, y: np.ndarray) -> np.ndarray:
    y = y.astype(np.float64)
    bad = np.argwhere((y != 0) & (y != 1))  # (n_bad, y.ndim)
    if len(bad):
        where = f"row {bad[0][0]}" + (f", column {bad[0][1]}" if y.ndim == 2 else "")
        raise EvaluationError(
            f"{kind} metrics: y_true at {where} is {float(y[tuple(bad[0])])!r}, expected 0 or "
            "1; drop samples without a label (target_mask False) before scoring"
        )
    return y.astype(np.int64)


def _names(kind: str, classes: Sequence[str] | None, n_columns: int) -> list[str]:
    if classes is None:
        return [str(k) for k in range(n_columns)]
    if len(classes) != n_columns:
        raise EvaluationError(
            f"{kind} metrics: {len(classes)} class names for {n_columns} probability columns; "
            "pass the names in the column order of the model output"
        )
    return [str(c) for c in classes]


# --------------------------------------------------------------------------------------------
# One function per kind
# --------------------------------------------------------------------------------------------


def _binary(kind, y, prob, specificity, n_bins, threshold) -> MetricValues:
    if y.ndim != 1 or prob.ndim != 1:
        raise EvaluationError(
            f"binary metrics: expected y_true (n,) and prob (n,), got {y.shape} and {prob.shape}"
        )
    y = _check_binary_labels(kind, y)
    _check_probabilities(kind, prob)
    one_class = _one_class_reason(y, "y_true")
    auroc = sensitivity = math.nan
    if one_class is None:
        auroc, sensitivity = _roc_summary(y, prob, specificity)
    predicted = (prob >= threshold).astype(np.int64)
    _, recall, f1, _ = precision_recall_fscore_support(
        y, predicted, labels=[0, 1], zero_division=np.nan
    )

    out = MetricValues()
    if one_class is None:
        out["auroc"] = auroc
        out["auprc"] = float(average_precision_score(y, prob))
        out["balanced_accuracy"] = float(recall.mean())
    else:
        for name in ("auroc", "auprc", "balanced_accuracy"):
            out.undefined(name, f"{one_class}; it needs both classes")
    out["accuracy"] = float(accuracy_score(y, predicted))
    if np.isfinite(f1[1]):
        out["f1"] = float(f1[1])
    else:
        out.undefined("f1", "no positive labels and no positive predictions")
    if one_class is None:
        out["sensitivity_at_specificity"] = sensitivity
    else:
        out.undefined("sensitivity_at_specificity", f"{one_class}; it needs both classes")
    out["brier"] = float(brier_score_loss(y, prob))
    out["ece"] = expected_calibration_error(y, prob, n_bins)
    return out


def _multiclass(kind, y, prob, classes, specificity, n_bins) -> MetricValues:
    if y.ndim != 1 or prob.ndim != 2 or prob.shape[1] < 2:
        raise EvaluationError(
            f"multiclass metrics: expected y_true (n,) and prob (n, K) with K ≥ 2, got "
            f"{y.shape} and {prob.shape}"
        )
    n_classes = prob.shape[1]
    names = _names(kind, classes, n_classes)
    if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
        raise EvaluationError(
            "multiclass metrics: y_true must hold integer class indices; drop samples without "
            "a label (target_mask False) before scoring"
        )
    y = y.astype(np.int64)
    out_of_range = np.flatnonzero((y < 0) | (y >= n_classes))
    if len(out_of_range):
        raise EvaluationError(
            f"multiclass metrics: y_true at row {out_of_range[0]} is {y[out_of_range[0]]}, "
            f"outside the {n_classes} classes 0..{n_classes - 1}"
        )
    _check_probabilities(kind, prob)
    off = np.flatnonzero(np.abs(prob.sum(axis=1) - 1.0) > 1e-3)
    if len(off):
        raise EvaluationError(
            f"multiclass metrics: probabilities of row {off[0]} sum to "
            f"{prob[off[0]].sum():.4f}, not 1; pass softmax probabilities"
        )

    aurocs, auprcs, sensitivities, reasons = [], [], [], []
    for k, name in enumerate(names):
        positive = (y == k).astype(np.int64)
        reason = _one_class_reason(positive, f"class {name!r}")
        reasons.append(reason)
        if reason is None:
            auroc, sensitivity = _roc_summary(positive, prob[:, k], specificity)
            auprc = float(average_precision_score(positive, prob[:, k]))
        else:
            auroc = sensitivity = auprc = math.nan
        aurocs.append(auroc)
        auprcs.append(auprc)
        sensitivities.append(sensitivity)
    predicted = prob.argmax(axis=1)
    _, recall, f1, _ = precision_recall_fscore_support(
        y, predicted, labels=list(range(n_classes)), zero_division=np.nan
    )
    absent = [names[k] for k in np.flatnonzero(~np.isfinite(recall))]

    out = MetricValues()
    _set_macro(out, "auroc_macro", aurocs, reasons)
    _set_macro(out, "auprc_macro", auprcs, reasons)
    if absent:
        out.undefined("balanced_accuracy", f"class {absent[0]!r} has no samples in y_true")
    else:
        out["balanced_accuracy"] = float(recall.mean())
    out["accuracy"] = float(accuracy_score(y, predicted))
    f1_reasons = [
        None if np.isfinite(v) else f"class {names[k]!r} is neither in y_true nor predicted"
        for k, v in enumerate(f1)
    ]
    _set_macro(out, "f1_macro", list(f1), f1_reasons)
    _set_macro(out, "sensitivity_at_specificity_macro", sensitivities, reasons)
    one_hot = np.eye(n_classes)[y]  # (n, K)
    out["brier"] = float(((prob - one_hot) ** 2).sum(axis=1).mean())
    top_label_correct = (predicted == y).astype(np.float64)
    out["ece"] = expected_calibration_error(top_label_correct, prob.max(axis=1), n_bins)
    _set_per_class(out, names, {"auroc": aurocs, "auprc": auprcs}, reasons)
    return out


def _multilabel(kind, y, prob, classes, n_bins, threshold) -> MetricValues:
    if y.ndim != 2 or prob.shape != y.shape:
        raise EvaluationError(
            f"multilabel metrics: expected y_true and prob of the same shape (n, K), got "
            f"{y.shape} and {prob.shape}"
        )
    names = _names(kind, classes, y.shape[1])
    y = _check_binary_labels(kind, y)
    _check_probabilities(kind, prob)

    aurocs, auprcs, reasons = [], [], []
    for k, name in enumerate(names):
        reason = _one_class_reason(y[:, k], f"label {name!r}")
        reasons.append(reason)
        if reason is None:
            aurocs.append(_auroc(y[:, k], prob[:, k]))
            auprcs.append(float(average_precision_score(y[:, k], prob[:, k])))
        else:
            aurocs.append(math.nan)
            auprcs.append(math.nan)
    predicted = (prob >= threshold).astype(np.int64)
    _, _, f1, _ = precision_recall_fscore_support(y, predicted, zero_division=np.nan)

    out = MetricValues()
    _set_macro(out, "auroc_macro", aurocs, reasons)
    _set_macro(out, "auprc_macro", auprcs, reasons)
    f1_reasons = [
        None if np.isfinite(v) else f"label {names[k]!r} is neither positive nor predicted"
        for k, v in enumerate(f1)
    ]
    _set_macro(out, "f1_macro", list(f1), f1_reasons)
    out["brier"] = float(brier_score_loss(y.ravel(), prob.ravel()))
    out["ece"] = expected_calibration_error(y.ravel(), prob.ravel(), n_bins)
    _set_per_class(out, names, {"auroc": aurocs, "auprc": auprcs}, reasons)
    return out


def _regression(kind, y, pred) -> MetricValues:
    if y.ndim != 1 or pred.ndim != 1:
        raise EvaluationError(
            f"regression metrics: expected y_true (n,) and pred (n,), got {y.shape} and "
            f"{pred.shape}"
        )
    y = y.astype(np.float64)
    for what, values in (("y_true", y), ("pred", pred)):
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise EvaluationError(
                f"regression metrics: {what} at row {bad[0]} is {values[bad[0]]}; drop samples "
                "without a label (target_mask False) or a prediction before scoring"
            )
    out = MetricValues()
    out["mae"] = float(mean_absolute_error(y, pred))
    out["rmse"] = math.sqrt(mean_squared_error(y, pred))
    if np.ptp(y) == 0:
        out.undefined("r2", "y_true is constant; R² needs a target that varies")
    else:
        out["r2"] = float(r2_score(y, pred))
    if np.ptp(y) == 0 or np.ptp(pred) == 0:
        which = "y_true" if np.ptp(y) == 0 else "the predictions"
        out.undefined("pearson_r", f"{which} are constant; a correlation needs variation")
    else:
        out["pearson_r"] = float(pearsonr(y, pred).statistic)
    return out


def _time_to_event(kind, y, risk, horizon) -> MetricValues:
    if y.ndim != 2 or y.shape[1] != 2 or risk.ndim != 1:
        raise EvaluationError(
            f"time_to_event metrics: expected y_true (n, 2) holding (time, event) and risk (n,), "
            f"got {y.shape} and {risk.shape}"
        )
    time = y[:, 0].astype(np.float64)
    event = _check_binary_labels(kind, y[:, 1]).astype(bool)
    for what, values in (("time", time), ("risk", risk)):
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise EvaluationError(
                f"time_to_event metrics: {what} at row {bad[0]} is {values[bad[0]]}; drop "
                "samples without a label or a prediction before scoring"
            )
    out = MetricValues()
    c_index, n_comparable = harrell_c_index(time, event, risk)
    if n_comparable == 0:
        out.undefined("c_index", "no comparable pairs (needs an event before another time)")
    else:
        out["c_index"] = c_index
    if horizon is not None:
        # Cases: event by the horizon; controls: event-free beyond it. Samples censored before
        # the horizon have unknown status there and are left out (no censoring weights).
        case = event & (time <= horizon)
        control = time > horizon
        if not case.any() or not control.any():
            missing = "no event by" if not case.any() else "no sample event-free beyond"
            out.undefined("auroc_at_horizon", f"{missing} the horizon {horizon:g}")
        else:
            keep = case | control
            out["auroc_at_horizon"] = _auroc(case[keep], risk[keep])
    return out


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


def cumulative_risk_metrics(
    y: np.ndarray, risk: np.ndarray, horizons: Sequence[float] | None = None
) -> MetricValues:
    """Per-horizon AUROC, their mean and a C-index of cumulative risks (M3FM).

    ``auroc[h]`` ranks ``risk[:, k]`` against "event by horizon h" among the samples whose
    status at h is known (censored ones before h are left out, without censoring weights).
    ``c_index`` is Harrell's C-index of the last-horizon risk against the follow-up the label
    keeps: an event counts at the first horizon by which it happened, a censored sample as
    event-free up to its last known horizon. Pairs that fall between the same two horizons are
    not comparable, so this is Harrell's index on follow-up discretised to the horizons.

    Args:
        y: ``(n, 2K)`` labels then label mask, in {0, 1}. risk: ``(n, K)`` in [0, 1].
        horizons: the K horizons (names of the per-horizon metrics); 1..K when omitted.
    """
    kind = "cumulative_risk"
    if y.ndim != 2 or risk.ndim != 2 or y.shape[1] != 2 * risk.shape[1]:
        raise EvaluationError(
            f"{kind} metrics: expected y_true (n, 2K) holding labels then label mask and risk "
            f"(n, K), got {y.shape} and {risk.shape}"
        )
    n_horizons = risk.shape[1]
    given = None if horizons is None else [f"{h:g}" for h in horizons]
    names = _names(kind, given, n_horizons) if given else [str(k + 1) for k in range(n_horizons)]
    y = _check_binary_labels(kind, y).astype(bool)
    _check_probabilities(kind, risk)
    known = y[:, n_horizons:]
    labels = y[:, :n_horizons] & known  # (n, K)

    aurocs, reasons = [], []
    for k, name in enumerate(names):
        keep = known[:, k]
        reason = (
            f"no sample's status is known at horizon {name}"
            if not keep.any()
            else _one_class_reason(labels[keep, k], f"horizon {name}")
        )
        reasons.append(reason)
        aurocs.append(math.nan if reason else _auroc(labels[keep, k], risk[keep, k]))

    out = MetricValues()
    _set_macro(out, "auroc_mean", aurocs, reasons)
    # Follow-up as horizon positions: the C-index depends on the order of times only.
    event = labels.any(axis=1)
    time = np.where(event, labels.argmax(axis=1), known.sum(axis=1) - 1)
    c_index, n_comparable = harrell_c_index(time, event, risk[:, -1])
    if n_comparable == 0:
        out.undefined("c_index", "no comparable pairs (needs an event before another follow-up)")
    else:
        out["c_index"] = c_index
    _set_per_class(out, names, {"auroc": aurocs}, reasons)
    return out


def digits_metrics(y: np.ndarray, predicted: np.ndarray) -> MetricValues:
    """Exact match, per-digit accuracy and the mean absolute error of the spelled values.

    Args:
        y: ``(n, D)`` true digits, most significant first. predicted: ``(n, D)`` predicted
            digits (the head's ``digits`` output).
    """
    kind = "digits"
    if y.ndim != 2 or predicted.shape != y.shape:
        raise EvaluationError(
            f"{kind} metrics: expected y_true and predicted digits of the same shape (n, D), "
            f"got {y.shape} and {predicted.shape}"
        )
    for what, values in (("y_true", y), ("predicted", predicted)):
        bad = np.argwhere(~np.isin(values, np.arange(10)))
        if len(bad):
            raise EvaluationError(
                f"{kind} metrics: {what} at row {bad[0][0]}, digit {bad[0][1] + 1} is "
                f"{values[tuple(bad[0])].item()!r}, not a digit 0..9; pass the head's 'digits' "
                "output and drop samples without a label (target_mask False) before scoring"
            )
    y, predicted = y.astype(np.int64), predicted.astype(np.int64)
    place_values = 10 ** np.arange(y.shape[1] - 1, -1, -1)  # (D,)
    correct = y == predicted  # (n, D)
    per_digit = correct.mean(axis=0)
    out = MetricValues()
    out["exact_match"] = float(correct.all(axis=1).mean())
    out["digit_accuracy_mean"] = float(per_digit.mean())
    out["mae"] = float(mean_absolute_error(y @ place_values, predicted @ place_values))
    for position, accuracy in enumerate(per_digit, start=1):
        out[f"digit_accuracy[{position}]"] = float(accuracy)
    return out
