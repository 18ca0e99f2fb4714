"""What a target kind hands the clinical figures: yes/no outcomes with a probability, decided
classes, survival rows, probabilities of an event by each horizon. Each kind builds them from
its scored labels and predictions (:meth:`TargetKind.outcomes`, :meth:`TargetKind.decided_classes`,
:meth:`TargetKind.survival`, :meth:`TargetKind.horizon_risks`),
so the figures never ask which kind they draw."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Outcome:
    """One yes/no outcome and the probability the model gives it (ROC, PR, calibration,
    decision curve). Binary: the positive class; multiclass: one class against the rest;
    multilabel: one label.

    Attributes:
        name: what the outcome is called (a class or label name).
        positive: ``(n,)`` bool, the outcome happened.
        probability: ``(n,)`` the predicted probability of it, in [0, 1].
        alone: True when it is the kind's only outcome (a decision curve is drawn for it).
    """

    name: str
    positive: np.ndarray
    probability: np.ndarray
    alone: bool = False


@dataclass(frozen=True)
class DecidedClasses:
    """The class each sample has and the class the model decides (confusion matrix).

    Attributes:
        true: ``(n,)`` class index. predicted: ``(n,)`` class index.
        names: the K class names, in index order.
        rule: how the decision was made, in words ("P(yes) ≥ 0.5", "the most probable class").
    """

    true: np.ndarray
    predicted: np.ndarray
    names: list[str]
    rule: str


@dataclass(frozen=True)
class SurvivalRows:
    """Follow-up time, event indicator and predicted risk (higher = earlier event), ``(n,)``
    each (Kaplan–Meier curves by predicted risk group)."""

    time: np.ndarray
    event: np.ndarray
    risk: np.ndarray


@dataclass(frozen=True)
class HorizonRisks:
    """The predicted probability of an event by each horizon, with the follow-up that checks it
    (calibration at each horizon against the Kaplan–Meier event probability).

    Attributes:
        time: ``(n,)`` follow-up time; event: ``(n,)`` bool, the follow-up ended in the event
            (else censored). A kind that keeps its labels on a grid of horizons gives the
            follow-up on that grid (an event at the first horizon its label is 1 by, a censored
            sample at the last horizon it is known event-free at).
        horizons: ``(K,)`` increasing horizons, in the time column's unit.
        probability: ``(n, K)`` the predicted P(event by ``horizons[k]``), in [0, 1].
    """

    time: np.ndarray
    event: np.ndarray
    horizons: np.ndarray
    probability: np.ndarray


def shares(y_index: np.ndarray, names: list[str]) -> dict[str, float]:
    """Share of the samples in each class, ``{"prevalence[c]": p}``."""
    counts = np.bincount(np.asarray(y_index, dtype=np.int64), minlength=len(names))
    total = max(int(counts.sum()), 1)
    return {f"prevalence[{name}]": float(c / total) for name, c in zip(names, counts, strict=True)}
