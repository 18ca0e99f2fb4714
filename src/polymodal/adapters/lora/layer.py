"""LoRA layers from PEFT (``peft.tuners.lora.Linear``), driven through polymodal's adapter API.

PEFT's ``inject_adapter_in_model`` wraps each target ``nn.Linear`` once and keeps any number of
named adapters in it (``lora_A[name]``, ``lora_B[name]``), one active at a time, which is what
two passes through one shared frozen backbone need. Two PEFT habits are undone here because they
break that use:

* injecting freezes every parameter of the model that is not LoRA (heads included);
* ``set_adapter`` / ``enable_adapters`` switch ``requires_grad`` off for inactive adapters, so an
  adapter used in a first pass and switched off before ``backward()`` would get no gradient.

So injection and selection restore every ``requires_grad`` flag they found; freezing is the job
of :func:`polymodal.adapters.freeze_except_adapters`.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

from torch import Tensor, nn

from polymodal.adapters.lora.config import LoRAConfig

if TYPE_CHECKING:
    from peft.tuners.lora import Linear as PeftLoraLinear


def is_adapter_layer(module: nn.Module) -> bool:
    # peft takes seconds to import, so it is imported on first injection only; until then no
    # PEFT layer can exist.
    peft_lora = sys.modules.get("peft.tuners.lora")
    return peft_lora is not None and isinstance(module, peft_lora.Linear)


def inject(
    model: nn.Module, module_names: list[str], config: LoRAConfig, adapter_name: str
) -> None:
    """Add LoRA adapter ``adapter_name`` to each named ``nn.Linear`` with PEFT."""
    from peft import inject_adapter_in_model

    flags = {parameter: parameter.requires_grad for parameter in model.parameters()}
    with warnings.catch_warnings():
        # PEFT warns when a model gets a second adapter; several named adapters are the point here.
        warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
        inject_adapter_in_model(config.to_peft(module_names), model, adapter_name=adapter_name)
    for parameter, requires_grad in flags.items():
        parameter.requires_grad_(requires_grad)
    for name in module_names:
        layer = model.get_submodule(name)
        for part in (layer.lora_A[adapter_name], layer.lora_B[adapter_name]):
            part.requires_grad_(True)


def adapter_names(layer: PeftLoraLinear) -> list[str]:
    return list(layer.lora_A.keys())


def select_adapter(layer: PeftLoraLinear, name: str | None) -> None:
    """Make ``name`` the only active adapter of ``layer``; None runs the frozen layer alone."""
    flags = [(parameter, parameter.requires_grad) for parameter in layer.parameters()]
    if name is None:
        layer.enable_adapters(False)
    else:
        layer.enable_adapters(True)
        layer.set_adapter(name)
    for parameter, requires_grad in flags:
        parameter.requires_grad_(requires_grad)


def adapter_state(layer: PeftLoraLinear, name: str) -> dict[str, Tensor]:
    """Adapter ``name``'s tensors under keys without the name (detached, sharing storage)."""
    return {
        "lora_A.weight": layer.lora_A[name].weight.detach(),
        "lora_B.weight": layer.lora_B[name].weight.detach(),
    }


def adapter_parameters(layer: PeftLoraLinear) -> Iterator[nn.Parameter]:
    """Parameters of every adapter of ``layer`` (not the frozen base layer)."""
    return (p for key, p in layer.named_parameters() if not key.startswith("base_layer."))
