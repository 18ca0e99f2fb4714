"""The 8 dihedral views of an image: 4 right-angle rotations, each with or without a mirror.

Dermoscopy, fundus photographs and histology have no preferred orientation, so every rotation by
a right angle and every mirror image of such an image is as real as the image itself. Being
exact (no interpolation), these views survive caching: a frozen prefix of a backbone can be run
once per image and view, and augmentation still happens (see
:mod:`polymodal.encoders.stage_cache`).

View ``k`` (0..7) flips the image horizontally when ``k >= 4``, then rotates it by
``(k % 4) × 90°`` counter-clockwise (``torch.rot90`` over the last two dimensions). View 0 is the
image itself. Odd rotations swap height and width: an image that is not square keeps its shape
only in :data:`SHAPE_KEEPING_VIEWS` (identity, 180°, horizontal mirror, and vertical mirror =
mirror then 180°). polymodal uses those 4 for non-square images rather than padding them to a
square: the backbone sees the image at its native aspect, with no pixels spent on padding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from polymodal.errors import ModelError

DIHEDRAL_VIEWS = tuple(range(8))
SHAPE_KEEPING_VIEWS = (0, 2, 4, 6)


def views_for(size: Sequence[int]) -> tuple[int, ...]:
    """The views an image of ``size`` (H, W) has without changing shape: 8 square, else 4."""
    height, width = size[-2], size[-1]
    return DIHEDRAL_VIEWS if height == width else SHAPE_KEEPING_VIEWS


def dihedral_view(images: Tensor, view: int) -> Tensor:
    """View ``view`` of ``images`` (..., H, W): a mirror (``view >= 4``), then ``view % 4``
    quarter turns counter-clockwise. Exact: no pixel is interpolated."""
    if view not in DIHEDRAL_VIEWS:
        raise ModelError(f"a dihedral view is a number from 0 to 7, got {view}")
    if view >= 4:
        images = images.flip(-1)
    return torch.rot90(images, view % 4, dims=(-2, -1))


def dihedral_views(images: Tensor, views: Tensor) -> Tensor:
    """Each image of ``images`` (M, C, H, W) in its own view ``views`` (M,) -> (M, C, H, W).

    The views must keep the images' shape (:func:`views_for`).
    """
    allowed = views_for(images.shape)
    wanted = [int(v) for v in views.tolist()]
    if any(v not in allowed for v in wanted):
        raise ModelError(
            f"views {sorted(set(wanted) - set(allowed))} change the shape of "
            f"{images.shape[-2]}×{images.shape[-1]} images; use views {list(allowed)}"
        )
    if not any(wanted):
        return images
    out = images.clone()
    for view in set(wanted) - {0}:
        rows = torch.tensor([i for i, v in enumerate(wanted) if v == view], device=images.device)
        out[rows] = dihedral_view(images[rows], view)
    return out
