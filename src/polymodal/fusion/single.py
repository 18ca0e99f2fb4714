"""``single``: one modality alone, the unimodal baseline.

Truly unimodal, at training and at test time alike (the official LSMT baselines were not,
methods.md §1.10): the core reads only ``modality``; the other streams are never touched, and its
``modalities`` tells the model not to run their encoders at all.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from polymodal.errors import ModelError
from polymodal.fusion.base import FusionCore
from polymodal.fusion.registry import register_core
from polymodal.fusion.streams import batch_size, check_modality_names
from polymodal.layers.pooling import masked_mean


@register_core("single")
class SingleCore(FusionCore):
    """Masked mean of one modality's tokens, then LayerNorm. Output ``(B, dim)``.

    Args:
        modalities: modality name -> kind.
        dim: token width D.
        modality: the modality to use; may be left out when there is only one.

    A sample whose modality is missing gets the LayerNorm of a zero vector (a learned constant),
    so the heads fall back to the training prior instead of failing.
    """

    def __init__(
        self, *, modalities: dict[str, str], dim: int, modality: str | None = None
    ) -> None:
        super().__init__(modalities=modalities, dim=dim)
        if modality is None:
            if len(modalities) != 1:
                raise ModelError(
                    "fusion core 'single' needs the option modality=<name>; the cohort has "
                    f"{', '.join(map(repr, modalities))}"
                )
            modality = next(iter(modalities))
        check_modality_names("single", modalities, [modality])
        self.modality = modality
        self.modalities = (modality,)
        self.norm = nn.LayerNorm(dim)

    @classmethod
    def example_options(cls) -> dict[str, Any]:
        return {"modality": next(iter(cls.example_modalities()))}

    def forward(
        self,
        tokens: dict[str, Tensor],
        masks: dict[str, Tensor],
        available: dict[str, Tensor],
    ) -> Tensor:
        """Reads ``tokens[modality] (B, N, D)`` only -> ``(B, D)``."""
        if self.modality not in tokens:
            n = batch_size(tokens, available)
            return self.norm(self.norm.weight.new_zeros(n, self.out_dim))
        stream = tokens[self.modality]
        mask = masks[self.modality].bool()
        if self.modality in available:
            mask = mask & available[self.modality].bool()[:, None]
        return self.norm(masked_mean(stream, mask))
