"""Metrics of many bootstrap resamples at once, each resample a weight per row.

A patient-grouped bootstrap resample counts row i as often as its patient was drawn
(:func:`polymodal.evaluation.paired_tests.grouped_weights`). Every metric here takes those counts
as weights ``w (R, n)`` and returns ``(R,)`` values, so R resamples cost a few array operations,
not R calls of scikit-learn. With ``w = 1`` they equal the metrics of
:func:`polymodal.evaluation.metrics.compute_metrics`; :mod:`polymodal.evaluation.compare` checks
that on the full data and leaves out any metric where the two disagree.

The form of a target's data picks its scores, not the kind's name (:func:`scores_for`):

=========================================  =======================================================
data (kind traits, shapes)                 metrics
=========================================  =======================================================
class-valued, probability ``(n,)``         auroc, auprc, sensitivity_at_specificity, accuracy,
                                           balanced_accuracy, f1, brier, ece
class-valued, probabilities ``(n, K)``     auroc[c], auprc[c] and their macro means,
                                           sensitivity_at_specificity_macro, accuracy,
                                           balanced_accuracy, f1_macro, brier, ece (top label)
multi-label, probabilities ``(n, K)``      auroc[l], auprc[l], their macro means, f1_macro,
                                           brier, ece
neither, value ``(n,)`` vs label ``(n,)``  mae, rmse, r2, pearson_r
=========================================  =======================================================

Other data (time-to-event pairs, horizons, digits) have no resampled form yet: compare says so.
Undefined values are NaN, as in :mod:`polymodal.evaluation.metrics` (AUROC of a resample without
negatives; macro means when a class is undefined).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from polymodal.targets import MetricOptions, TargetKind
from polymodal.targets.scores import class_names

Metrics = dict[str, np.ndarray]  # metric name → (R,) values


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (undefined, never 0 or 1)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def _strict_mean(columns: list[np.ndarray]) -> np.ndarray:
    """Mean over classes of ``(R,)`` arrays; NaN when any class is NaN (strict macro)."""
    return np.mean(np.stack(columns), axis=0)


class Ranking:
    """One score ranked against one yes/no outcome, ready for weighted ROC/PR summaries.

    Rows are sorted once by (score, outcome) and each run of equal (score, outcome) pooled into
    a segment, so each resample's weight per segment is one ``np.add.reduceat``. Every
    summary then reads the positive segments (AUROC, AP) or the negative ones (sensitivity),
    never a full ``(R, distinct scores)`` grid: a few passes over half the columns.
    """

    def __init__(self, positive: np.ndarray, score: np.ndarray) -> None:
        self.positive = np.asarray(positive, dtype=bool)
        self.score = np.asarray(score, dtype=np.float64)
        _, codes = np.unique(self.score, return_inverse=True)
        segment = codes.reshape(-1) * 2 + self.positive  # a score's negatives sort first
        self.order = np.argsort(segment, kind="stable")
        ranked = segment[self.order]
        self.starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
        seg_score, seg_positive = ranked[self.starts] // 2, ranked[self.starts] % 2 == 1
        self.pos_segments = np.flatnonzero(seg_positive)  # (Sp,) ascending score
        self.neg_segments = np.flatnonzero(~seg_positive)  # (Sn,)
        pos_score, neg_score = seg_score[seg_positive], seg_score[~seg_positive]
        # Negative segments scored ≤ each positive one, and whether one of them ties it.
        self.neg_up_to = np.searchsorted(neg_score, pos_score, side="right")  # (Sp,)
        ties = self.neg_up_to > 0
        ties[ties] = neg_score[self.neg_up_to[ties] - 1] == pos_score[ties]
        self.tied_neg = np.where(ties, self.neg_up_to, 0)  # (Sp,) into [0, N] (0: none)
        self.pos_up_to = np.searchsorted(pos_score, neg_score, side="right")  # (Sn,)

    def segment_weights(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weight of each positive and each negative segment, ascending: ``(R, Sp), (R, Sn)``."""
        # np.take, not w[:, index]: numpy's fancy indexing of columns is several times slower.
        if len(self.starts) == len(self.order):  # no tied (score, outcome) rows
            return (
                np.take(w, self.order[self.pos_segments], axis=1),
                np.take(w, self.order[self.neg_segments], axis=1),
            )
        ranked = np.add.reduceat(np.take(w, self.order, axis=1), self.starts, axis=1)
        return np.take(ranked, self.pos_segments, axis=1), np.take(
            ranked, self.neg_segments, axis=1
        )

    def summaries(self, w: np.ndarray, specificity: float) -> tuple[np.ndarray, ...]:
        """(AUROC, average precision, best sensitivity at ≥ ``specificity``), each ``(R,)``.

        AUROC is the Mann–Whitney form (ties count ½), equal to the trapezoidal ROC area;
        average precision is scikit-learn's Σ ΔRecall·Precision over distinct thresholds.
        ``w`` may be float32 (see :func:`compact_counts`): the sums and products here are then
        whole (or half) numbers, exact, and every total and ratio is taken in float64.
        """
        if not len(self.pos_segments) or not len(self.neg_segments):
            undefined = np.full(len(w), np.nan)
            return undefined, undefined, undefined
        pos, neg = self.segment_weights(w)
        cum_pos = np.cumsum(pos, axis=1)
        cum_neg = np.zeros((len(w), neg.shape[1] + 1), dtype=neg.dtype)  # (R, Sn + 1)
        np.cumsum(neg, axis=1, out=cum_neg[:, 1:])
        n_pos, n_neg = cum_pos[:, -1:], cum_neg[:, -1:]  # (R, 1), exact
        neg_up_to = np.take(cum_neg, self.neg_up_to, axis=1)  # (R, Sp): negatives ≤ a positive
        neg_tied = np.take(np.pad(neg, ((0, 0), (1, 0))), self.tied_neg, axis=1)  # … = it
        pairs = n_pos[:, 0].astype(np.float64) * n_neg[:, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            below = (pos * (neg_up_to - 0.5 * neg_tied)).sum(axis=1, dtype=np.float64)
            auroc = below / pairs
            # Calling every score ≥ a positive's score positive: true and false positives.
            tp = n_pos - cum_pos + pos
            called = tp + (n_neg - neg_up_to + neg_tied)
            precision = np.divide(
                tp, called, out=np.zeros(tp.shape), where=called > 0, dtype=np.float64
            )
            total_pos = n_pos[:, 0].astype(np.float64)
            auprc = (precision * pos).sum(axis=1) / total_pos
            sensitivity = self._sensitivity(cum_pos, cum_neg, specificity) / total_pos
        defined = pairs > 0
        nan = np.nan
        return (
            np.where(defined, auroc, nan),
            np.where(defined, auprc, nan),
            np.where(defined, sensitivity, nan),
        )

    def _sensitivity(
        self, cum_pos: np.ndarray, cum_neg: np.ndarray, specificity: float
    ) -> np.ndarray:
        """``(R,)`` the most positive weight called at a threshold whose false positive weight
        is ≤ (1 − specificity) of the negatives; 0 when none is (the ROC starts at (0, 0)).

        False positives fall as the threshold rises, so the thresholds that break the bound
        are those at or below the first c negative segments; the best admissible one is just
        above the c-th, and calls every positive scored above it.
        """
        n_pos = cum_pos[:, -1].astype(np.float64)
        n_neg = cum_neg[:, -1].astype(np.float64)
        bound = (1.0 - specificity + 1e-12) * n_neg
        # negatives at or above the j-th negative segment's score > bound ⇔ below it < n − bound
        c = (cum_neg[:, :-1] < (n_neg - bound)[:, None]).sum(axis=1)  # (R,) breaking it
        below = np.where(c > 0, self.pos_up_to[np.maximum(c - 1, 0)], 0)  # (R,) positives ≤
        at = np.take_along_axis(cum_pos, np.maximum(below - 1, 0)[:, None], axis=1)[:, 0]
        return n_pos - np.where(below > 0, at, 0.0)


def compact_counts(w: np.ndarray) -> np.ndarray:
    """Resample counts ``w (R, n)`` as float32 where that is exact for :class:`Ranking`: whole
    numbers whose products with a resample's total stay below 2²³ (half the memory traffic of
    float64 in its gathers and cumulative sums); otherwise ``w`` unchanged."""
    if w.dtype == np.float32 or not len(w):
        return w
    if float(w.max()) * float(w.sum(axis=1).max()) < 2**23 and np.all(w == np.floor(w)):
        return w.astype(np.float32)
    return w


class Calibration:
    """Weighted expected calibration error of one probability against its outcome.

    ``outcome`` and ``prob`` are ``(n,)`` or ``(n, K)`` (every sample-label pair counts once);
    bins are equal-width over [0, 1], as in
    :func:`polymodal.targets.scores.expected_calibration_error`.
    """

    def __init__(self, outcome: np.ndarray, prob: np.ndarray, n_bins: int) -> None:
        outcome = np.asarray(outcome, dtype=np.float64).reshape(len(outcome), -1)
        prob = np.asarray(prob, dtype=np.float64).reshape(len(prob), -1)
        bins = np.minimum((prob * n_bins).astype(np.int64), n_bins - 1)  # (n, K)
        # Each row's Σ (y − p) per bin (n, bins): a resample's per-bin gap is then w @ gap.
        self.gap = np.zeros((len(prob), n_bins))
        rows = np.repeat(np.arange(len(prob)), prob.shape[1])
        np.add.at(self.gap, (rows, bins.ravel()), (outcome - prob).ravel())
        self.pairs_per_row = prob.shape[1]

    def ece(self, w: np.ndarray) -> np.ndarray:
        """``(R,)``: Σ_bins |Σ w·(y − p)| / (Σ w · K)."""
        return np.abs(w @ self.gap).sum(axis=1) / (w.sum(axis=1) * self.pairs_per_row)


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    return _ratio(2 * tp, 2 * tp + fp + fn)


@dataclass(frozen=True)
class ResampledScores:
    """One model's scores of one target, ready to be computed on many resamples.

    ``metrics(w)`` gives ``{metric: (R,)}`` for row weights ``w (R, n)``; ``rankings`` names the
    yes/no rankings behind each AUROC (for DeLong's test); ``correct`` is whether each row is
    right at the decision threshold (for McNemar's test), None when "right" has no meaning.
    """

    metrics: Callable[[np.ndarray], Metrics]
    rankings: dict[str, Ranking]
    correct: np.ndarray | None


def binary_scores(y: np.ndarray, prob: np.ndarray, o: MetricOptions) -> ResampledScores:
    """A probability of one outcome ``prob (n,)`` against ``y (n,)`` in {0, 1}."""
    y = y.astype(np.float64)
    ranking = Ranking(y == 1, prob)
    predicted = (prob >= o.threshold).astype(np.float64)
    calibration = Calibration(y, prob, o.n_bins_ece)

    def metrics(w: np.ndarray) -> Metrics:
        total = w.sum(axis=1)
        n_pos = w @ y
        tp, fp = w @ (y * predicted), w @ ((1 - y) * predicted)
        fn, tn = n_pos - tp, total - n_pos - fp
        auroc, auprc, sensitivity = ranking.summaries(compact_counts(w), o.specificity)
        defined = (n_pos > 0) & (n_pos < total)  # both classes present
        return {
            "auroc": auroc,
            "auprc": auprc,
            "balanced_accuracy": np.where(
                defined, (_ratio(tp, n_pos) + _ratio(tn, total - n_pos)) / 2, np.nan
            ),
            "accuracy": (tp + tn) / total,
            "f1": _f1(tp, fp, fn),
            "sensitivity_at_specificity": sensitivity,
            "brier": (w @ (y - prob) ** 2) / total,
            "ece": calibration.ece(w),
        }

    return ResampledScores(metrics, {"auroc": ranking}, predicted == y)


def class_scores(y: np.ndarray, prob: np.ndarray, o: MetricOptions) -> ResampledScores:
    """Class probabilities ``prob (n, K)`` against class indices ``y (n,)``; one-vs-rest."""
    count = prob.shape[1]
    names = class_names("class", o.classes, count)
    y = y.astype(np.int64)
    one_hot = np.eye(count)[y]  # (n, K)
    predicted = prob.argmax(axis=1)
    predicted_hot = np.eye(count)[predicted]
    correct = predicted == y
    rankings = {f"auroc[{name}]": Ranking(y == k, prob[:, k]) for k, name in enumerate(names)}
    calibration = Calibration(correct, prob.max(axis=1), o.n_bins_ece)  # top label

    def metrics(w: np.ndarray) -> Metrics:
        total = w.sum(axis=1)
        counts = compact_counts(w)  # once for every class
        per_class = [r.summaries(counts, o.specificity) for r in rankings.values()]
        n_true, n_predicted = w @ one_hot, w @ predicted_hot  # (R, K)
        tp = w @ (one_hot * predicted_hot)
        recall = _ratio(tp, n_true)
        out: Metrics = {
            "auroc_macro": _strict_mean([c[0] for c in per_class]),
            "auprc_macro": _strict_mean([c[1] for c in per_class]),
            "balanced_accuracy": recall.mean(axis=1),
            "accuracy": (w @ correct) / total,
            "f1_macro": _f1(tp, n_predicted - tp, n_true - tp).mean(axis=1),
            "sensitivity_at_specificity_macro": _strict_mean([c[2] for c in per_class]),
            "brier": (w @ ((prob - one_hot) ** 2).sum(axis=1)) / total,
            "ece": calibration.ece(w),
        }
        for name, (auroc, auprc, _) in zip(names, per_class, strict=True):
            out[f"auroc[{name}]"] = auroc
            out[f"auprc[{name}]"] = auprc
        return out

    return ResampledScores(metrics, rankings, correct)


def label_scores(y: np.ndarray, prob: np.ndarray, o: MetricOptions) -> ResampledScores:
    """Independent probabilities ``prob (n, K)`` of K yes/no labels ``y (n, K)``."""
    count = prob.shape[1]
    names = class_names("label", o.classes, count)
    y = y.astype(np.float64)
    predicted = (prob >= o.threshold).astype(np.float64)
    rankings = {f"auroc[{name}]": Ranking(y[:, k] == 1, prob[:, k]) for k, name in enumerate(names)}
    calibration = Calibration(y, prob, o.n_bins_ece)  # every sample-label pair

    def metrics(w: np.ndarray) -> Metrics:
        counts = compact_counts(w)  # once for every label
        per_label = [r.summaries(counts, o.specificity) for r in rankings.values()]
        n_true, n_predicted = w @ y, w @ predicted  # (R, K)
        tp = w @ (y * predicted)
        out: Metrics = {
            "auroc_macro": _strict_mean([c[0] for c in per_label]),
            "auprc_macro": _strict_mean([c[1] for c in per_label]),
            "f1_macro": _f1(tp, n_predicted - tp, n_true - tp).mean(axis=1),
            "brier": (w @ ((y - prob) ** 2).mean(axis=1)) / w.sum(axis=1),
            "ece": calibration.ece(w),
        }
        for name, (auroc, auprc, _) in zip(names, per_label, strict=True):
            out[f"auroc[{name}]"] = auroc
            out[f"auprc[{name}]"] = auprc
        return out

    return ResampledScores(metrics, rankings, None)


def value_scores(y: np.ndarray, pred: np.ndarray, o: MetricOptions) -> ResampledScores:
    """A predicted value ``pred (n,)`` against a measured one ``y (n,)``."""
    y = y.astype(np.float64)
    pred = pred.astype(np.float64)

    def metrics(w: np.ndarray) -> Metrics:
        total = w.sum(axis=1)
        error = y - pred
        y_centred = y - ((w @ y) / total)[:, None]  # (R, n)
        p_centred = pred - ((w @ pred) / total)[:, None]
        y_spread = (w * y_centred**2).sum(axis=1)
        p_spread = (w * p_centred**2).sum(axis=1)
        # A resample of a single label value has no spread: R² and r undefined (NaN), as on
        # the full data. Rounding leaves ~1e-30 where it should be 0.
        varies = y_spread > 1e-12 * (w @ y**2 + 1e-300)
        covaries = varies & (p_spread > 1e-12 * (w @ pred**2 + 1e-300))
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = 1.0 - (w @ error**2) / y_spread
            r = (w * y_centred * p_centred).sum(axis=1) / np.sqrt(y_spread * p_spread)
        return {
            "mae": (w @ np.abs(error)) / total,
            "rmse": np.sqrt((w @ error**2) / total),
            "r2": np.where(varies, r2, np.nan),
            "pearson_r": np.where(covaries, r, np.nan),
        }

    return ResampledScores(metrics, {}, None)


def scores_for(
    kind: TargetKind, y: np.ndarray, prediction: np.ndarray, options: MetricOptions
) -> ResampledScores | None:
    """The resampled scores of one target's data, chosen by the kind's traits and the shapes
    of its labels and predictions; None when none applies."""
    y, prediction = np.asarray(y), np.asarray(prediction, dtype=np.float64)
    if kind.multi_label and y.ndim == 2 and prediction.shape == y.shape:
        return label_scores(y, prediction, options)
    if kind.class_valued and y.ndim == 1 and prediction.ndim == 1:
        return binary_scores(y, prediction, options)
    if kind.class_valued and y.ndim == 1 and prediction.ndim == 2:
        return class_scores(y, prediction, options)
    if not (kind.class_valued or kind.multi_label) and y.ndim == prediction.ndim == 1:
        return value_scores(y, prediction, options)
    return None


def agreeing(
    resampled: Metrics, reference: dict[str, float], names: Sequence[str] | None = None
) -> list[str]:
    """Metrics whose full-data value (``resampled`` at ``w = 1``, each ``(1,)``) equals the
    reference (:func:`compute_metrics`), both undefined counting as equal."""
    out = []
    for name in names if names is not None else resampled:
        if name not in resampled or name not in reference:
            continue
        mine, theirs = float(resampled[name][0]), float(reference[name])
        if (np.isnan(mine) and np.isnan(theirs)) or np.isclose(mine, theirs, rtol=1e-7, atol=1e-9):
            out.append(name)
    return out
