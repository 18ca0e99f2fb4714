"""The card's numbers: each target's table metrics with patient-grouped bootstrap CIs, on the
rows of one prediction pass (a split, a modality subset, or one subgroup of them).

Which metrics, which prediction they read and how labels are summarised (prevalence, …) is each
target kind's (:mod:`polymodal.targets`); the intervals are :mod:`polymodal.evaluation.bootstrap`'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from polymodal import targets
from polymodal.evaluation.bootstrap import BootstrapResult, bootstrap_metrics
from polymodal.evaluation.metrics import EvaluationError
from polymodal.targets import MetricOptions
from polymodal.targets.predictions import PredictionCollector


def target_rows(
    collector: PredictionCollector, target: str, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, main prediction, groups) of the labelled rows of ``target``, restricted to the
    ``rows`` mask ``(n,)`` of the collector's samples when given."""
    info = collector.target_infos[target]
    labels, keep = collector.labels(target)
    if len(keep) == 0:
        return np.empty(0), np.empty(0), np.empty(0, dtype=object)
    if rows is not None:
        keep = keep & rows
    pred = collector.predictions(target)[targets.get(info["kind"]).prediction]
    groups = np.asarray(collector.groups, dtype=object)
    return labels[keep], pred[keep], groups[keep]


def scored_targets(
    collector: PredictionCollector,
    *,
    n_boot: int,
    seed: int = 0,
    rows: np.ndarray | None = None,
    headline_only: bool = False,
) -> dict[str, dict[str, Any]]:
    """Per target with labelled rows: its kind, rows, patients, label summary and metrics.

    Returns:
        ``{target: {"kind", "n", "patients", "summary": {...}, "metrics": {metric: {"point",
        "low", "high"}}, "reasons": {metric: why}}}``; numbers that are undefined are None.
    """
    out = {}
    for target, info in collector.target_infos.items():
        y, pred, groups = target_rows(collector, target, rows)
        if len(y) == 0:
            continue
        kind = targets.get(info["kind"])
        options = MetricOptions(classes=info.get("classes"), horizons=info.get("horizons"))
        try:
            ci = bootstrap_metrics(
                info["kind"], y, pred, groups, n_boot=n_boot, seed=seed,
                classes=info.get("classes"), horizons=info.get("horizons"),
            )  # fmt: skip
        except EvaluationError as err:  # e.g. one row only: say so rather than fail the fit
            out[target] = {"kind": info["kind"], "n": len(y), "error": str(err)}
            continue
        names = (kind.headline,) if headline_only else kind.table_metrics
        out[target] = {
            "kind": info["kind"],
            "n": ci.n_samples,
            "patients": ci.n_groups,
            "summary": _numbers(kind.label_summary(kind.label_array(y), options)),
            "metrics": {m: _interval(ci, m) for m in names if m in ci},
            "reasons": {m: why for m, why in ci.reasons.items() if m in names},
        }
    return out


def _interval(ci: BootstrapResult, metric: str) -> dict[str, float | None]:
    found = ci[metric]
    return {k: _number(getattr(found, k)) for k in ("point", "low", "high")}


def _number(value: float) -> float | None:
    return round(float(value), 4) if math.isfinite(value) else None


def _numbers(values: Mapping[str, float]) -> dict[str, float | None]:
    return {k: _number(v) for k, v in values.items()}
