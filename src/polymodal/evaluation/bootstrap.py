"""Percentile bootstrap confidence intervals that resample patients, not rows.

Rows of one patient (or lesion) are correlated: several images, visits or views of the same
person. Resampling rows treats them as independent and gives intervals that are too narrow, so
:func:`bootstrap_ci` draws whole groups with replacement and every row of a drawn group comes
along, as many times as the group was drawn.

A metric that is undefined in a resample (NaN, e.g. AUROC of a resample without positives) is
left out of that resample's statistics; ``n_valid`` says how many resamples the interval rests
on, so a reader can see when it rests on fewer than were drawn.

:func:`bootstrap_metrics` scores all resamples at once where the target's data has a resampled
form (:mod:`polymodal.evaluation.resampled_metrics`: each resample a weight per row) that
reproduces :func:`compute_metrics` on the full data; it draws the same resamples as
:func:`bootstrap_ci` from the same seed, so the intervals are the same, without a Python call
of scikit-learn per resample. Other kinds fall back to :func:`bootstrap_ci`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from polymodal import targets
from polymodal.evaluation.metrics import EvaluationError, compute_metrics
from polymodal.evaluation.paired_tests import group_codes, grouped_weights
from polymodal.evaluation.resampled_metrics import agreeing, scores_for
from polymodal.targets import MetricOptions


class MetricCI(NamedTuple):
    """A metric on the full data and its bootstrap percentile interval."""

    point: float
    low: float
    high: float
    n_valid: int  # resamples in which the metric was defined


class BootstrapResult(dict[str, MetricCI]):
    """Metric name → :class:`MetricCI`, with what the interval was computed from.

    Attributes:
        n_boot: resamples drawn. level: interval coverage (0.95).
        n_samples, n_groups: rows and distinct groups of the full data.
        reasons: metric → why it is NaN on the full data, or why some resamples were left out.
    """

    def __init__(self, n_boot: int, level: float, n_samples: int, n_groups: int) -> None:
        super().__init__()
        self.n_boot = n_boot
        self.level = level
        self.n_samples = n_samples
        self.n_groups = n_groups
        self.reasons: dict[str, str] = {}


class _GroupIndex:
    """Rows sorted by group, so a draw of groups turns into row indices without a Python loop."""

    def __init__(self, groups: np.ndarray) -> None:
        _, codes = np.unique(groups, return_inverse=True)
        self.order = np.argsort(codes, kind="stable")  # rows, grouped
        self.sizes = np.bincount(codes)  # (G,) rows per group
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])  # (G,) into order

    @property
    def n_groups(self) -> int:
        return len(self.sizes)

    def rows(self, drawn: np.ndarray) -> np.ndarray:
        """Row indices of the drawn groups (G_drawn,) → (Σ sizes[drawn],), groups kept whole."""
        sizes = self.sizes[drawn]
        ends = np.cumsum(sizes)
        # position k of the output belongs to drawn group g and is its (k − start_out[g])-th row
        shift = np.repeat(self.starts[drawn] - (ends - sizes), sizes)
        return self.order[np.arange(ends[-1]) + shift]


def _missing_ids(groups: np.ndarray) -> np.ndarray:
    """Rows whose group id is None or NaN (how pandas hands over an empty cell)."""
    if groups.dtype.kind == "f":
        return np.flatnonzero(np.isnan(groups))
    if groups.dtype.kind == "O":
        return np.flatnonzero([g is None or (isinstance(g, float) and g != g) for g in groups])
    return np.array([], dtype=np.int64)


def _take(data: Mapping[str, Any] | Sequence[Any], rows: np.ndarray | slice):
    if isinstance(data, Mapping):
        return {key: value[rows] for key, value in data.items()}
    return [value[rows] for value in data]


def _call(metric_fn: Callable[..., Mapping[str, float]], data) -> Mapping[str, float]:
    return metric_fn(**data) if isinstance(data, Mapping) else metric_fn(*data)


def bootstrap_ci(
    metric_fn: Callable[..., Mapping[str, float]],
    data: Mapping[str, Any] | Sequence[Any],
    groups: Sequence | np.ndarray | None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """Point estimates and grouped percentile bootstrap intervals of several metrics at once.

    Args:
        metric_fn: maps the data to ``{metric: value}``; called as ``metric_fn(*data)`` for a
            sequence and ``metric_fn(**data)`` for a mapping. NaN means undefined. When the
            result has a ``reasons`` dict (like :class:`~polymodal.evaluation.metrics.MetricValues`)
            the reasons are kept.
        data: numpy arrays with one row per sample along the first axis, e.g. ``(y, prob)``.
        groups: (n,) patient or lesion id of every row; None makes every row its own group.
        n_boot: resamples to draw. level: central coverage of the interval.
        seed: seed of the resampling; the same seed gives the same intervals.

    Returns:
        metric → ``MetricCI(point, low, high, n_valid)``. ``point`` is ``metric_fn`` on the full
        data. ``low``/``high`` are NaN when fewer than two resamples gave a finite value.
    """
    if not 0.0 < level < 1.0:
        raise EvaluationError(f"bootstrap level must be between 0 and 1, got {level}")
    if n_boot < 1:
        raise EvaluationError(f"n_boot must be at least 1, got {n_boot}")
    if isinstance(data, np.ndarray):
        raise EvaluationError(
            "bootstrap: pass the data as a tuple of arrays, e.g. (y_true, prob), or a dict"
        )
    arrays = (
        {key: np.asarray(value) for key, value in data.items()}
        if isinstance(data, Mapping)
        else [np.asarray(value) for value in data]
    )
    lengths = {len(a) for a in (arrays.values() if isinstance(arrays, dict) else arrays)}
    if len(lengths) != 1:
        raise EvaluationError(
            f"bootstrap: the data arrays have different numbers of rows {sorted(lengths)}; "
            "pass one row per sample in every array"
        )
    n_samples = lengths.pop()
    if n_samples == 0:
        raise EvaluationError("bootstrap: no samples to resample")
    groups = np.arange(n_samples) if groups is None else np.asarray(groups)
    if len(groups) != n_samples:
        raise EvaluationError(
            f"bootstrap: {len(groups)} group ids for {n_samples} samples; pass the patient id "
            "of every row"
        )
    if len(missing := _missing_ids(groups)):
        raise EvaluationError(
            f"bootstrap: the group id of row {missing[0]} is missing; every row needs a patient id"
        )
    if groups.dtype.kind == "O":
        groups = groups.astype(str)  # mixed int/str ids must still sort
    index = _GroupIndex(groups)

    point = _call(metric_fn, arrays)
    names = list(point)
    values = np.full((n_boot, len(names)), np.nan)  # (n_boot, n_metrics)
    resample_reasons: dict[str, Counter] = {name: Counter() for name in names}
    rng = np.random.default_rng(seed)
    for b in range(n_boot):
        drawn = rng.integers(0, index.n_groups, size=index.n_groups)  # (G,) with replacement
        result = _call(metric_fn, _take(arrays, index.rows(drawn)))
        reasons = getattr(result, "reasons", {})
        for m, name in enumerate(names):
            value = result.get(name, math.nan)
            values[b, m] = value
            if not math.isfinite(value):
                resample_reasons[name][reasons.get(name, "undefined")] += 1

    return _summarise(
        point, names, values, resample_reasons, n_boot, level, n_samples, index.n_groups
    )


def _summarise(
    point: Mapping[str, float],
    names: list[str],
    values: np.ndarray,
    resample_reasons: dict[str, Counter],
    n_boot: int,
    level: float,
    n_samples: int,
    n_groups: int,
) -> BootstrapResult:
    """Percentile intervals of ``values (n_boot, n_metrics)``, NaN resamples left out."""
    out = BootstrapResult(n_boot, level, n_samples, n_groups)
    point_reasons = getattr(point, "reasons", {})
    tail = (1.0 - level) / 2.0
    for m, name in enumerate(names):
        valid = values[np.isfinite(values[:, m]), m]
        low = high = math.nan
        if len(valid) >= 2:
            low, high = (float(q) for q in np.quantile(valid, [tail, 1.0 - tail]))
        out[name] = MetricCI(float(point[name]), low, high, len(valid))
        if name in point_reasons:
            out.reasons[name] = point_reasons[name]
        elif len(valid) < n_boot:
            reason, _ = resample_reasons[name].most_common(1)[0]
            out.reasons[name] = (
                f"undefined in {n_boot - len(valid)} of {n_boot} resamples: {reason}"
            )
    return out


def bootstrap_metrics(
    kind: str,
    y_true: np.ndarray,
    prob_or_pred: np.ndarray,
    groups: Sequence | np.ndarray | None,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    **metric_options: Any,
) -> BootstrapResult:
    """:func:`compute_metrics` of one target with grouped bootstrap intervals.

    ``metric_options`` go to :func:`~polymodal.evaluation.metrics.compute_metrics` (``classes``,
    ``specificity``, ``n_bins_ece``, ``threshold``, ``horizon``). Example::

        ci = bootstrap_metrics("binary", y, prob, patient_ids, n_boot=1000)
        ci["auroc"]  # MetricCI(point=0.87, low=0.85, high=0.89, n_valid=1000)
    """
    if kind in targets.TARGETS:  # an unknown kind fails in compute_metrics, naming the known
        # Resampling indexes rows: a kind's other label forms (time_to_event's (time, event)
        # pair) become one array first.
        y_true = targets.get(kind).label_array(y_true)
        resampled = _resampled_ci(
            kind, y_true, prob_or_pred, groups, n_boot, level, seed, metric_options
        )
        if resampled is not None:
            return resampled
    # bootstrap_ci scores the full data first, so a bad input fails before any resampling.
    return bootstrap_ci(
        lambda y, p: compute_metrics(kind, y, p, **metric_options),
        (y_true, prob_or_pred),
        groups,
        n_boot=n_boot,
        level=level,
        seed=seed,
    )


def _resampled_ci(
    kind: str,
    y_true: np.ndarray,
    prediction: np.ndarray,
    groups: Sequence | np.ndarray | None,
    n_boot: int,
    level: float,
    seed: int,
    metric_options: dict[str, Any],
) -> BootstrapResult | None:
    """:func:`bootstrap_ci` of :func:`compute_metrics` with every resample scored at once.

    The resamples are :func:`grouped_weights` of the same seed, which draws the same patients
    as :func:`bootstrap_ci`'s loop. None (the caller then loops) when the data has no resampled
    form, any metric's resampled form differs from ``compute_metrics`` on the full data, or the
    input is one that :func:`bootstrap_ci` should reject with its own message. A metric
    undefined in some resamples gives the reason of the first such resample (one
    ``compute_metrics`` call), where the loop counted the most common one.
    """
    y_true, prediction = np.asarray(y_true), np.asarray(prediction)
    if not 0.0 < level < 1.0 or n_boot < 1 or len(y_true) != len(prediction) or not len(y_true):
        return None
    codes = _group_codes(groups, len(y_true))
    if codes is None:
        return None
    point = compute_metrics(kind, y_true, prediction, **metric_options)
    options = MetricOptions(**metric_options)
    scores = scores_for(targets.get(kind), y_true, prediction, options)
    if scores is None:
        return None
    names = list(point)
    if len(agreeing(scores.metrics(np.ones((1, len(y_true)))), point, names)) < len(names):
        return None
    values = np.full((n_boot, len(names)), np.nan)  # (n_boot, n_metrics)
    first_undefined: dict[str, np.ndarray] = {}  # metric → row weights of one NaN resample
    start = 0
    for w in grouped_weights(codes, int(codes.max()) + 1, n_boot, seed):  # (R_block, n)
        scored = scores.metrics(w)
        for m, name in enumerate(names):
            values[start : start + len(w), m] = scored[name]
            undefined = np.flatnonzero(~np.isfinite(scored[name]))
            if len(undefined) and name not in first_undefined:
                first_undefined[name] = w[undefined[0]]
        start += len(w)
    reasons = {
        name: Counter({_reason(kind, y_true, prediction, w, name, metric_options): 1})
        for name, w in first_undefined.items()
    }
    return _summarise(
        point, names, values, reasons, n_boot, level, len(y_true), int(codes.max()) + 1
    )


def _group_codes(groups: Sequence | np.ndarray | None, n_samples: int) -> np.ndarray | None:
    """A code per row ``(n,)`` of ``groups`` (each row its own group when None); None when
    ids are missing or miscounted, which :func:`bootstrap_ci` reports."""
    if groups is None:
        return np.arange(n_samples)
    groups = np.asarray(groups)
    if len(groups) != n_samples or len(_missing_ids(groups)):
        return None
    return group_codes(groups)[0]


def _reason(
    kind: str,
    y_true: np.ndarray,
    prediction: np.ndarray,
    weights: np.ndarray,
    name: str,
    metric_options: dict[str, Any],
) -> str:
    """Why ``name`` is undefined in the resample whose row weights are ``weights (n,)``."""
    rows = np.repeat(np.arange(len(weights)), weights.astype(np.int64))
    result = compute_metrics(kind, y_true[rows], prediction[rows], **metric_options)
    return getattr(result, "reasons", {}).get(name, "undefined")
