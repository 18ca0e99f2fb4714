"""Collate samples into a batch, exactly as laid out in :mod:`polymodal.data.batch`.

Fixed-size fields are stacked; variable-length fields (text tokens, series steps) are padded
along their first axis to the longest sample in the batch, with their masks False on padding.
Availability and target masks become bool tensors ``(B,)``; ids and groups stay lists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch.nn.utils.rnn import pad_sequence

from polymodal import modalities
from polymodal.data.batch import Batch, Sample
from polymodal.errors import PolymodalError

# Fields whose first axis is a sequence length (L tokens or T steps) that differs per sample,
# and those whose padding holds the modality's pad id; each modality kind declares its own.
VARIABLE_LENGTH_FIELDS = frozenset().union(*(k.padded_fields for k in modalities.kinds()))
PAD_ID_FIELDS = frozenset(k.pad_id_field for k in modalities.kinds() if k.pad_id_field)


def _stack_fixed(
    modality: str, field: str, tensors: list[torch.Tensor], available: list[bool]
) -> torch.Tensor:
    """Stack ``(B, ...)``; unavailable stand-ins take the shape of the available samples.

    Volumes without a fixed ``size`` differ in shape per file, and an unavailable one cannot
    know the shape its batch needs, so its zeros are remade here.
    """
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        real = {tuple(t.shape) for t, a in zip(tensors, available, strict=True) if a}
        if len(real) > 1:
            raise PolymodalError(
                f"modality {modality!r}: field {field!r} has shapes {sorted(real)} within one "
                f"batch; give modalities.{modality}.size in the spec so every sample is the same "
                "size (or use batch_size 1)"
            )
        shape = real.pop() if real else max(shapes)
        tensors = [t if a else t.new_zeros(shape) for t, a in zip(tensors, available, strict=True)]
    return torch.stack(tensors)


def collate_samples(
    samples: Sequence[Sample], *, pad_ids: Mapping[str, int] | None = None
) -> Batch:
    """Batch a list of samples.

    Args:
        samples: samples from :class:`polymodal.data.dataset.CohortDataset`, all with the same
            modalities and targets.
        pad_ids: per modality with tokens, the id written into their padding
            (:meth:`~polymodal.data.preprocessing.Preprocessor.pad_ids`); 0 when not given. Models must rely on ``attention_mask``, not on it.

    Returns:
        The batch: ``ids``/``groups`` lists; ``inputs[m][field]`` with a leading ``B``
        (``input_ids`` ``(B, L)`` padded to the longest, series ``(B, T, ...)`` padded to the
        longest ``T``); ``available[m]`` and ``target_mask[t]`` bool ``(B,)``; ``targets[t]``.
    """
    if not samples:
        raise ValueError("collate_samples needs at least one sample")
    pad_ids = pad_ids or {}
    first = samples[0]
    inputs: dict[str, dict[str, torch.Tensor]] = {}
    available: dict[str, torch.Tensor] = {}
    for modality, fields in first["inputs"].items():
        flags = [bool(s["available"][modality]) for s in samples]
        available[modality] = torch.tensor(flags, dtype=torch.bool)
        inputs[modality] = {}
        for field in fields:
            tensors = [s["inputs"][modality][field] for s in samples]
            if field in VARIABLE_LENGTH_FIELDS:
                pad = pad_ids.get(modality, 0) if field in PAD_ID_FIELDS else 0
                # (B, L) or (B, T, C): padding goes at the end of every shorter sample.
                inputs[modality][field] = pad_sequence(tensors, batch_first=True, padding_value=pad)
            else:
                inputs[modality][field] = _stack_fixed(modality, field, tensors, flags)
    targets = {t: torch.stack([s["targets"][t] for s in samples]) for t in first["targets"]}
    target_mask = {
        t: torch.tensor([bool(s["target_mask"][t]) for s in samples], dtype=torch.bool)
        for t in first["target_mask"]
    }
    return {
        "ids": [s["id"] for s in samples],
        "groups": [s["group"] for s in samples],
        "inputs": inputs,
        "available": available,
        "targets": targets,
        "target_mask": target_mask,
    }
