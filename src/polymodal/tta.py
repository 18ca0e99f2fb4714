"""Test-time augmentation: a model's predictions averaged over the dihedral views of its images.

Every image encoder that can show its images in a dihedral view (``image_timm``: the 8 right-angle
rotations and mirrors of a square image, the 4 that keep the shape of any other, see
:mod:`polymodal.data.views`) is set to each view in turn; the heads' **predictions** are
averaged over the views: probabilities for classification (a mean of probabilities stays a
calibrated mixture; a mean of logits would sharpen the consensus and move the probability
scale), values and risks for the other heads. What is not an average (a class label, digits)
each target kind rebuilds from the averaged outputs (``TargetKind.predictions_from_average``,
e.g. the most probable class of the averaged probabilities). Meant for images with no preferred orientation (dermoscopy, fundus,
histology), ideally a model trained with ``dihedral: true``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from polymodal import targets
from polymodal.errors import ModelError

Predictions = dict[str, dict[str, Tensor]]


def view_encoders(model: nn.Module) -> dict[str, nn.Module]:
    """The model's encoders that can show their images in a dihedral view (``set_view``)."""
    encoders = getattr(model, "encoders", {})
    return {name: e for name, e in encoders.items() if hasattr(e, "set_view")}


def tta_views(model: nn.Module) -> tuple[int, ...]:
    """The views every image encoder of ``model`` has (8, or 4 when any image is not square).

    Raises :class:`ModelError` when the model has no image encoder to augment.
    """
    encoders = view_encoders(model)
    if not encoders:
        raise ModelError(
            "test-time augmentation turns images; this model has no image_timm encoder "
            f"(encoders: {', '.join(getattr(model, 'encoders', {})) or 'none'})"
        )
    common = set.intersection(*(set(e.dihedral_views) for e in encoders.values()))
    return tuple(sorted(common))


@contextmanager
def viewing(model: nn.Module, view: int) -> Iterator[None]:
    """Every image encoder of ``model`` evaluates on dihedral ``view`` inside the block."""
    encoders = list(view_encoders(model).values())
    try:
        for encoder in encoders:
            encoder.set_view(view)
        yield
    finally:
        for encoder in encoders:
            encoder.set_view(0)


def average_predictions(
    passes: Sequence[Predictions], target_infos: Mapping[str, Mapping[str, Any]]
) -> Predictions:
    """The mean of several passes' predictions ``{target: {name: (B, ...)}}``.

    Floating outputs are averaged; each target's kind (``target_infos[target]["kind"]``)
    rebuilds its integer outputs from those means (:meth:`~polymodal.targets.base.TargetKind.
    predictions_from_average`). Every output keeps its name, shape and dtype.
    """
    if len(passes) == 1:
        return passes[0]
    averaged: Predictions = {}
    for target, outputs in passes[0].items():
        kind = targets.get(target_infos[target]["kind"])
        means = {
            name: torch.stack([p[target][name] for p in passes]).mean(0)
            for name, value in outputs.items()
            if value.is_floating_point()
        }
        rebuilt = kind.predictions_from_average(means)
        missing = [name for name in outputs if name not in rebuilt]
        if missing:
            raise ModelError(
                f"test-time augmentation cannot average the output(s) {missing} of target "
                f"'{target}': its kind '{kind.name}' does not rebuild them from the averaged "
                "ones (TargetKind.predictions_from_average)"
            )
        averaged[target] = {name: rebuilt[name].to(value.dtype) for name, value in outputs.items()}
    return averaged
