"""Split-conformal prediction sets and intervals, calibrated on the validation split
(``conformal: {coverage: 0.9}``).

Each labelled validation row gets a nonconformity score; the threshold ``q`` is the
``⌈(n + 1)·coverage⌉``-th smallest of the n scores, so that on rows exchangeable with them the
set (or interval) holds the true label with probability at least ``coverage`` (Vovk et al.
2005; Angelopoulos & Bates 2021). With too few rows for that rank the threshold is infinite: every
set holds every class and every interval is unbounded, and the file says so.

=====================  ========================================================================
class-valued kinds     ``lac`` (default): score ``1 − p(label)``; the set holds each class with
(sets over classes)    ``p ≥ 1 − q`` (Sadinle et al. 2019: the smallest sets on average).
                       ``aps``: score = the probability mass of the classes ranked up to the
                       label, most likely first; the set holds the classes whose mass so counted is at most
                       ``q``, and always the most likely class (Romano et al. 2020, without
                       the randomisation, so a row always gets the same set: sets that adapt to
                       how hard a row is, never empty, covering slightly more than asked).
one-number kinds       score ``|label − prediction|``; the interval ``prediction ± q``.
(intervals)
=====================  ========================================================================

A kind gives class probabilities (:meth:`~polymodal.targets.TargetKind.class_probabilities`) or
a point value (:meth:`~polymodal.targets.TargetKind.point_values`); targets of other kinds are
skipped with a note. ``conformal.json`` in the model folder (covered by ``checksums.json``)::

    {"format": "polymodal-conformal", "version": 1, "coverage": 0.9, "score": "lac",
     "targets": {"<target>": {"family": "set", "score": "lac", "threshold": 0.83,
                              "n_calibration": 412}},
     "skipped": {"<target>": "<why>"}}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from polymodal import targets
from polymodal.calibration.folder_files import read_folder_json, write_folder_json
from polymodal.errors import ModelError, SpecError
from polymodal.targets.base import TargetKind

CONFORMAL = "conformal.json"
FORMAT = "polymodal-conformal"


class ConformalConfig(BaseModel):
    """``conformal:`` in a run config."""

    model_config = ConfigDict(extra="forbid")

    coverage: float = Field(
        0.9, gt=0, lt=1, description="Wanted probability that a set/interval holds the label."
    )
    score: Literal["lac", "aps"] = Field(
        "lac", description="Nonconformity score of prediction sets: lac (smallest) or aps."
    )


def family(kind: TargetKind) -> str | None:
    """``"set"`` for kinds with class probabilities, ``"interval"`` for kinds with a point
    value, None for the others (what the kind overrides says what it gives)."""
    if type(kind).class_probabilities is not TargetKind.class_probabilities:
        return "set"
    if type(kind).point_values is not TargetKind.point_values:
        return "interval"
    return None


def conformal_targets(target_infos: Mapping[str, Mapping[str, Any]]):
    """``(targets that get sets or intervals, {skipped target: why})``.

    Raises:
        SpecError: no target of the model takes conformal prediction (names the kinds).
    """
    chosen, skipped = [], {}
    for target, info in target_infos.items():
        if family(targets.get(info["kind"])) is None:
            skipped[target] = f"a {info['kind']} target has neither classes nor one value"
        else:
            chosen.append(target)
    if not chosen:
        kinds = targets.listing([k.name for k in targets.kinds() if family(k) is not None])
        raise SpecError(
            f"conformal: no target of this cohort takes prediction sets or intervals "
            f"({'; '.join(f'{t}: {why}' for t, why in skipped.items())}); they are made for "
            f"{kinds} targets. Remove the conformal section"
        )
    return chosen, skipped


@dataclass(frozen=True)
class TargetConformal:
    """One target's calibrated threshold ``q`` (None: too few calibration rows, infinite)."""

    family: str
    score: str
    threshold: float | None

    def scores(self, kind: TargetKind, info: Mapping, outputs: Mapping, y: np.ndarray):
        """Nonconformity scores ``(n,)`` of labels ``y (n,)`` under the outputs ``(n, …)``."""
        if self.family == "interval":
            return np.abs(np.asarray(y, dtype=np.float64) - kind.point_values(info, outputs))
        probabilities = kind.class_probabilities(info, outputs)  # (n, K)
        label = np.asarray(y).astype(np.int64)
        if self.score == "lac":
            return 1.0 - probabilities[np.arange(len(label)), label]
        return _mass_up_to(probabilities)[np.arange(len(label)), label]

    def members(self, kind: TargetKind, info: Mapping, outputs: Mapping) -> np.ndarray:
        """``(n, K)`` bool: which classes each row's prediction set holds."""
        probabilities = kind.class_probabilities(info, outputs)
        q = math.inf if self.threshold is None else self.threshold
        if self.score == "lac":
            return 1.0 - probabilities <= q
        # The most likely class always belongs, so that no set is empty.
        top = probabilities == probabilities.max(axis=1, keepdims=True)
        return (_mass_up_to(probabilities) <= q) | top

    def bounds(self, kind: TargetKind, info: Mapping, outputs: Mapping):
        """``(lower (n,), upper (n,))`` of each row's interval."""
        point = kind.point_values(info, outputs)
        q = math.inf if self.threshold is None else self.threshold
        return point - q, point + q

    def columns(self, target: str, info: Mapping, outputs: Mapping) -> dict[str, np.ndarray]:
        """Readable prediction columns: the set and its size, or the interval's ends."""
        kind = targets.get(info["kind"])
        if self.family == "interval":
            lower, upper = self.bounds(kind, info, outputs)
            return {f"{target}_lower": lower, f"{target}_upper": upper}
        members = self.members(kind, info, outputs)
        names = [str(c) for c in info.get("classes") or range(members.shape[1])]
        sets = ["|".join(n for n, m in zip(names, row, strict=True) if m) for row in members]
        return {
            f"{target}_set": np.asarray(sets, dtype=object),
            f"{target}_set_size": members.sum(1),
        }

    def hits(self, info: Mapping, outputs: Mapping, y: np.ndarray):
        """``(covered (n,) bool, size (n,))`` of labelled rows: whether the set/interval holds
        the label, and the set's size or the interval's width."""
        kind = targets.get(info["kind"])
        if self.family == "interval":
            lower, upper = self.bounds(kind, info, outputs)
            value = np.asarray(y, dtype=np.float64)
            return (lower <= value) & (value <= upper), upper - lower
        members = self.members(kind, info, outputs)
        label = np.asarray(y).astype(np.int64)
        return members[np.arange(len(label)), label], members.sum(axis=1).astype(np.float64)


