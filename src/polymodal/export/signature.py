"""The named tensors an exported model takes: the nested batch flattened, one input per field.

A batch (:mod:`polymodal.data.batch`) is ``{"inputs": {modality: {field: Tensor}},
"available": {modality: (B,) bool}}``; a graph takes a flat list of named tensors instead::

    labs.numeric          float32  (batch, 5)
    labs.numeric_missing  bool     (batch, 5)
    labs.categorical      int64    (batch, 3)
    note.input_ids        int64    (batch, note_length)     note_length ≤ max_tokens
    note.attention_mask   bool     (batch, note_length)
    labs.available        bool     (batch,)                 False: this patient has no labs
    note.available        bool     (batch,)

Every field of a modality comes first, in the model's modality order, then one availability
input per modality. Dimensions are fixed by the fitted preprocessing state except the batch and
each padded length (text tokens, series steps), which may vary up to the state's maximum.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from polymodal import modalities as modality_kinds
from polymodal.data.preprocessing import Preprocessor
from polymodal.errors import ModelError

BATCH = "batch"
AVAILABLE = "available"
# The input_info key that bounds a modality's padded length (text tokens, series steps).
LENGTH_KEYS = ("max_tokens", "max_steps")


@dataclass(frozen=True)
class InputField:
    """One named input of an exported model.

    ``shape`` holds ints for fixed sizes and names for the dimensions that vary per call
    (``"batch"``, ``"<modality>_length"``); ``max_length`` bounds the latter.
    """

    modality: str
    field: str
    dtype: torch.dtype
    shape: tuple[int | str, ...]
    max_length: int | None = None

    @property
    def name(self) -> str:
        return f"{self.modality}.{self.field}"

    @property
    def is_availability(self) -> bool:
        return self.field == AVAILABLE


def input_fields(
    modalities: tuple[str, ...], preprocessor: Preprocessor, input_infos: Mapping[str, dict]
) -> list[InputField]:
    """The inputs of a model reading ``modalities``: every field, then every availability.

    Shapes and dtypes come from the preprocessing state's stand-ins for a missing modality
    (:meth:`~polymodal.data.preprocessing.Preprocessor.empty_inputs`), which have the shape of
    one real sample.
    """
    fields = []
    for modality in modalities:
        info = input_infos[modality]
        padded = modality_kinds.get(info["kind"]).padded_fields
        for field, stand_in in preprocessor.empty_inputs(modality).items():
            shape: tuple[int | str, ...] = (BATCH, *stand_in.shape)
            max_length = None
            if field in padded:
                max_length = _max_length(modality, info)
                shape = (BATCH, f"{modality}_length", *stand_in.shape[1:])
            fields.append(InputField(modality, field, stand_in.dtype, shape, max_length))
    fields.extend(InputField(m, AVAILABLE, torch.bool, (BATCH,)) for m in modalities)
    return fields


def _max_length(modality: str, info: Mapping[str, object]) -> int:
    for key in LENGTH_KEYS:
        if key in info:
            return int(info[key])  # type: ignore[call-overload]
    raise ModelError(
        f"export: modality '{modality}' ({info['kind']}) has padded inputs but its input info "
        f"names no maximum length ({' or '.join(LENGTH_KEYS)}); it cannot be exported"
    )


def example_inputs(
    fields: list[InputField], batch_size: int = 2, generator: torch.Generator | None = None
) -> tuple[Tensor, ...]:
    """Random tensors of every input (padded lengths at their maximum) to trace the model with.

    Values are random but valid: masks and availability mix True and False, integer ids are
    0 or 1 (an index every vocabulary has: missing/unknown, padding/unknown token).
    """
    generator = generator or torch.Generator().manual_seed(0)
    tensors = []
    for field in fields:
        shape = [
            batch_size if size == BATCH else field.max_length if isinstance(size, str) else size
            for size in field.shape
        ]
        if field.dtype == torch.bool:
            tensor = torch.rand(shape, generator=generator) > 0.3
        elif field.dtype.is_floating_point:
            tensor = torch.randn(shape, generator=generator).to(field.dtype)
        else:
            tensor = torch.randint(0, 2, shape, generator=generator).to(field.dtype)
        tensors.append(tensor)
    return tuple(tensors)


def flatten_batch(fields: list[InputField], batch: Mapping[str, Mapping]) -> tuple[Tensor, ...]:
    """A collated batch's tensors in the order of ``fields`` (a modality the batch lacks:
    raise, since an exported graph has no optional inputs)."""
    tensors = []
    for field in fields:
        source = batch["available"] if field.is_availability else batch["inputs"]
        if field.modality not in source:
            raise ModelError(
                f"export: the batch has no '{field.modality}'; give every modality of the model "
                "(stand-ins with availability False for a missing one)"
            )
        value = source[field.modality]
        tensors.append(value if field.is_availability else value[field.field])
    return tuple(tensors)
