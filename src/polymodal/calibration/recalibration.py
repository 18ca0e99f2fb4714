"""Recalibrate a trained model's probabilities on the validation split (``calibration:``).

Every method is a map from a head's logits to new logits, so the predictor applies it before the
head turns logits into probabilities and labels: predictions, kept predictions and every metric
then see the calibrated values.

==============  ==================================================================================
``temperature`` ``logits / T``, with T > 0 minimising the validation negative log-likelihood (Guo et
                al. 2017); the predicted class never changes. Multiclass and binary targets.
``platt``       ``a · logit + b`` from a logistic regression of the label on the validation logit
                (Platt 1999; scikit-learn, unpenalised). Binary targets.
``isotonic``    a monotone step map of the probability (Zadrozny & Elkan 2002; scikit-learn's
                ``IsotonicRegression``), stored as its thresholds and applied by linear
                interpolation between them, clipped at both ends as scikit-learn predicts.
                Binary targets.
``none``        nothing is fitted (a recipe that switches a shared section off).
==============  ==================================================================================

Which methods a target takes is its kind's (:attr:`polymodal.targets.TargetKind.recalibrations`);
a target whose kind takes the method is recalibrated, the others are skipped with a note.

``calibration.json`` in the model folder (numbers only, covered by ``checksums.json``)::

    {"format": "polymodal-calibration", "version": 1, "method": "temperature",
     "targets": {"<target>": {"method": "temperature", "parameters": {"temperature": 1.7},
                              "n_calibration": 412, "nll_before": 0.61, "nll_after": 0.48}},
     "skipped": {"<target>": "<why>"}}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from polymodal import targets
from polymodal.calibration.folder_files import read_folder_json, write_folder_json
from polymodal.errors import ModelError, PolymodalError, SpecError

CALIBRATION = "calibration.json"
FORMAT = "polymodal-calibration"
METHODS = ("temperature", "platt", "isotonic")
# Isotonic probabilities of exactly 0 or 1 become these before the logit (finite logits).
_EPS = 1e-6


class CalibrationConfig(BaseModel):
    """``calibration:`` in a run config."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["temperature", "platt", "isotonic", "none"] = Field(
        "temperature",
        description="temperature (multiclass or binary), platt or isotonic (binary), or none; "
        "fitted on the validation split after training and applied by the predictor.",
    )


@dataclass(frozen=True)
class TargetCalibration:
    """One target's fitted map of logits ``(B,)`` or ``(B, K)`` → calibrated logits."""

    method: str
    parameters: dict[str, Any]

    def apply(self, logits: Tensor) -> Tensor:
        p = self.parameters
        if self.method == "temperature":
            return logits / p["temperature"]
        if self.method == "platt":
            return logits * p["slope"] + p["intercept"]
        probability = torch.sigmoid(logits.double()).cpu().numpy()
        mapped = np.interp(probability, p["thresholds"], p["values"])
        mapped = torch.from_numpy(np.clip(mapped, _EPS, 1 - _EPS))
        return torch.logit(mapped).to(device=logits.device, dtype=logits.dtype)


