"""A timm CNN cut at a stage boundary: a frozen prefix (stem + first K stages) and a suffix.

Partial fine-tuning on a CPU (``freeze: "stages:K"`` of ``image_timm``) trains only the last
stages; the prefix is frozen, so its output can be cached once per image (and dihedral view).
The cut is made from the families' own structure, which timm's ``feature_info`` describes
(``blocks.i`` for EfficientNet/MobileNetV3, ``layerN`` for ResNets):

* EfficientNet (Lite included) and MobileNetV3: stem ``conv_stem``, ``bn1``; stages
  ``blocks.0`` .. ``blocks.n-1``; after them, in ``forward_features``, EfficientNet's
  ``conv_head`` and ``bn2`` (MobileNetV3 keeps those in its head).
* ResNet and its kin (ResNeXt, SE-ResNet, ...): stem ``conv1``, ``bn1``, ``act1``, ``maxpool``;
  stages ``layer1`` .. ``layer4``.

:func:`split_backbone` checks on a probe image that suffix(prefix(x)) equals the backbone's
``forward_features(x)``, so a timm release that changes a family's forward is caught at build
time rather than training a different network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from polymodal.errors import ModelError

STAGES_PATTERN = re.compile(r"stages:(\d+)")


@dataclass(frozen=True)
class StageSplit:
    """Module names of a backbone, run in order: ``prefix`` (frozen) then ``suffix`` (trains)."""

    prefix: tuple[str, ...]
    suffix: tuple[str, ...]


def parse_frozen_stages(freeze: str) -> int | None:
    """``"stages:K"`` -> K; any other freeze mode -> None."""
    match = STAGES_PATTERN.fullmatch(freeze.strip()) if isinstance(freeze, str) else None
    return int(match.group(1)) if match else None


def _family_layout(backbone: nn.Module) -> tuple[list[str], list[str], list[str]] | None:
    """(stem, stages, after) module names for a known family, else None."""
    from timm.models.efficientnet import EfficientNet
    from timm.models.mobilenetv3 import MobileNetV3
    from timm.models.resnet import ResNet

    if isinstance(backbone, EfficientNet | MobileNetV3):
        stages = [f"blocks.{i}" for i in range(len(backbone.blocks))]
        after = ["conv_head", "bn2"] if isinstance(backbone, EfficientNet) else []
        return ["conv_stem", "bn1"], stages, after
    if isinstance(backbone, ResNet):
        return ["conv1", "bn1", "act1", "maxpool"], ["layer1", "layer2", "layer3", "layer4"], []
    return None


def count_stages(backbone: nn.Module) -> int | None:
    """How many stages ``backbone`` has after its stem (None: not a family we can cut)."""
    layout = _family_layout(backbone)
    return None if layout is None else len(layout[1])


def run_modules(backbone: nn.Module, names: tuple[str, ...], x: Tensor) -> Tensor:
    """``x`` through the backbone's modules ``names``, in order."""
    for name in names:
        x = backbone.get_submodule(name)(x)
    return x


def split_backbone(backbone: nn.Module, frozen_stages: int, probe: Tensor) -> StageSplit:
    """Cut ``backbone`` after its stem and first ``frozen_stages`` stages.

    ``probe`` (1, C, H, W) is an input of the encoder's size; the backbone must be in eval mode.
    Raises :class:`ModelError` for a backbone without stages we can cut, a K out of range, or
    a cut whose two halves do not compute ``forward_features``.
    """
    layout = _family_layout(backbone)
    name = type(backbone).__name__
    if layout is None:
        raise ModelError(
            f"image_timm: freeze 'stages:{frozen_stages}' needs a backbone made of stages "
            f"(EfficientNet, EfficientNet-Lite, MobileNetV3 or ResNet families); {name} has "
            "none polymodal can cut. Use freeze 'all' or 'all_but_last' for it"
        )
    stem, stages, after = layout
    if not 0 <= frozen_stages <= len(stages):
        raise ModelError(
            f"image_timm: freeze 'stages:{frozen_stages}' is out of range: {name} has "
            f"{len(stages)} stages after its stem; K goes from 0 to {len(stages)}"
        )
    split = StageSplit(
        prefix=tuple(stem + stages[:frozen_stages]), suffix=tuple(stages[frozen_stages:] + after)
    )
    with torch.no_grad():
        whole = backbone.forward_features(probe)
        halves = run_modules(backbone, split.suffix, run_modules(backbone, split.prefix, probe))
    if whole.shape != halves.shape or not torch.allclose(whole, halves, atol=1e-5, rtol=1e-4):
        raise ModelError(
            f"image_timm: timm's {name}.forward_features is not its stem and stages in order "
            "(another timm version?); freeze 'stages:K' cannot cut it. Use freeze 'all' or "
            "'all_but_last'"
        )
    return split
