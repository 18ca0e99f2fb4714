"""Test-time augmentation: a model's predictions averaged over the dihedral views of its images.

Every image encoder that can show its images in a dihedral view (``image_timm``: the 8 right-angle
rotations and mirrors of a square image, the 4 that keep the shape of any other, see
:mod:`polymodal.data.views`) is set to each view in turn; the heads' **predictions** are
averaged over the views: probabilities for classification (a mean of probabilities stays a
calibrated mixture; a mean of logits would sharpen the consensus and move the probability
scale), values and risks for the other heads. A multiclass ``label`` is the argmax of the
averaged probabilities. Meant for images with no preferred orientation (dermoscopy, fundus,
histology), ideally a model trained with ``dihedral: true``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

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


def average_predictions(passes: Sequence[Predictions]) -> Predictions:
    """The mean of several passes' predictions ``{target: {name: (B, ...)}}``.

    Floating outputs are averaged; a ``label`` beside ``probabilities`` is their argmax.
    """
    if len(passes) == 1:
        return passes[0]
    averaged: Predictions = {}
    for target, outputs in passes[0].items():
        mean = {
            name: torch.stack([p[target][name] for p in passes]).mean(0)
            for name, value in outputs.items()
            if value.is_floating_point()
        }
        for name, value in outputs.items():
            if value.is_floating_point():
                continue
            if name == "label" and "probabilities" in mean:
                mean[name] = mean["probabilities"].argmax(-1).to(value.dtype)
            else:
                raise ModelError(
                    f"test-time augmentation cannot average the {value.dtype} output "
                    f"'{name}' of target '{target}'"
                )
        averaged[target] = mean
    return averaged