@dataclass(frozen=True)
class Recalibration:
    """The fitted maps of a model folder's targets (targets without one pass through)."""

    targets: dict[str, TargetCalibration]

    def apply(self, logits: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``{target: logits}`` → the same with every calibrated target's logits mapped."""
        return {
            t: self.targets[t].apply(value) if t in self.targets else value
            for t, value in logits.items()
        }

    @classmethod
    def load(cls, folder: Path) -> Recalibration | None:
        """The folder's ``calibration.json``; None when it has none (loads as before).

        Raises:
            ModelError: the file is not covered by the checksums or is not one of ours.
        """
        payload = read_folder_json(folder, CALIBRATION)
        if payload is None:
            return None
        fitted = _parse(payload)
        if fitted is None:
            raise ModelError(
                f"{folder / CALIBRATION}: not a polymodal calibration file; copy the model "
                "folder again from its source"
            )
        return cls(fitted)


def _parse(payload: dict[str, Any]) -> dict[str, TargetCalibration] | None:
    """The fitted maps of a ``calibration.json`` payload; None when it is not one."""
    entries = payload.get("targets")
    if payload.get("format") != FORMAT or not isinstance(entries, dict):
        return None
    fitted = {}
    for target, entry in entries.items():
        if not isinstance(entry, dict) or entry.get("method") not in METHODS:
            return None
        if not isinstance(entry.get("parameters"), dict):
            return None
        fitted[target] = TargetCalibration(entry["method"], dict(entry["parameters"]))
    return fitted


def calibrated_targets(method: str, target_infos: Mapping[str, Mapping[str, Any]]):
    """``(targets that take method, {skipped target: why})``.

    Raises:
        SpecError: no target of the model takes ``method`` (names each target's kind and the
            methods it takes), so the run would calibrate nothing.
    """
    chosen, skipped = [], {}
    for target, info in target_infos.items():
        kind = targets.get(info["kind"])
        if method in kind.recalibrations:
            chosen.append(target)
        else:
            takes = ", ".join(kind.recalibrations) or "no recalibration"
            skipped[target] = f"a {kind.name} target takes {takes}, not {method}"
    if not chosen:
        raise SpecError(
            f"calibration.method {method!r}: no target of this cohort can be recalibrated "
            f"with it ({'; '.join(f'{t}: {why}' for t, why in skipped.items())}). Choose "
            "another method or remove the calibration section"
        )
    return chosen, skipped


def fit_target(target: str, kind_name: str, method: str, logits: Tensor, labels: Tensor):
    """Fit ``method`` on one target's validation ``logits`` and ``labels`` (labelled rows only).

    Returns ``(TargetCalibration, record)``; the record has n and the NLL before and after.

    Raises:
        PolymodalError: too few labelled rows, or one class only (Platt, isotonic).
    """
    kind = targets.get(kind_name)
    logits, labels = logits.double().cpu(), labels.cpu()
    if len(labels) < 2 or (method != "temperature" and len(torch.unique(labels)) < 2):
        raise PolymodalError(
            f"calibration: target {target!r} has {len(labels)} labelled validation row(s) "
            f"with {len(torch.unique(labels))} class(es); {method} needs both outcomes in the "
            "validation split (add validation rows, or set calibration.method: none)"
        )
    fitters = {"temperature": _temperature, "platt": _platt, "isotonic": _isotonic}
    fitted = TargetCalibration(method, fitters[method](kind, logits, labels))
    record = {
        "method": method,
        "parameters": fitted.parameters,
        "n_calibration": len(labels),
        "nll_before": float(kind.logit_nll(logits, labels).mean()),
        "nll_after": float(kind.logit_nll(fitted.apply(logits), labels).mean()),
    }
    return fitted, record


def _temperature(kind: Any, logits: Tensor, labels: Tensor) -> dict[str, float]:
    # Imported here, not at the top: scikit-learn/SciPy take seconds to import and a
    # model folder that only predicts never needs them (issue 12: load in < 5 s).
    from scipy.optimize import minimize_scalar

    # The NLL is smooth in log T; T in [0.01, 100] covers any model worth calibrating.
    def nll(log_t: float) -> float:
        return float(kind.logit_nll(logits / math.exp(log_t), labels).mean())

    best = minimize_scalar(nll, bounds=(math.log(0.01), math.log(100.0)), method="bounded")
    return {"temperature": float(math.exp(best.x))}


def _platt(kind: Any, logits: Tensor, labels: Tensor) -> dict[str, float]:
    # Imported here, not at the top: scikit-learn/SciPy take seconds to import and a
    # model folder that only predicts never needs them (issue 12: load in < 5 s).
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=np.inf).fit(logits.numpy().reshape(-1, 1), labels.numpy())
    return {"slope": float(model.coef_[0, 0]), "intercept": float(model.intercept_[0])}


def _isotonic(kind: Any, logits: Tensor, labels: Tensor) -> dict[str, list[float]]:
    # Imported here, not at the top: scikit-learn/SciPy take seconds to import and a
    # model folder that only predicts never needs them (issue 12: load in < 5 s).
    from sklearn.isotonic import IsotonicRegression

    probability = torch.sigmoid(logits).numpy()
    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    model.fit(probability, labels.numpy().astype(np.float64))
    return {
        "thresholds": [float(x) for x in model.X_thresholds_],
        "values": [float(y) for y in model.y_thresholds_],
    }


def save_calibration(folder: Path, method: str, fitted: dict, skipped: dict[str, str]) -> Path:
    """Write ``calibration.json`` (``fitted``: target → :func:`fit_target`'s record)."""
    payload = {"format": FORMAT, "version": 1, "method": method, "targets": fitted}
    return write_folder_json(folder, CALIBRATION, {**payload, "skipped": skipped})
