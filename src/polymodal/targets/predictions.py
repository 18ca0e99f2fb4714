"""Gather per-sample predictions over batches into numpy arrays for metrics and CSV output.

Used by training (validation metrics) and by :class:`polymodal.predictor.Predictor`; each
target's kind says which prediction its metrics read and how its batch labels are scored.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from polymodal.targets.base import get


class PredictionCollector:
    """Accumulates ids, groups, labels and predictions batch by batch.

    ``add(batch, predictions)`` takes a batch (see :mod:`polymodal.data.batch`) and
    ``{target: {name: Tensor (B, ...)}}`` from the heads; ``arrays(target)`` returns
    ``(y_true, prediction, groups)`` for the samples that have a label for that target, and
    ``labels(target)`` every sample's scored label with the mask of those that have one.
    """

    def __init__(self, target_infos: dict[str, dict]) -> None:
        self.target_infos = target_infos
        self.reset()

    def reset(self) -> None:
        self.ids: list[str] = []
        self.groups: list[str] = []
        self._targets: dict[str, list[np.ndarray]] = {t: [] for t in self.target_infos}
        self._masks: dict[str, list[np.ndarray]] = {t: [] for t in self.target_infos}
        self._preds: dict[str, dict[str, list[np.ndarray]]] = {t: {} for t in self.target_infos}

    def add(self, batch: dict[str, Any], predictions: dict[str, dict[str, torch.Tensor]]) -> None:
        self.ids.extend(batch["ids"])
        self.groups.extend(batch["groups"])
        for target in self.target_infos:
            self._targets[target].append(_numpy(batch["targets"][target]))
            self._masks[target].append(_numpy(batch["target_mask"][target]).astype(bool))
            for name, value in predictions[target].items():
                self._preds[target].setdefault(name, []).append(_numpy(value))

    def parts(self) -> dict[str, Any]:
        """What was collected, as plain lists of arrays (to send to other processes)."""
        return {
            "ids": list(self.ids),
            "groups": list(self.groups),
            "targets": self._targets,
            "masks": self._masks,
            "preds": self._preds,
        }

    def absorb(self, parts: dict[str, Any]) -> None:
        """Append another collector's :meth:`parts` (another rank's samples)."""
        self.ids.extend(parts["ids"])
        self.groups.extend(parts["groups"])
        for target in self.target_infos:
            self._targets[target].extend(parts["targets"][target])
            self._masks[target].extend(parts["masks"][target])
            for name, values in parts["preds"][target].items():
                self._preds[target].setdefault(name, []).extend(values)

    def predictions(self, target: str) -> dict[str, np.ndarray]:
        """Every prediction output of a target's head, for all samples (labelled or not)."""
        return {name: np.concatenate(parts) for name, parts in self._preds[target].items()}

    def labels(self, target: str) -> tuple[np.ndarray, np.ndarray]:
        """Every sample's label of ``target`` as its metrics score it ``(n, …)``
        (``TargetKind.scored_labels``; an unlabelled sample holds its kind's placeholder) and
        whether the sample has one ``(n,)`` bool, in the order the samples were added."""
        if not self.ids:
            return np.empty(0), np.empty(0, dtype=bool)
        info = self.target_infos[target]
        labels = np.concatenate(self._targets[target])
        mask = np.concatenate(self._masks[target]).astype(bool)
        return get(info["kind"]).scored_labels(info, labels), mask

    def arrays(self, target: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(y_true, main prediction, groups) restricted to samples labelled for ``target``."""
        if not self.ids:
            return np.empty(0), np.empty(0), np.empty(0)
        labels, mask = self.labels(target)
        pred = self.predictions(target)[get(self.target_infos[target]["kind"]).prediction][mask]
        groups = np.asarray(self.groups, dtype=object)[mask]
        return labels[mask], pred, groups


def _numpy(value: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return (
            value.detach().float().cpu().numpy()
            if value.is_floating_point()
            else value.detach().cpu().numpy()
        )
    return np.asarray(value)
