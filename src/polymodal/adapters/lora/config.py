"""Configuration of LoRA adapters (low-rank updates of frozen linear layers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from polymodal.errors import ModelError

if TYPE_CHECKING:
    from peft import LoraConfig


@dataclass
class LoRAConfig:
    """LoRA: y = W₀x + b + (alpha / r) · B A x with A (r, d_in) and B (d_out, r), B zero at start.

    Serialised to ``adapter_config.json`` beside the weights (see :func:`save_adapters`); the
    layers themselves are PEFT's (``peft.tuners.lora.Linear``).
    """

    method: ClassVar[str] = "lora"

    r: int = field(default=8, metadata={"help": "rank of the update B A"})
    alpha: float = field(
        default=16.0, metadata={"help": "scale numerator: the update is multiplied by alpha / r"}
    )
    dropout: float = field(
        default=0.0, metadata={"help": "dropout on the adapter's input (training only)"}
    )
    target_modules: tuple[str, ...] = field(
        default=("mlp.fc1", "mlp.fc2"),
        metadata={
            "help": "module-name suffixes to adapt (a module matches when its dotted name equals "
            "a pattern or ends with '.' + pattern), e.g. mlp.fc1, mlp.fc2, attn.qkv, attn.proj"
        },
    )

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)
        if self.r < 1:
            raise ModelError(f"LoRA rank r must be at least 1, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ModelError(f"LoRA dropout must lie in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ModelError("LoRA target_modules is empty; name at least one, e.g. 'mlp.fc1'")

    def to_peft(self, module_names: list[str]) -> LoraConfig:
        """PEFT's config for exactly ``module_names`` (full dotted names already matched)."""
        from peft import LoraConfig  # peft pulls in transformers (seconds): import it when used

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(module_names),
            bias="none",
            # PEFT's default: A kaiming-uniform, B zero, so the adapted model starts as the frozen one.
            init_lora_weights=True,
        )
