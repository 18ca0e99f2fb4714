"""Parameter-efficient adapters for frozen backbones: LoRA and MoR, injected by module name.

One folder per method (``lora/``, ``mor/``: ``config.py`` + ``layer.py``) and one shared
injection module, the way PEFT is laid out::

    from polymodal.adapters import MoRConfig, freeze_except_adapters, inject_adapters

    inject_adapters(vit, MoRConfig(), adapter_name="first")
    freeze_except_adapters(vit)   # 1,474,656 trainable parameters on a ViT-B
"""

from polymodal.adapters.inject import (
    AdapterConfig,
    adapter_state_dict,
    count_trainable_parameters,
    freeze_except_adapters,
    inject_adapters,
    list_adapters,
    load_adapters,
    read_adapter_config,
    save_adapters,
    set_active_adapter,
)
from polymodal.adapters.lora import LoRAConfig
from polymodal.adapters.mor import MixtureOfRanks, MoRConfig, MoRLinear

__all__ = [
    "AdapterConfig",
    "LoRAConfig",
    "MixtureOfRanks",
    "MoRConfig",
    "MoRLinear",
    "adapter_state_dict",
    "count_trainable_parameters",
    "freeze_except_adapters",
    "inject_adapters",
    "list_adapters",
    "load_adapters",
    "read_adapter_config",
    "save_adapters",
    "set_active_adapter",
]
