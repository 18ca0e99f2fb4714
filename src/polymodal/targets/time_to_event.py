"""Time-to-event targets: a follow-up time and whether the event happened (else censored).

Label ``(2,)`` float (time, event). Two losses: ``discrete`` (logistic hazard per time bin,
bins learned from the training event times unless the spec gives them) and ``cox`` (Breslow
partial likelihood). Prediction: ``risk`` (higher = earlier event); headline: Harrell's C-index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

import polymodal.targets.checks as checks
from polymodal.data.cells import LABEL_MISSING, column_numbers, parse_flag, parse_number
from polymodal.errors import ModelError, ReadError, SpecError
from polymodal.targets.base import (
    TARGETS,
    Example,
    LabelFrame,
    TargetKind,
    TargetSpec,
    TargetState,
)
from polymodal.targets.figure_inputs import HorizonRisks, SurvivalRows
from polymodal.targets.head import Head, PerSampleHead, bernoulli_kl, masked_weighted_mean
from polymodal.targets.scores import (
    EvaluationError,
    MetricOptions,
    MetricValues,
    auroc,
    check_binary_labels,
    harrell_c_index,
)

# Number of discrete time-to-event bins when the spec gives none.
DEFAULT_TIME_BINS = 10


class TimeToEventTarget(TargetSpec):
    kind: Literal["time_to_event"]
    time_column: str
    event_column: str
    # Discrete-time loss: boundaries of the time bins (same unit as the time column).
    bins: list[float] | None = None
    loss: Literal["discrete", "cox"] = "discrete"


class TimeToEventState(TargetState):
    # Upper bin edges of the discrete-time loss (also fitted, unused, for the Cox loss).
    bins: list[float]


class DiscreteTimeHead(PerSampleHead):
    """Discrete-time survival: one hazard logit per time bin (logistic hazard).

    ``bins`` are the K increasing upper bin edges, as the preprocessing state writes them: bin k
    covers ``(bins[k-1], bins[k]]``, bin 0 everything up to ``bins[0]``. With h_j = σ(logit_j),
    a sample contributes the negative log of

    * an event at time t in bin k: h_k · Π_{j<k} (1 − h_j)
    * censored at time t: Π (1 − h_j) over the bins that ended by t (``bins[j] ≤ t``), the
      survival actually observed, with no guess about the bin it was censored in
    * an event after the last edge: Π_{j<K} (1 − h_j), i.e. event-free through the horizon.

    Target ``(B, 2)`` = (time, event). Predicts ``hazard``, ``survival`` (S at each upper edge,
    non-increasing) and ``cumulative_risk`` = 1 − survival, each ``(B, K)``, and ``risk`` (B,)
    = the cumulative risk at the last edge (higher = earlier event, for the C-index).
    """

    def __init__(self, *, in_dim: int, bins: Sequence[float]) -> None:
        super().__init__(in_dim=in_dim, n_outputs=len(bins))
        self.register_buffer("edges", torch.tensor([float(b) for b in bins]), persistent=False)

    def per_sample_loss(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        time, event = target[:, 0].contiguous(), target[:, 1] > 0.5
        edges = self.edges.to(time.dtype)
        event_bin = torch.bucketize(time, edges, right=False)  # (B,) 0..K, K = after the horizon
        survived = torch.bucketize(time, edges, right=True)  # (B,) bins with an edge ≤ time
        in_horizon = event & (event_bin < len(edges))
        # Bins whose outcome is known: survived ones, plus the event's own bin.
        last_known = torch.where(in_horizon, event_bin + 1, survived)
        bin_index = torch.arange(logits.shape[-1], device=logits.device)
        known = bin_index[None, :] < last_known[:, None]  # (B, K)
        occurred = (bin_index[None, :] == event_bin[:, None]) & in_horizon[:, None]
        bce = F.binary_cross_entropy_with_logits(
            logits, occurred.to(logits.dtype), reduction="none"
        )  # (B, K): −log h_j where the event happened, −log(1 − h_j) elsewhere
        values = torch.where(known, bce, torch.zeros_like(bce)).sum(dim=-1)
        return values, torch.ones_like(values)

    def predict(self, logits: Tensor) -> dict[str, Tensor]:
        # Summing log(1 − h) rather than multiplying keeps many small hazards accurate.
        survival = torch.exp(torch.cumsum(F.logsigmoid(-logits), dim=-1))  # (B, K)
        return {
            "hazard": torch.sigmoid(logits),
            "survival": survival,
            "cumulative_risk": 1.0 - survival,
            "risk": 1.0 - survival[:, -1],
        }


class CoxHead(Head):
    """Proportional hazards: one risk score per sample; Breslow partial likelihood over the batch.

    loss = −(1/E) Σ_{i: event} [η_i − log Σ_{j: t_j ≥ t_i} exp(η_j)], the risk sets holding the
    labeled samples only; tied event times share one risk set (Breslow). A batch without events
    gives 0. Predicts ``risk`` (B,) = η: higher means an earlier expected event.
    """

    def __init__(self, *, in_dim: int) -> None:
        super().__init__(in_dim=in_dim, n_outputs=1, squeeze=True)

    def loss(self, logits: Tensor, target: Tensor, target_mask: Tensor) -> Tensor:
        labeled = target_mask.bool()
        target = torch.where(labeled[:, None], target, torch.zeros_like(target))
        time, event = target[:, 0], (target[:, 1] > 0.5) & labeled
        # risk[i, j]: sample j is still at risk at sample i's time. The diagonal is always kept
        # so no row's logsumexp is over an empty set (whose gradient would be NaN).
        risk = (time[None, :] >= time[:, None]) & labeled[None, :]
        risk = risk | torch.eye(len(time), dtype=torch.bool, device=time.device)
        scores = logits[None, :].expand(len(time), -1)
        log_risk = torch.logsumexp(
            torch.where(risk, scores, torch.full_like(scores, float("-inf"))), dim=1
        )
        return masked_weighted_mean(log_risk - logits, torch.ones_like(logits), event)

    def predict(self, logits: Tensor) -> dict[str, Tensor]:
        return {"risk": logits}


def check_time_event(
    time_column: str, event_column: str, rows: pd.DataFrame, ids: pd.Series
) -> tuple[np.ndarray, np.ndarray]:
    """Training times and events ``(N,)`` (NaN where missing); bad values name their rows."""
    times = column_numbers(rows, ids, time_column, LABEL_MISSING)
    events = column_numbers(rows, ids, event_column, LABEL_MISSING)
    bad_events = ~np.isnan(events) & ~np.isin(events, (0.0, 1.0))
    if bad_events.any():
        rows_bad = ", ".join(repr(i) for i in ids[bad_events].head(5))
        raise ReadError(
            f"column {event_column!r}: training row(s) {rows_bad} hold an event that is not 0 or 1"
        )
    return times, events


def read_time_event(cfg: Any, cells: Mapping[str, str]) -> tuple[float, float]:
    """(time, event) of one row; NaN where missing; ReadError naming the column otherwise."""
    try:
        time = parse_number(cells.get(cfg.time_column, ""), LABEL_MISSING)
    except ReadError as err:
        raise ReadError(f"column {cfg.time_column!r}: {err.reason}") from None
    return time, parse_flag(cells.get(cfg.event_column, ""), cfg.event_column)


def check_time_event_labels(
    cfg: Any, labels: LabelFrame, *, negative_times: bool
) -> tuple[pd.Series, pd.DataFrame]:
    """Times and 0/1 events; with ``negative_times`` False a negative time is reported."""
    times = checks.numbers(labels, cfg.time_column)
    if not negative_times:
        for pos in np.flatnonzero((times < 0).to_numpy()):
            labels.add(
                pos,
                cfg.time_column,
                f"{times.iat[pos]:g} is a negative time",
                checks.fix_action(labels.name),
            )
        times = times.where(~(times < 0))
    events = checks.zero_one(labels, cfg.event_column)
    complete = times.notna() & events.notna()
    usable = pd.Series(np.where(complete, "labelled", None), dtype=object)
    shown = np.where(complete, np.where(events == "1", "event", "censored"), checks.MISSING)
    return usable, pd.DataFrame({"label": shown})


def time_to_event_metrics(kind: str, y: np.ndarray, risk: np.ndarray, horizon: float | None):
    """c_index (Harrell), and auroc_at_horizon when ``horizon`` is given."""
    if y.ndim != 2 or y.shape[1] != 2 or risk.ndim != 1:
        raise EvaluationError(
            f"{kind} metrics: expected y_true (n, 2) holding (time, event) and risk (n,), "
            f"got {y.shape} and {risk.shape}"
        )
    time = y[:, 0].astype(np.float64)
    event = check_binary_labels(kind, y[:, 1]).astype(bool)
    for what, values in (("time", time), ("risk", risk)):
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise EvaluationError(
                f"{kind} metrics: {what} at row {bad[0]} is {values[bad[0]]}; drop "
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
            out["auroc_at_horizon"] = auroc(case[keep], risk[keep])
    return out


@TARGETS.register("time_to_event")
class TimeToEvent(TargetKind):
    name = "time_to_event"
    spec = TimeToEventTarget
    state = TimeToEventState
    prediction = "risk"
    headline = "c_index"
    table_metrics = ("c_index", "auroc_at_horizon")
    headers = MappingProxyType({"c_index": "C-index", "auroc_at_horizon": "AUROC @ horizon"})

    def columns(self, cfg: Any) -> list[str]:
        return [cfg.time_column, cfg.event_column]

    def fit(self, where: str, cfg: Any, rows: pd.DataFrame, ids: pd.Series) -> TimeToEventState:
        times, events = check_time_event(cfg.time_column, cfg.event_column, rows, ids)
        if cfg.bins is not None:
            if not cfg.bins or any(a >= b for a, b in pairwise(cfg.bins)):
                raise SpecError(
                    f"{where}.bins: expected increasing upper bin edges, got {cfg.bins}"
                )
            return TimeToEventState(bins=[float(b) for b in cfg.bins])
        known = np.isfinite(times) & np.isfinite(events)
        event_times = times[known & (events == 1)]
        event_times = event_times if event_times.size else times[known]
        if event_times.size == 0:
            raise SpecError(
                f"{where}: no training row has a time in {cfg.time_column!r}; cannot choose "
                "time bins (give 'bins' in the spec or fix the split)"
            )
        quantiles = np.linspace(1.0 / DEFAULT_TIME_BINS, 1.0, DEFAULT_TIME_BINS)
        return TimeToEventState(bins=np.unique(np.quantile(event_times, quantiles)).tolist())

    def head_info(self, cfg: Any, state: Any) -> dict[str, Any]:
        if cfg.loss == "discrete":
            return {"loss": cfg.loss, "n_outputs": len(state.bins), "bins": list(state.bins)}
        return {"loss": cfg.loss}

    def encode(self, cfg: Any, state: Any, cells: Mapping[str, str]) -> Tensor | None:
        time, event = read_time_event(cfg, cells)
        if np.isnan(time) or np.isnan(event):
            return None
        return torch.tensor([time, event], dtype=torch.float32)

    def empty(self, cfg: Any) -> Tensor:
        return torch.zeros(2)

    def check_labels(self, cfg: Any, labels: LabelFrame) -> tuple[pd.Series, pd.DataFrame]:
        return check_time_event_labels(cfg, labels, negative_times=True)

    def create_head(self, name: str, info: Mapping[str, Any], *, in_dim: int) -> Head:
        loss = info.get("loss") or "discrete"
        if loss == "cox":
            return CoxHead(in_dim=in_dim)
        if loss != "discrete":
            raise ModelError(
                f"target '{name}': time_to_event loss {loss!r} is not one of discrete, cox"
            )
        bins = info.get("bins")
        if not bins or any(later <= earlier for earlier, later in pairwise(bins)):
            raise ModelError(
                f"target '{name}': the discrete-time loss needs 'bins', strictly increasing "
                f"upper bin edges (e.g. [365, 730, 1095]), got {bins!r}; or set loss: cox"
            )
        return DiscreteTimeHead(in_dim=in_dim, bins=bins)

    def distillation_loss(
        self, info: Mapping[str, Any], student: Tensor, teacher: Tensor, *, temperature: float
    ) -> Tensor:
        if info.get("loss") == "cox":
            # A risk score, not a distribution: squared error to the teacher's (no τ).
            return F.mse_loss(student, teacher)
        # One Bernoulli per bin's hazard.
        return bernoulli_kl(teacher / temperature, student / temperature).mean() * temperature**2

    def label_array(self, y_true: Any) -> np.ndarray:
        # Also accepted: a (time, event) pair of (n,) arrays.
        if isinstance(y_true, tuple) and len(y_true) == 2:
            return np.stack([np.asarray(y_true[0]), np.asarray(y_true[1])], axis=1)  # (n, 2)
        return np.asarray(y_true)

    def prediction_columns(
        self, target: str, info: Mapping[str, Any], outputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        cols = {f"{target}_risk": outputs["risk"]}
        if "survival" in outputs and outputs["survival"].ndim == 2:
            edges = info.get("bins") or list(range(outputs["survival"].shape[1]))
            for i, edge in enumerate(edges[: outputs["survival"].shape[1]]):
                cols[f"{target}_survival_t{edge:g}"] = outputs["survival"][:, i]
        return cols

    def metrics(self, y: np.ndarray, pred: np.ndarray, options: MetricOptions) -> MetricValues:
        return time_to_event_metrics(self.name, y, pred, options.horizon)

    def no_skill(self, y: np.ndarray, options: MetricOptions) -> dict[str, float]:
        return {"c_index": 0.5, "auroc_at_horizon": 0.5}  # a constant risk orders nobody

    def label_summary(self, y: np.ndarray, options: MetricOptions) -> dict[str, float]:
        y = self.label_array(y)
        return {"event rate": float(np.mean(y[:, 1])), "median time": float(np.median(y[:, 0]))}

    def survival(self, y: np.ndarray, pred: np.ndarray) -> SurvivalRows:
        y = self.label_array(y)
        return SurvivalRows(y[:, 0].astype(float), y[:, 1] > 0.5, np.asarray(pred, dtype=float))

    def horizon_risks(
        self,
        y: np.ndarray,
        pred: np.ndarray,
        columns: Mapping[str, np.ndarray],
        options: MetricOptions,
    ) -> HorizonRisks | None:
        """The discrete-time loss predicts the survival S at each bin edge, so 1 − S is the
        probability of an event by that edge (the ``survival_t<edge>`` columns). The Cox loss
        predicts a risk score only: without a baseline hazard (none is kept) it is no
        probability of an event by any time, so None."""
        edges = {
            float(name.removeprefix("survival_t")): np.asarray(values, dtype=float)
            for name, values in columns.items()
            if name.startswith("survival_t")
        }
        if not edges:
            return None
        horizons = np.array(sorted(edges))
        probability = 1.0 - np.stack([edges[h] for h in horizons], axis=1)  # (n, K)
        y = self.label_array(y)
        return HorizonRisks(y[:, 0].astype(float), y[:, 1] > 0.5, horizons, probability)

    def explanation_score(self, predictions: Mapping[str, Tensor], reference: int | None):
        return predictions["risk"].reshape(-1)

    def score_description(self, info: Mapping[str, Any], reference: int | None) -> str:
        return "risk"

    def example(self) -> Example:
        rows = [("3", "1"), ("8", "0"), ("5", "1"), ("", "1"), ("12", "0"), ("2", "1")]
        return Example(
            spec={"kind": "time_to_event", "time_column": "t", "event_column": "e"},
            cells=[{"t": t, "e": e} for t, e in rows],
        )
