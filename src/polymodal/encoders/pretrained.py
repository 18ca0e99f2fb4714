"""Pretrained weights that arrive as pip packages: moved to :mod:`polymodal.layers.pretrained`.

The encoders (and their tests) import these names from here; fusion cores import them from
:mod:`polymodal.layers` so that ``fusion/`` never imports ``encoders/``.
"""

from polymodal.layers.pretrained import (
    EFFICIENTNET_LITE0,
    EFFICIENTNET_LITE0_TENSORS,
    EFFICIENTNET_LITE1,
    EFFICIENTNET_LITE2,
    EFFICIENTNET_LITE_TENSORS,
    EFFICIENTNET_LITES,
    MINILM,
    PACKAGE_PREFIX,
    PACKAGED_MODELS,
    PackagedModel,
    efficientnet_lite0_package_state_dict,
    efficientnet_lite_package_state_dict,
    is_packaged,
    load_hf_model,
    packaged_model_path,
    resolve_pretrained,
)

__all__ = [
    "EFFICIENTNET_LITE0",
    "EFFICIENTNET_LITE0_TENSORS",
    "EFFICIENTNET_LITE1",
    "EFFICIENTNET_LITE2",
    "EFFICIENTNET_LITES",
    "EFFICIENTNET_LITE_TENSORS",
    "MINILM",
    "PACKAGED_MODELS",
    "PACKAGE_PREFIX",
    "PackagedModel",
    "efficientnet_lite0_package_state_dict",
    "efficientnet_lite_package_state_dict",
    "is_packaged",
    "load_hf_model",
    "packaged_model_path",
    "resolve_pretrained",
]
