"""Occlusion: how much the prediction moves when one data element is removed.

The effect of an element is ``prediction(sample) - prediction(sample without it)``: positive when
the element pushed the prediction up. The prediction is one number per sample (see
:func:`task_score`). An element is removed the way real data goes missing
(:mod:`polymodal.explain.elements`), so what is measured is the model's own behaviour on absent
data, not on an out-of-distribution filler.

Speed: the sample is encoded once; the occluded copies of one modality are batched, only that
modality's encoder runs on them, and every other stream is the sample's own, shared (expanded,
not copied) across the copies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from polymodal import targets
from polymodal.data.batch import Batch, Sample, to_device
from polymodal.data.collate import collate_samples
from polymodal.data.preprocessing import Preprocessor
from polymodal.explain.elements import Element, Occlusion
from polymodal.model import MultimodalModel

CHUNK = 64  # occluded copies per forward pass


def reference_index(kind: str, predictions: Mapping[str, Tensor]) -> int | None:
    """For class-valued targets, the class whose probability is followed: the predicted one."""
    return targets.get(kind).reference_index(predictions)


def task_score(kind: str, predictions: Mapping[str, Tensor], reference: int | None) -> Tensor:
    """One number per sample ``(B,)`` from a head's predictions, as the target's kind defines it
    (e.g. the probability of the positive class, of class ``reference``, the predicted value)."""
    return targets.get(kind).explanation_score(predictions, reference)


def score_description(kind: str, info: Mapping[str, Any], reference: int | None) -> str:
    """What :func:`task_score` measures, in words (for tables and files)."""
    return targets.get(kind).score_description(info, reference)


class SampleScorer:
    """Predictions of one sample and of its occluded copies, for one task.

    Args:
        model: the model, in eval mode.
        prep: the fitted preprocessing state the sample was encoded with.
        sample: one sample of the batch contract (unbatched).
        task: the target whose prediction is followed; ``kind`` is its kind.
        device: where the model runs.
    """

    def __init__(
        self,
        model: MultimodalModel,
        prep: Preprocessor,
        sample: Sample,
        task: str,
        kind: str,
        device: torch.device,
    ) -> None:
        self.model = model
        self.prep = prep
        self.sample = sample
        self.task = task
        self.kind = kind
        self.device = device
        self.pad_ids = prep.pad_ids()
        self.batch = self._collate([sample])
        with torch.no_grad():
            self.encoded, self.availability = model.encode(self.batch)

    def _collate(self, samples: list[Sample]) -> Batch:
        return to_device(collate_samples(samples, pad_ids=self.pad_ids), self.device)

    def predictions(self, outputs: Mapping[str, Any]) -> dict[str, Tensor]:
        return self.model.predictions_from_logits(outputs["logits"])[self.task]

    @torch.no_grad()
    def baseline(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The head's predictions for the full sample, and the core's outputs."""
        outputs = self.model.fuse(self.encoded, self.availability)
        return self.predictions(outputs), outputs

    @torch.no_grad()
    def occluded(
        self, modality: str, occlusions: list[Occlusion], reference: int | None
    ) -> list[tuple[Element, float]]:
        """The score of each copy of the sample with one element of ``modality`` removed."""
        results: list[tuple[Element, float]] = []
        for start in range(0, len(occlusions), CHUNK):
            chunk = occlusions[start : start + CHUNK]
            scores = self._score_chunk(modality, chunk, reference)
            results.extend(zip((o.element for o in chunk), scores.tolist(), strict=True))
        return results

    def _score_chunk(self, modality: str, chunk: list[Occlusion], reference: int | None) -> Tensor:
        copies = [
            {
                "id": self.sample["id"],
                "group": self.sample["group"],
                # An unavailable modality gets the data layer's own stand-ins.
                "inputs": {
                    modality: o.fields if o.fields is not None else self.prep.empty_inputs(modality)
                },
                "available": {modality: o.fields is not None},
                "targets": {},
                "target_mask": {},
            }
            for o in chunk
        ]
        batch = self._collate(copies)
        # Only this modality's encoder runs (the batch carries no other input).
        streams, availability = self.model.encode(batch)
        k = len(chunk)
        for other, (tokens, mask) in self.encoded.items():
            if other != modality:
                streams[other] = (tokens.expand(k, -1, -1), mask.expand(k, -1))  # (k, N, D)
        for other, available in self.availability.items():
            if other != modality:
                availability[other] = available.expand(k)
        outputs = self.model.fuse(streams, availability)
        return task_score(self.kind, self.predictions(outputs), reference).float().cpu()
