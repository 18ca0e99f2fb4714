"""The optimiser's parameter groups: weight decay split, and layer-wise lr decay of backbones.

Layer-wise lr decay (BEiT, MAE and timm's fine-tuning recipe) trains a pretrained backbone's
early layers more gently than its late ones. The layers are timm's own: a timm model's
``group_matcher(coarse=False)`` orders its parameters stem first, then block by block (the final
norm or ``conv_head`` fall in the last block's layer), and
:func:`timm.models.group_parameters` turns that into a layer index ``0..L`` per parameter. With
decay ``d``, everything outside a backbone (encoder projections, fusion core, heads, training
plugins) trains at ``lr``, the backbone's last layer at ``lr · d``, the one before at
``lr · d²``, …, the stem (layer 0) at ``lr · d^(L+1)``: BEiT's rule, the head counting as the
layer above the last block.

Every group carries ``lr_scale`` (1 without layer decay), so a schedule that sets absolute
learning rates (CyclicLR) can scale its own bounds; a multiplicative schedule (LambdaLR: warm-up
and cosine) scales each group's lr by the same factor, keeping the ratios.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from timm.models import group_parameters
from torch import nn


def is_inside(name: str, prefix: str) -> bool:
    """Whether the parameter or module ``name`` lies in the module called ``prefix``."""
    return prefix == "" or name == prefix or name.startswith(f"{prefix}.")


def layered_backbones(module: nn.Module) -> dict[str, nn.Module]:
    """``{qualified name: model}`` of the outermost submodules with timm's ``group_matcher``."""
    found: dict[str, nn.Module] = {}
    for name, sub in module.named_modules():
        if any(is_inside(name, outer) for outer in found):
            continue
        if callable(getattr(sub, "group_matcher", None)):
            found[name] = sub
    return found


def backbone_depths(backbone: nn.Module) -> dict[str, int]:
    """``{parameter name in backbone: L + 1 − layer}``, its lr being ``lr · decay^that``."""
    layers = group_parameters(backbone, backbone.group_matcher(coarse=False), reverse=True)
    top = max(layers.values(), default=0)
    # A parameter the matcher does not name sits in the last layer, as in timm.
    return {name: top + 1 - layers.get(name, top) for name, _ in backbone.named_parameters()}


def _no_weight_decay_patterns(backbone: nn.Module) -> set[str]:
    """The backbone's own exclusions (ViT's ``pos_embed``, ``cls_token``), as timm applies them."""
    names = getattr(backbone, "no_weight_decay", None)
    return set(names()) if callable(names) else set()


def parameter_groups(
    module: nn.Module, *, lr: float, weight_decay: float, layer_decay: float | None = None
) -> list[dict[str, Any]]:
    """Optimiser parameter groups over ``module``'s trainable parameters.

    Without ``layer_decay``: ``[decayed, not decayed]``, biases and 1-D tensors (norms) not
    weight-decayed, everything at ``lr``. With it: one group per (depth k below the head,
    decayed or not), the head's first, each with ``lr = lr · d^k``, ``lr_scale = d^k`` and a
    name (``layer_decay_k``, ``…_no_wd``: the lr monitor's column); the backbones' own
    ``no_weight_decay()`` names are not decayed either.
    """
    depths: dict[str, int] = {}
    exempt: set[str] = set()
    if layer_decay is not None:
        for prefix, backbone in layered_backbones(module).items():
            lead = f"{prefix}." if prefix else ""
            for name, depth in backbone_depths(backbone).items():
                depths[lead + name] = depth
            for pattern in _no_weight_decay_patterns(backbone):
                exempt |= {
                    lead + n for n, _ in backbone.named_parameters() if fnmatch.fnmatch(n, pattern)
                }
    grouped: dict[tuple[int, bool], list[nn.Parameter]] = {}
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        decayed = not (param.ndim <= 1 or name.endswith(".bias") or name in exempt)
        grouped.setdefault((depths.get(name, 0), decayed), []).append(param)
    if layer_decay is None:
        return [
            {"params": grouped.get((0, True), []), "weight_decay": weight_decay, "lr_scale": 1.0},
            {"params": grouped.get((0, False), []), "weight_decay": 0.0, "lr_scale": 1.0},
        ]
    return [
        {
            "params": grouped[(depth, decayed)],
            "weight_decay": weight_decay if decayed else 0.0,
            "lr": lr * layer_decay**depth,
            "lr_scale": layer_decay**depth,
            "name": f"layer_decay_{depth}" + ("" if decayed else "_no_wd"),
        }
        for depth, decayed in sorted(grouped, key=lambda key: (key[0], not key[1]))
    ]
