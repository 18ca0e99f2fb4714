"""Cumulative-risk targets (M3FM, methods.md §2.2 "Predictors"): the risk of an event by each of
K horizons, from an additive hazard layer.

The label of horizon t_k is "event by t_k"; it is known when the event happened (at any time) or
the follow-up reached t_k without it, and unknown (censored) otherwise. Label ``(2K,)``: the K
labels, then the K "known" flags. Prediction: ``risk`` ``(B, K)``.

Headline metric: the C-index, not the mean AUROC over horizons. A small validation split often
has a horizon without cases or controls, where the (strict) mean is undefined; checkpoint
selection and the report must rank models by one number that exists, and the same one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import pairwise
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor

from polymodal.errors import ModelError, ReadError
from polymodal.targets.base import TARGETS, Example, LabelFrame, TargetKind, TargetSpec
from polymodal.targets.figure_inputs import HorizonRisks
from polymodal.targets.head import PerSampleHead, bernoulli_kl
from polymodal.targets.scores import (
    EvaluationError,
    MetricOptions,
    MetricValues,
    auroc,
    check_binary_labels,
    check_probabilities,
    class_names,
    harrell_c_index,
    one_class_reason,
    set_macro,
    set_per_class,
)
from polymodal.targets.time_to_event import (
    check_time_event,
    check_time_event_labels,
    read_time_event,
)


class CumulativeRiskTarget(TargetSpec):
    """Cumulative risk by each horizon from an additive hazard layer (M3FM).

    The label of horizon t_k is "event by t_k"; it is known when the event happened (at any
    time) or the follow-up reached t_k without it, and unknown (censored) otherwise.
    """

    kind: Literal["cumulative_risk"]
    time_column: str
    event_column: str
    # Increasing horizons in the unit of the time column, e.g. [1, 2, 3, 4, 5, 6] years.
    horizons: list[float] = Field(min_length=1)
    # True: non-negative hazards (softplus), so the risk never falls with the horizon. False:
    # raw hazards, as the official M3FM code (whose risks can fall).
    monotone: bool = True

    @field_validator("horizons")
    @classmethod
    def _increasing_positive(cls, v: list[float]) -> list[float]:
        if any(h <= 0 for h in v) or any(a >= b for a, b in pairwise(v)):
            raise ValueError(f"expected positive, strictly increasing horizons, got {v}")
        return v


def cumulative_logits(logits: Tensor, *, monotone: bool = True) -> Tensor:
    """Additive-hazard logits ``(B, K + 1)`` (K hazards, then the base) -> ``(B, K)``.

    The cumulative logit by horizon t is ``base + Σ_{k ≤ t} h_k``; ``monotone`` passes the
    hazards through softplus first.
    """
    hazards, base = logits[:, :-1], logits[:, -1:]
    if monotone:
        hazards = F.softplus(hazards)
    return base + torch.cumsum(hazards, dim=-1)


class CumulativeRiskHead(PerSampleHead):
    """Additive hazard layer: logits ``(B, K + 1)`` = K per-horizon hazards h_k, then a base b.

    The cumulative logit by horizon t is ``b + Σ_{k ≤ t} h_k`` and its sigmoid the risk of an
    event by t. ``monotone=True`` passes the hazards through softplus, so the risk never falls
    with the horizon; ``monotone=False`` keeps the raw hazards of the official M3FM code, where a
    later risk can be lower than an earlier one (methods.md §2.9).

    Loss: binary cross-entropy of every horizon whose label is known (target ``(B, 2K)``: labels,
    then the label mask), summed and divided by the number of known (sample, horizon) pairs; a
    batch with nothing known gives exactly 0 with a gradient path. Predicts ``risk`` ``(B, K)``.
    """

    def __init__(self, *, in_dim: int, horizons: Sequence[float], monotone: bool = True) -> None:
        super().__init__(in_dim=in_dim, n_outputs=len(horizons) + 1)
        self.horizons = [float(h) for h in horizons]
        self.monotone = bool(monotone)

    def cumulative_logits(self, logits: Tensor) -> Tensor:
        """Head logits ``(B, K + 1)`` -> cumulative logit by each horizon ``(B, K)``."""
        return cumulative_logits(logits, monotone=self.monotone)

    def per_sample_loss(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        n_horizons = len(self.horizons)
        labels, known = target[:, :n_horizons], target[:, n_horizons:] > 0.5  # (B, K) each
        bce = F.binary_cross_entropy_with_logits(
            self.cumulative_logits(logits), labels.to(logits.dtype), reduction="none"
        )
        n_known = known.sum(dim=-1).to(logits.dtype)  # (B,)
        total = torch.where(known, bce, torch.zeros_like(bce)).sum(dim=-1)
        # Weighted by its known horizons, a sample's mean gives Σ BCE / Σ mask over the batch.
        return total / n_known.clamp(min=1.0), n_known

    def predict(self, logits: Tensor) -> dict[str, Tensor]:
        return {"risk": torch.sigmoid(self.cumulative_logits(logits))}


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
    names = (
        class_names(kind, given, n_horizons) if given else [str(k + 1) for k in range(n_horizons)]
    )
    y = check_binary_labels(kind, y).astype(bool)
    check_probabilities(kind, risk)
    known = y[:, n_horizons:]
    labels = y[:, :n_horizons] & known  # (n, K)

    aurocs, reasons = [], []
    for k, name in enumerate(names):
        keep = known[:, k]
        reason = (
            f"no sample's status is known at horizon {name}"
            if not keep.any()
            else one_class_reason(labels[keep, k], f"horizon {name}")
        )
        reasons.append(reason)
        aurocs.append(math.nan if reason else auroc(labels[keep, k], risk[keep, k]))

    out = MetricValues()
    set_macro(out, "auroc_mean", aurocs, reasons)
    # Follow-up as horizon positions: the C-index depends on the order of times only.
    event = labels.any(axis=1)
    time = np.where(event, labels.argmax(axis=1), known.sum(axis=1) - 1)
    c_index, n_comparable = harrell_c_index(time, event, risk[:, -1])
    if n_comparable == 0:
        out.undefined("c_index", "no comparable pairs (needs an event before another follow-up)")
    else:
        out["c_index"] = c_index
    set_per_class(out, names, {"auroc": aurocs}, reasons)
    return out


@TARGETS.register("cumulative_risk")
class CumulativeRisk(TargetKind):
    name = "cumulative_risk"
    spec = CumulativeRiskTarget
    prediction = "risk"  # (n, K): risk by each horizon
    headline = "c_index"
    table_metrics = ("auroc_mean", "c_index")
    headers = MappingProxyType({"c_index": "C-index", "auroc_mean": "AUROC (mean over horizons)"})
    detail_table = "per horizon"

    def columns(self, cfg: Any) -> list[str]:
        return [cfg.time_column, cfg.event_column]

    def fit(self, where: str, cfg: Any, rows: pd.DataFrame, ids: pd.Series):
        times, _ = check_time_event(cfg.time_column, cfg.event_column, rows, ids)
        negative = times < 0
        if negative.any():
            rows_bad = ", ".join(repr(i) for i in ids[negative].head(5))
            raise ReadError(
                f"{where}: column {cfg.time_column!r}: training row(s) {rows_bad} hold a "
                "negative time; follow-up times start at 0"
            )
        # The horizons come from the spec; nothing else to learn.
        return self.state()

    def head_info(self, cfg: Any, state: Any) -> dict[str, Any]:
        horizons = [float(h) for h in cfg.horizons]
        return {"n_outputs": len(horizons) + 1, "horizons": horizons, "monotone": cfg.monotone}

    def encode(self, cfg: Any, state: Any, cells: Mapping[str, str]) -> Tensor | None:
        """(time, event) -> per-horizon labels and label mask, ``(2K,)``; None when missing.

        An event at time T is known at every horizon: 1 from the first horizon ≥ T on, 0
        before. A follow-up to T without event is 0 and known at the horizons ≤ T, unknown
        (censored) after.
        """
        time, event = read_time_event(cfg, cells)
        if np.isnan(time) or np.isnan(event):
            return None
        if time < 0:
            raise ReadError(
                f"column {cfg.time_column!r}: {time:g} is a negative time; follow-up starts at 0"
            )
        horizons = torch.tensor(cfg.horizons, dtype=torch.float64)
        if event == 1:
            labels, known = horizons >= time, torch.ones_like(horizons, dtype=torch.bool)
        else:
            labels, known = torch.zeros_like(horizons, dtype=torch.bool), horizons <= time
        return torch.cat([labels, known]).to(torch.float32)

    def empty(self, cfg: Any) -> Tensor:
        return torch.zeros(2 * len(cfg.horizons))

    def check_labels(self, cfg: Any, labels: LabelFrame) -> tuple[pd.Series, pd.DataFrame]:
        return check_time_event_labels(cfg, labels, negative_times=False)

    def create_head(self, name: str, info: Mapping[str, Any], *, in_dim: int) -> CumulativeRiskHead:
        horizons = info.get("horizons")
        if not horizons or any(later <= earlier for earlier, later in pairwise(horizons)):
            raise ModelError(
                f"target '{name}': a cumulative_risk target needs 'horizons', strictly "
                f"increasing (e.g. [1, 2, 3, 4, 5, 6] years), got {horizons!r}"
            )
        monotone = info.get("monotone")
        return CumulativeRiskHead(
            in_dim=in_dim, horizons=horizons, monotone=True if monotone is None else bool(monotone)
        )

    def distillation_loss(
        self, info: Mapping[str, Any], student: Tensor, teacher: Tensor, *, temperature: float
    ) -> Tensor:
        # One Bernoulli per horizon: the risk of an event by that horizon.
        monotone = bool(info.get("monotone", True))
        student = cumulative_logits(student, monotone=monotone)
        teacher = cumulative_logits(teacher, monotone=monotone)
        return bernoulli_kl(teacher / temperature, student / temperature).mean() * temperature**2

    def prediction_columns(
        self, target: str, info: Mapping[str, Any], outputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        horizons = info.get("horizons") or list(range(1, outputs["risk"].shape[1] + 1))
        return {f"{target}_risk_{h:g}": outputs["risk"][:, i] for i, h in enumerate(horizons)}

    def metrics(self, y: np.ndarray, pred: np.ndarray, options: MetricOptions) -> MetricValues:
        return cumulative_risk_metrics(y, pred, options.horizons)

    def no_skill(self, y: np.ndarray, options: MetricOptions) -> dict[str, float]:
        horizons = options.horizons or range(1, np.asarray(y).shape[1] // 2 + 1)
        return {"auroc_mean": 0.5, "c_index": 0.5} | {f"auroc[{h:g}]": 0.5 for h in horizons}

    def horizon_risks(
        self,
        y: np.ndarray,
        pred: np.ndarray,
        columns: Mapping[str, np.ndarray],
        options: MetricOptions,
    ) -> HorizonRisks:
        """The risk by each horizon is a probability; the follow-up is what the label keeps, on
        the horizon grid: an event at the first horizon its label is 1 by, a censored sample at
        the last horizon it is known event-free at (0 before the first). A Kaplan–Meier
        estimate on it counts a sample censored between two horizons as leaving at the earlier
        one, the only time its status is known."""
        n_horizons = pred.shape[1]
        horizons = np.asarray(options.horizons or range(1, n_horizons + 1), dtype=float)
        flags = np.asarray(y) > 0.5
        known = flags[:, n_horizons:]
        labels = flags[:, :n_horizons] & known
        event = labels.any(axis=1)
        grid = np.r_[0.0, horizons]  # grid[m]: the m-th horizon, grid[0] = 0
        time = np.where(event, grid[labels.argmax(axis=1) + 1], grid[known.sum(axis=1)])
        return HorizonRisks(time, event, horizons, np.asarray(pred, dtype=float))

    def explanation_score(self, predictions: Mapping[str, Tensor], reference: int | None):
        return predictions["risk"][:, -1]

    def score_description(self, info: Mapping[str, Any], reference: int | None) -> str:
        return "cumulative risk at the last horizon"

    def example(self) -> Example:
        rows = [("0.5", "1"), ("3", "0"), ("1.5", "1"), ("", "0"), ("2.5", "1"), ("1", "0")]
        return Example(
            spec={
                "kind": "cumulative_risk",
                "time_column": "years",
                "event_column": "cancer",
                "horizons": [1, 2, 3],
            },
            cells=[{"years": t, "cancer": e} for t, e in rows],
        )