def _mass_up_to(probabilities: np.ndarray) -> np.ndarray:
    """``(n, K)``: for each class, the probability mass of the classes ranked before it (most
    likely first; ties in a fixed order) and itself: the APS score of that class as the label."""
    order = np.argsort(-probabilities, axis=1, kind="stable")
    cumulative = np.cumsum(np.take_along_axis(probabilities, order, axis=1), axis=1)
    mass = np.empty_like(cumulative)
    np.put_along_axis(mass, order, cumulative, axis=1)
    return mass


def calibrate(
    target: str, info: Mapping, outputs: Mapping, y: np.ndarray, config: ConformalConfig
) -> tuple[TargetConformal, dict[str, Any]]:
    """The threshold of one target from its labelled validation rows (outputs ``(n, …)``,
    labels ``y (n,)``); returns it and its ``conformal.json`` record."""
    kind = targets.get(info["kind"])
    unfitted = TargetConformal(family(kind) or "", config.score, None)
    scores = np.sort(unfitted.scores(kind, info, outputs, y))
    rank = math.ceil((len(scores) + 1) * config.coverage)
    threshold = float(scores[rank - 1]) if rank <= len(scores) else None
    fitted = TargetConformal(unfitted.family, config.score, threshold)
    record: dict[str, Any] = {
        "family": fitted.family,
        "score": fitted.score if fitted.family == "set" else "absolute_residual",
        "threshold": threshold,
        "n_calibration": len(scores),
    }
    if threshold is None:
        record["note"] = (
            f"{len(scores)} labelled validation rows are too few for coverage "
            f"{config.coverage:g} (it needs at least {math.ceil(config.coverage / (1 - config.coverage) - 1e-9)}): "
            "every set holds every class, every interval is unbounded"
        )
    return fitted, record


@dataclass(frozen=True)
class ConformalPrediction:
    """A model folder's conformal thresholds per target, and the coverage they aim at."""

    coverage: float
    targets: dict[str, TargetConformal]

    @classmethod
    def load(cls, folder: Path) -> ConformalPrediction | None:
        """The folder's ``conformal.json``; None when it has none."""
        payload = read_folder_json(folder, CONFORMAL)
        if payload is None:
            return None
        try:
            fitted = {
                t: TargetConformal(e["family"], e["score"], e["threshold"])
                for t, e in payload["targets"].items()
            }
            coverage = float(payload["coverage"])
        except (KeyError, TypeError, ValueError, AttributeError):
            fitted = {}
            coverage = math.nan
        if payload.get("format") != FORMAT or not fitted or not 0 < coverage < 1:
            raise ModelError(
                f"{folder / CONFORMAL}: not a polymodal conformal file; copy the model folder "
                "again from its source"
            )
        return cls(coverage, fitted)


def save_conformal(folder: Path, config: ConformalConfig, fitted: dict, skipped: dict) -> Path:
    """Write ``conformal.json`` (``fitted``: target → :func:`calibrate`'s record)."""
    payload = {"format": FORMAT, "version": 1, **config.model_dump(), "targets": fitted}
    return write_folder_json(folder, CONFORMAL, {**payload, "skipped": skipped})
