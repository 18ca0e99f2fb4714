"""LoRA adapters: PEFT's LoRA layers, configured by :class:`LoRAConfig`."""

from polymodal.adapters.lora.config import LoRAConfig

__all__ = ["LoRAConfig"]
