"""Adapters of a single-modality model, read from its folder to start a fusion core's adapters.

The paper's two-step protocol for Early Intervention (methods.md §3.3): train one model per image
with adapters, then start the fusion model's adapter sets of each image from that model's. The
folder is read here, by the training code that asks for it (``intervention_loss.init_from``);
the core only receives tensors (:meth:`~polymodal.fusion.base.FusionCore.init_adapters`), so no
fusion core ever reads a model folder.

Only JSON and safetensors are read: nothing in the folder is ever executed or unpickled.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file

from polymodal.adapters import adapter_state_dict, list_adapters, read_adapter_config
from polymodal.adapters.inject import WEIGHTS_FILE
from polymodal.errors import ModelError
from polymodal.fusion.base import AdapterWeights, FusionCore
from polymodal.model_folder import load_model_folder


def read_adapter_weights(modality: str, source: Path | str) -> AdapterWeights:
    """``modality``'s adapters in a polymodal model folder, or the adapters of an adapter folder
    written by :func:`polymodal.adapters.save_adapters`.

    Raises:
        ModelError: the folder is neither, its weights are unreadable, or the model has no
            adapted image encoder for ``modality``.
    """
    source = Path(source)
    if (source / "adapter_config.json").is_file():
        read_adapter_config(source)  # a clear error for a foreign or broken folder
        try:
            adapters = load_file(str(source / WEIGHTS_FILE))
        except (SafetensorError, OSError) as err:
            raise ModelError(
                f"init_from: {source / WEIGHTS_FILE} is not a readable safetensors file ({err}); "
                "save the adapters again with save_adapters"
            ) from None
        return AdapterWeights(adapters=adapters, frozen={}, source=str(source))
    if not (source / "config.json").is_file():
        raise ModelError(
            f"init_from: {source} is neither a polymodal model folder (config.json) nor an "
            "adapter folder (adapter_config.json)"
        )
    model = load_model_folder(source).model
    encoder = model.encoders[modality] if modality in model.encoders else None  # noqa: SIM401
    backbone = getattr(encoder, "backbone", None)
    adapters = list_adapters(backbone) if backbone is not None else []
    if not adapters:
        raise ModelError(
            f"init_from: {source} has no adapted image encoder for modality '{modality}' (its "
            f"encoders: {', '.join(model.encoders) or 'none'}); train it with an image_timm "
            "encoder and adapter: mor (configs/ei/mor.yaml)"
        )
    # Adapters train, everything else of an adapted backbone is frozen.
    frozen = {k: p.detach() for k, p in backbone.named_parameters() if not p.requires_grad}
    return AdapterWeights(
        adapters=adapter_state_dict(backbone, adapters[0]),
        frozen=frozen,
        source=f"{source} (modality '{modality}')",
    )


def init_core_adapters(
    core: FusionCore, init_from: Mapping[str, Path | str]
) -> dict[str, list[str]]:
    """Start each named modality's adapters of ``core`` from its folder; returns, per modality,
    the adapter sets initialised."""
    return {
        modality: core.init_adapters(modality, read_adapter_weights(modality, source))
        for modality, source in init_from.items()
    }
