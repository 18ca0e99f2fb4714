"""A model that takes named flat tensors and returns a flat tuple: what an exporter can trace.

:class:`FlatModel` wraps a :class:`~polymodal.model.MultimodalModel` in eval mode: it rebuilds the
nested batch from the tensors of :func:`~polymodal.export.signature.input_fields`, runs every
encoder on every sample (a graph has no "skip the encoder when nobody has the modality"), fuses
under the availability inputs and returns, per target, the logits and the head's predictions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.export.signature import InputField
from polymodal.model import MultimodalModel


class FlatModel(nn.Module):
    """``forward(*tensors)`` in the order of ``fields`` -> outputs in the order of
    :attr:`output_names` (``<target>.logits``, then ``<target>.<prediction>`` sorted by name).

    Args:
        model: the multimodal model (its weights are shared, not copied).
        fields: the inputs, from :func:`~polymodal.export.signature.input_fields`.
        prediction_names: target -> the names its head's ``predict`` returns; a target it
            leaves out gets its logits only (see :meth:`build`).
    """

    def __init__(
        self,
        model: MultimodalModel,
        fields: list[InputField],
        prediction_names: dict[str, list[str]],
    ) -> None:
        super().__init__()
        self.model = model
        self.fields = list(fields)
        self.prediction_names = {t: sorted(prediction_names.get(t, ())) for t in model.heads}
        self.output_names = [
            name
            for target, names in self.prediction_names.items()
            for name in (f"{target}.logits", *(f"{target}.{n}" for n in names))
        ]

    @classmethod
    def build(
        cls, model: MultimodalModel, fields: list[InputField], example: tuple[Tensor, ...]
    ) -> FlatModel:
        """The flat model with every head's predictions, named by one run on ``example``."""
        with torch.no_grad():
            logits = cls(model, fields, {})(*example)  # one (B, ...) per target, heads' order
        names = {
            t: list(model.heads[t].predict(x)) for t, x in zip(model.heads, logits, strict=True)
        }
        return cls(model, fields, names)

    @property
    def input_names(self) -> list[str]:
        return [field.name for field in self.fields]

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        inputs: dict[str, dict[str, Tensor]] = {}
        available: dict[str, Tensor] = {}
        for field, tensor in zip(self.fields, tensors, strict=True):
            if field.is_availability:
                available[field.modality] = tensor.bool()
            else:
                inputs.setdefault(field.modality, {})[field.field] = tensor
        encoded = {m: self.model.encoders[m](inputs[m]) for m in self.model.modalities}
        logits = self.model.fuse(encoded, available)["logits"]
        outputs = []
        for target, names in self.prediction_names.items():
            predictions = self.model.heads[target].predict(logits[target])
            outputs.extend([logits[target], *(predictions[n] for n in names)])
        return tuple(outputs)
